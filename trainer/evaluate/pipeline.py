"""Evaluate a run folder: every metric of its EMA generator, pictures, metrics.json.

``evaluate_run`` reads the run through ``trainer.runs.load_generator`` (nothing of
the training loop), loads the run's dataset (or ``data``), and hands the generator to
its family's evaluation module (trainer/families.py names it):

- tag GANs (trainer/evaluate/gan_metrics.py): FID / KID of ``n`` generated images
  (tags drawn from the data's labels) against ``n`` real images (features cached per
  dataset, resolution, count and resize) and the real-vs-real floor; the classifier's
  held-out accuracy (clean and noisy), tag accuracy over every tag combination with
  its confusion matrices (conditional runs); diversity: part modes and KL (avatars)
  and the spread within tag combinations;
- StarGAN (trainer/evaluate/stargan_metrics.py): target accuracy, preservation,
  ground-truth error, per-domain FID.

``evaluate_during_training`` is the cheap version the training loop calls every
``eval_every`` steps on the main process.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainer.evaluate import classifier as clf
from trainer.evaluate.fid import RESIZES
from trainer.families import family_for_labels, family_of
from trainer.modes import unwrap

if TYPE_CHECKING:
    from trainer.runs import LoadedGenerator


class EvalError(ValueError):
    """An option or a run/dataset pairing that evaluation cannot use; the message says why."""


@dataclass
class EvalOptions:
    n: int = 1000  # generated (and real) images for FID/KID and part modes
    k: int = 10  # images per tag combination for tag accuracy
    spread_combinations: int = 8  # tag combinations for the within-combination spread
    spread_k: int = 16  # images per combination (generated and real) for the spread
    stargan_n: int = 50  # source images per target domain (StarGAN)
    fid: bool = True  # FID/KID (the slow part: ~0.1-0.2 s per image on 2 CPU cores)
    resize: str = "clean"  # clean (clean-fid, PIL bicubic) | pytorch-fid (torch bilinear)
    seed: int = 0
    cache_dir: str | None = None  # FID statistics and classifiers; None = data cache/eval
    classifier_samples: int = 40_000  # training budget of each judging classifier (images)
    truncation: float = 1.0  # psi of trainer.noise: z coordinates outside are redrawn (1 = off)
    standing_stats: int = 0  # re-measure G's BatchNorm statistics on this many batches (0 = as saved)
    palette_pick: str | None = None  # sample a palette G with this pick (None = the run's own)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Leave torch's global RNG as it was (evaluation inside training must not shift it)."""
    with torch.random.fork_rng(devices=[]):
        yield


def eval_cache_dir(explicit: str | Path | None = None) -> Path:
    """Where FID statistics and classifiers are cached: ``explicit``, else <data cache>/eval."""
    if explicit:
        return Path(explicit)
    from trainer.data import default_cache_dir

    return default_cache_dir() / "eval"


@dataclass
class EvalRun:
    """What a family's ``evaluate`` fills: metrics and pictures; the cache and a logger."""

    m: dict
    cache: Path
    say: Callable[[str], None]
    pics: dict = field(default_factory=dict)
    loaded: Any = None  # trainer.runs.LoadedGenerator when a run's checkpoint is evaluated

    @contextlib.contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Record the seconds spent inside as ``m["seconds"][key]``."""
        t = time.perf_counter()
        yield
        self.m["seconds"][key] = round(time.perf_counter() - t, 1)


def evaluation_of(vocab: object) -> ModuleType:
    """The evaluation module of the family whose runs carry ``vocab`` (trainer/families.py)."""
    return importlib.import_module(family_for_labels(vocab).evaluation)


@torch.no_grad()
def refuse_nonfinite_outputs(loaded, dataset: object, n: int = 4) -> None:
    """EvalError naming the weights when G gives NaN/inf on a few real inputs.

    Scores of such a generator would be meaningless numbers, not an error.
    """
    from trainer.runs import EMA_FILE

    with preserved_rng():
        out = evaluation_of(loaded.vocab).probe(loaded.model, dataset, loaded.vocab, n)
    if not torch.isfinite(out).all():
        raise EvalError(f"{loaded.checkpoint / EMA_FILE}: the generator's outputs hold "
                        f"{int((~torch.isfinite(out)).sum())} NaN/inf values; not evaluating "
                        f"a broken model (choose an earlier --checkpoint)")


def classifier_summary(report: dict) -> dict:
    """The parts of a classifier report that go into metrics.json."""
    keys = ("heads", "n_train", "n_holdout", "size", "steps", "train_seconds", "holdout_clean",
            "holdout_noisy", "noisy_sigma", "cached")
    return {k: report[k] for k in keys if k in report}


def fit_classifiers(dataset: object, opts: EvalOptions, run: EvalRun, parts: bool
                    ) -> tuple[clf.TagClassifier | None, clf.TagClassifier | None]:
    """The judging classifiers: of the labels (if any) and, with ``parts``, of the avatar
    parts (if the dataset has them); cached, else trained. Recorded in ``run.m``."""
    settings = clf.TrainSettings(samples=opts.classifier_samples)
    model = part_model = None
    run.m["classifier"] = {}
    with run.timed("classifiers"):
        if clf.dataset_heads(dataset, "labels").heads:
            run.say("label classifier: from the cache, or trained (about a minute on 2 cores)")
            model, report = clf.fitted_classifier(dataset, "labels", run.cache, settings)
            run.m["classifier"]["labels"] = classifier_summary(report)
        if parts and clf.avatar_records(dataset) is not None:
            run.say("part classifier: from the cache, or trained (about a minute on 2 cores)")
            part_model, report = clf.fitted_classifier(dataset, "parts", run.cache, settings)
            run.m["classifier"]["parts"] = classifier_summary(report)
    return model, part_model


# -- whole run ----------------------------------------------------------------------------
def load_run_dataset(cfg: object, data: str | Path | None) -> object:
    """The run's dataset (``data`` overrides config.yaml's data.path), at the run's size."""
    from trainer.data import load_configured_dataset

    dc = cfg.data  # type: ignore[attr-defined]
    path = Path(data) if data else Path(dc.path)
    if not path.is_dir():
        raise EvalError(f"dataset folder {path} not found (config.yaml data.path); pass "
                        f"--data DIR")
    return load_configured_dataset(dc, path if data else None)


def check_pairing(vocab: object, dataset: object) -> None:
    """The dataset must label images with the run's vocabulary (same groups, same order)."""
    dv = dataset.vocab  # type: ignore[attr-defined]
    if (vocab is None) != (dv is None) or (vocab is not None and vocab.to_dict() != dv.to_dict()):  # type: ignore[attr-defined]
        raise EvalError(f"the dataset's labels ({dv.to_dict() if dv else None}) differ from "  # type: ignore[attr-defined]
                        f"the run's vocab.json ({vocab.to_dict() if vocab else None}); "  # type: ignore[attr-defined]
                        f"pass the dataset the run was trained on with --data")


def evaluate_generator(G: nn.Module, dataset: object, vocab: object, opts: EvalOptions,
                       log: bool = True, loaded: Any = None) -> tuple[dict, dict]:
    """All metrics of a generator on a dataset. Returns (metrics, pictures) where pictures
    holds uint8 stacks and matrices for the report. ``loaded`` (the run's LoadedGenerator)
    lets a family read more of the checkpoint, e.g. StarGAN's discriminator."""
    def say(msg: str) -> None:
        if log:
            print(f"[evaluate] {msg}", flush=True)

    if opts.resize not in RESIZES:
        raise EvalError(f"--resize {opts.resize!r}: expected one of {', '.join(RESIZES)}")
    if opts.n < 2:
        raise EvalError(f"--n {opts.n}: need at least 2 images")
    from trainer.noise import truncation_threshold

    try:
        truncation_threshold(opts.truncation)
    except ValueError as e:
        raise EvalError(f"--truncation: {e}") from None
    m: dict = {"seconds": {}, "options": vars(opts).copy(), "dataset": {
        "source": str(dataset.source), "format": dataset.format,  # type: ignore[attr-defined]
        "n": len(dataset), "size": int(dataset.images.shape[-1])}}  # type: ignore[attr-defined, arg-type]
    run = EvalRun(m, eval_cache_dir(opts.cache_dir), say, loaded=loaded)
    evaluation_of(vocab).evaluate(unwrap(G), dataset, vocab, opts, run)
    return run.m, run.pics


def summary(m: dict) -> dict[str, float]:
    """Headline scalars of a metrics dict (what compare tabulates)."""
    out: dict[str, float] = {}
    if "fid" in m:
        out["FID"] = m["fid"]["fid"]
        out["KID"] = m["fid"]["kid"]
    if "fid_real_floor" in m:
        out["FID real vs real"] = m["fid_real_floor"]["fid"]
    if "tag_accuracy" in m:
        for g, v in m["tag_accuracy"]["per_group"].items():
            out[f"acc {g}"] = v
        out["acc joint"] = m["tag_accuracy"]["joint"]
    if "modes" in m and "joint" in m["modes"]:
        j = m["modes"]["joint"]
        out["joint modes"] = j["modes_fake"]
        out["joint modes (real)"] = j["modes_real"]
        out["joint KL"] = j["kl_fake"]
    if "spread" in m:
        out["pixel std ratio"] = m["spread"]["pixel_std_ratio"]
        out["MS-SSIM diversity ratio"] = m["spread"]["msssim_diversity_ratio"]
        out["grain ratio"] = m["spread"]["grain_ratio"]
    if "stargan" in m:
        for k, v in m["stargan"].items():
            if k.startswith("mean_"):
                out[k.removeprefix("mean_")] = v
    return out


def remeasure_batchnorm(loaded: LoadedGenerator, dataset: object, batches: int) -> int:
    """The loop's standing statistics (trainer/standing_stats.py) on a loaded generator:
    ``batches`` batches of the run's batch size, seeded as training seeds them at that step."""
    from trainer.standing_stats import standing_statistics

    cfg = loaded.config
    size = int(dataset.images.shape[-1])  # type: ignore[attr-defined]
    recipe = family_of(cfg).recipe(cfg, loaded.vocab, size)
    return standing_statistics(loaded.model, lambda n, g: recipe.g_inputs(dataset, n, g),
                               batches, cfg.batch_size, seed=cfg.seed + loaded.step)


def evaluate_run(run_dir: str | Path, data: str | Path | None = None,
                 checkpoint: str | Path | None = None, opts: EvalOptions | None = None,
                 out_dir: str | Path | None = None, log: bool = True,
                 command: str = "") -> dict:
    """Evaluate a run's EMA generator; write metrics.json, report.md and pictures into
    ``out_dir`` (default RUN/eval). Returns the metrics."""
    from trainer.evaluate.report import write_report
    from trainer.runs import load_generator

    opts = opts or EvalOptions()
    if opts.standing_stats < 0:
        raise EvalError(f"--standing-stats {opts.standing_stats}: expected 0 (off) or a number "
                        f"of batches")
    start = time.perf_counter()
    run_dir = Path(run_dir)
    loaded = load_generator(run_dir, checkpoint)  # refuses non-finite weights, naming the file
    dataset = load_run_dataset(loaded.config, data)
    check_pairing(loaded.vocab, dataset)
    if opts.standing_stats:
        remeasure_batchnorm(loaded, dataset, opts.standing_stats)
    if opts.palette_pick:
        from trainer.models.layers import set_palette_pick

        if not set_palette_pick(loaded.model, opts.palette_pick):
            raise EvalError(f"--palette-pick {opts.palette_pick}: {run_dir} has no palette "
                            f"output layer (model.g_palette=0)")
    refuse_nonfinite_outputs(loaded, dataset)
    with preserved_rng():
        m, pics = evaluate_generator(loaded.model, dataset, loaded.vocab, opts, log, loaded)
    m["run"] = {"dir": run_dir.name, "name": loaded.config.name, "step": loaded.step,
                "checkpoint": loaded.checkpoint.name, "arch": loaded.config.model.arch,
                "recipe": loaded.config.recipe}
    m["summary"] = summary(m)
    m["seconds"]["total"] = round(time.perf_counter() - start, 1)
    m["command"] = command
    out = Path(out_dir) if out_dir else run_dir / "eval"
    write_report(m, pics, loaded, dataset, out, opts)
    return m


# -- during training ----------------------------------------------------------------------
_CLASSIFIERS: dict[str, clf.TagClassifier] = {}


def _label_classifier(dataset: object, cache: Path, samples: int) -> clf.TagClassifier | None:
    """The label classifier, kept in memory between calls (None without labels)."""
    heads = clf.dataset_heads(dataset, "labels")
    if not heads.heads:
        return None
    settings = clf.TrainSettings(samples=samples)
    key = str(clf.classifier_cache_file(cache, clf.dataset_key(dataset), heads.heads,
                                        int(dataset.images.shape[-1]),  # type: ignore[attr-defined]
                                        settings))
    if key not in _CLASSIFIERS:
        _CLASSIFIERS[key] = clf.fitted_classifier(dataset, "labels", cache, settings)[0]
    return _CLASSIFIERS[key]


def evaluate_during_training(G: nn.Module, dataset: object, vocab: object,
                             cfg: object | int | None = None, *, n: int = 256, k: int = 2,
                             fid: bool = True, stargan_n: int = 8,
                             cache_dir: str | Path | None = None,
                             classifier_samples: int = 40_000) -> dict[str, float]:
    """Cheap metrics for the training log (main process only; no collective calls).

    ``cfg`` is the run's TrainConfig (its data.cache_dir is used) or, as a shortcut,
    the number of FID images ``n``. Conditional GANs: tag accuracy per group and joint
    (``k`` images per combination), FID/KID on ``n`` images (real features cached),
    and the pixel-std spread ratio; StarGAN: target accuracy and preservation on
    ``stargan_n`` images per domain. The first call trains (and caches) the classifier.
    torch's global RNG and G's train/eval mode are left as they were.
    """
    if isinstance(cfg, int):
        n, cfg = cfg, None
    data_cache = getattr(getattr(cfg, "data", None), "cache_dir", "") or None
    cache = Path(cache_dir) if cache_dir else (Path(data_cache) / "eval" if data_cache
                                              else eval_cache_dir())
    with preserved_rng():
        model = _label_classifier(dataset, cache, classifier_samples)
        return evaluation_of(vocab).during_training(unwrap(G), dataset, vocab, model, n=n, k=k,
                                                    fid=fid, stargan_n=stargan_n, cache=cache)
