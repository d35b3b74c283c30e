"""Evaluate a run folder: every metric of its EMA generator, pictures, metrics.json.

``evaluate_run`` reads the run through ``trainer.runs.load_generator`` (nothing of
the training loop), loads the run's dataset (or ``data``), and computes:

- FID / KID of ``n`` generated images (tags drawn from the data's labels) against
  ``n`` real images (features cached per dataset, resolution, count and resize);
- the classifier's held-out accuracy (clean and noisy), tag accuracy over every tag
  combination with its confusion matrices (conditional runs);
- diversity: part modes and KL (avatars) and the spread within tag combinations;
- StarGAN runs: target accuracy, preservation, ground-truth error, per-domain FID.

``evaluate_during_training`` is the cheap version the training loop calls every
``eval_every`` steps on the main process.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainer.evaluate import classifier as clf
from trainer.evaluate.diversity import part_modes, spread
from trainer.evaluate.fid import (
    RESIZES,
    fid_from_features,
    fid_kid,
    real_cache_file,
    real_features_cached,
)
from trainer.evaluate.sampling import (
    Truncated,
    generate,
    generator_z_dim,
    iter_generate,
    real_batches,
    sample_indices,
)


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


def unwrap(G: nn.Module) -> nn.Module:
    """The bare generator inside DDP / torch.compile wrappers."""
    while True:
        inner = getattr(G, "module", None) or getattr(G, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return G
        G = inner


@torch.no_grad()
def refuse_nonfinite_outputs(loaded, dataset: object, n: int = 4) -> None:
    """EvalError naming the weights when G gives NaN/inf on a few real inputs.

    Scores of such a generator would be meaningless numbers, not an error.
    """
    from trainer.runs import EMA_FILE

    G = loaded.model
    labels = dataset.labels[:n].float()  # type: ignore[attr-defined]
    with preserved_rng():
        if _is_domains(loaded.vocab):
            x = dataset.images[:n].float().div(127.5).sub(1.0)  # type: ignore[attr-defined]
            out = G(x, labels)
        else:
            z = torch.randn(len(labels), generator_z_dim(G),
                            generator=torch.Generator().manual_seed(0))
            out = G(z, labels if loaded.vocab is not None else None)
    if not torch.isfinite(out).all():
        raise EvalError(f"{loaded.checkpoint / EMA_FILE}: the generator's outputs hold "
                        f"{int((~torch.isfinite(out)).sum())} NaN/inf values; not evaluating "
                        f"a broken model (choose an earlier --checkpoint)")


def _is_domains(vocab: object) -> bool:
    from trainer.data.vocab import Domains

    return isinstance(vocab, Domains)


# -- pieces -------------------------------------------------------------------------------
def fid_for_generator(G: nn.Module, dataset: object, n: int, seed: int, resize: str,
                      cache_dir: Path, conditional: bool) -> tuple[dict, torch.Tensor,
                                                                   torch.Tensor]:
    """FID/KID of ``n`` generated images, tags drawn from the data, against ``n`` real ones.

    Returns the result, the real indices used and the tags of the fakes.
    """
    images, labels = dataset.images, dataset.labels  # type: ignore[attr-defined]
    real_idx = sample_indices(len(images), n, seed)
    g = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(n, generator_z_dim(G), generator=g)
    tags = labels[torch.randint(len(labels), (n,), generator=g)].float() if conditional else None
    cache = real_cache_file(cache_dir, f"{clf.dataset_key(dataset)}-s{seed}", images.shape[-1],
                            len(real_idx), resize)  # type: ignore[arg-type]
    res = fid_kid(real_batches(images, real_idx), iter_generate(G, z, tags), real_cache=cache,
                  resize=resize)  # type: ignore[arg-type]
    return res, real_idx, (tags if tags is not None else torch.zeros(n, 0))


def real_vs_real_fid(dataset: object, n: int, seed: int, resize: str,
                     cache_dir: Path) -> dict:
    """FID/KID of two disjoint real samples of ``n`` images: what a perfect generator scores.

    Sample A is the one ``fid_for_generator`` compares fakes with; sample B the next
    ``n`` images of the same permutation (fewer if the dataset has under 2n). FID is
    biased upwards at small n, so a result is read against this floor at the same
    n and resize. Both feature sets are cached.
    """
    images = dataset.images  # type: ignore[attr-defined]
    idx = sample_indices(len(images), 2 * n, seed)  # the first n are fid_for_generator's
    idx_a, idx_b = idx[:n], idx[n:]
    if len(idx_b) < 2:
        raise EvalError(f"the real-vs-real floor needs more than {n} + 1 images; the dataset "
                        f"has {len(images)} (lower --n)")
    key = clf.dataset_key(dataset)
    size = int(images.shape[-1])
    feats_a = real_features_cached(real_batches(images, idx_a),
                                   real_cache_file(cache_dir, f"{key}-s{seed}", size, len(idx_a),
                                                   resize), resize)  # type: ignore[arg-type]
    feats_b = real_features_cached(real_batches(images, idx_b),
                                   real_cache_file(cache_dir, f"{key}-s{seed}-disjoint", size,
                                                   len(idx_b), resize), resize)  # type: ignore[arg-type]
    res = fid_from_features(feats_a, feats_b)
    res["resize"] = resize
    return res


def spread_samples(G: nn.Module, dataset: object, vocab: object, combinations: int, k: int,
                   seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
    """k generated and up to k real images for the ``combinations`` most frequent tag
    combinations of the data (one group of random images if unconditional)."""
    images, labels = dataset.images, dataset.labels  # type: ignore[attr-defined]
    g = torch.Generator().manual_seed(seed + 2)
    zd = generator_z_dim(G)
    if vocab is None or labels.shape[1] == 0:
        fake = generate(G, torch.randn(k, zd, generator=g), None)
        return [fake], [images[sample_indices(len(images), k, seed + 2)]], ["all"]
    keys, inverse, counts = torch.unique(labels, dim=0, return_inverse=True, return_counts=True)
    order = counts.argsort(descending=True, stable=True)[:combinations]
    fakes, reals, names = [], [], []
    for c in order:
        rows = (inverse == c).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=g)[:k]]
        tags = keys[c].float().expand(k, -1)
        fakes.append(generate(G, torch.randn(k, zd, generator=g), tags))
        reals.append(images[rows])
        names.append(vocab.format(vocab.decode(keys[c].numpy())) if not _is_domains(vocab)  # type: ignore[attr-defined]
                     else ",".join(n for n, v in zip(vocab.names, keys[c].tolist(),  # type: ignore[attr-defined]
                                                     strict=True) if v > 0.5) or "none")
    return fakes, reals, names


def classifier_summary(report: dict) -> dict:
    """The parts of a classifier report that go into metrics.json."""
    keys = ("heads", "n_train", "n_holdout", "size", "steps", "train_seconds", "holdout_clean",
            "holdout_noisy", "noisy_sigma", "cached")
    return {k: report[k] for k in keys if k in report}


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
                       log: bool = True) -> tuple[dict, dict]:
    """All metrics of a generator on a dataset. Returns (metrics, pictures) where pictures
    holds uint8 stacks and matrices for the report."""
    def say(msg: str) -> None:
        if log:
            print(f"[evaluate] {msg}", flush=True)

    if opts.resize not in RESIZES:
        raise EvalError(f"--resize {opts.resize!r}: expected one of {', '.join(RESIZES)}")
    if opts.n < 2:
        raise EvalError(f"--n {opts.n}: need at least 2 images")
    G = unwrap(G)
    from trainer.noise import truncation_threshold

    try:
        truncation_threshold(opts.truncation)
    except ValueError as e:
        raise EvalError(f"--truncation: {e}") from None
    if opts.truncation < 1 and not _is_domains(vocab):
        G = Truncated(G, opts.truncation, opts.seed)
    cache = eval_cache_dir(opts.cache_dir)
    m: dict = {"seconds": {}, "options": vars(opts).copy(), "dataset": {
        "source": str(dataset.source), "format": dataset.format,  # type: ignore[attr-defined]
        "n": len(dataset), "size": int(dataset.images.shape[-1])}}  # type: ignore[attr-defined, arg-type]
    pics: dict = {}
    stargan = _is_domains(vocab)
    conditional = vocab is not None and not stargan and bool(getattr(G, "n_cond", 1))

    t = time.perf_counter()
    settings = clf.TrainSettings(samples=opts.classifier_samples)
    model = part_model = None
    m["classifier"] = {}
    if clf.dataset_heads(dataset, "labels").heads:
        say("label classifier: from the cache, or trained (about a minute on 2 cores)")
        model, report = clf.fitted_classifier(dataset, "labels", cache, settings)
        m["classifier"]["labels"] = classifier_summary(report)
    if not stargan and clf.avatar_records(dataset) is not None:
        say("part classifier: from the cache, or trained (about a minute on 2 cores)")
        part_model, report = clf.fitted_classifier(dataset, "parts", cache, settings)
        m["classifier"]["parts"] = classifier_summary(report)
    m["seconds"]["classifiers"] = round(time.perf_counter() - t, 1)

    if stargan:
        from trainer.evaluate.stargan_metrics import stargan_metrics

        t = time.perf_counter()
        say(f"StarGAN: {len(vocab.names)} domains x {opts.stargan_n} images"  # type: ignore[attr-defined]
            + (" with FID" if opts.fid else ""))
        if model is None:
            raise EvalError("StarGAN evaluation needs domain labels")
        res = stargan_metrics(G, dataset, vocab, model, opts.stargan_n, opts.seed, fid=opts.fid,
                              fid_cache_dir=cache, resize=opts.resize, keep_examples=6)
        pics["translations"] = res.pop("examples")
        m["stargan"] = res
        m["seconds"]["stargan"] = round(time.perf_counter() - t, 1)
        return m, pics

    if opts.fid:
        t = time.perf_counter()
        say(f"FID/KID: {opts.n} generated vs {min(opts.n, len(dataset))} real images "  # type: ignore[arg-type]
            f"(resize {opts.resize})")
        res, real_idx, fake_tags = fid_for_generator(G, dataset, opts.n, opts.seed, opts.resize,
                                                     cache, conditional)
        m["fid"] = res
        say(f"real-vs-real floor: {opts.n} real vs {opts.n} other real images")
        m["fid_real_floor"] = real_vs_real_fid(dataset, opts.n, opts.seed, opts.resize, cache)
        m["seconds"]["fid"] = round(time.perf_counter() - t, 1)
    if conditional and model is not None:
        t = time.perf_counter()
        from trainer.evaluate.tag_accuracy import tag_accuracy

        say(f"tag accuracy: {opts.k} images x every tag combination")
        acc = tag_accuracy(G, vocab, model, opts.k, opts.seed, keep_images=False)
        m["tag_accuracy"] = acc
        m["seconds"]["tag_accuracy"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    say("diversity: part modes and within-combination spread")
    if part_model is not None:
        g = torch.Generator().manual_seed(opts.seed + 3)
        n = opts.n
        z = torch.randn(n, generator_z_dim(G), generator=g)
        labels = dataset.labels  # type: ignore[attr-defined]
        tags = labels[torch.randint(len(labels), (n,), generator=g)].float() if conditional else None
        fake = generate(G, z, tags)
        perm = torch.randperm(len(labels), generator=g)
        real_a, real_b = perm[:n], perm[n:2 * n] if len(perm) >= 2 * n else perm[-n:]
        pred_fake = clf.predict(part_model, fake)
        pred_real = clf.predict(part_model, dataset.images[real_a])  # type: ignore[attr-defined]
        pred_ref = clf.predict(part_model, dataset.images[real_b])  # type: ignore[attr-defined]
        m["modes"] = part_modes(part_model.heads, pred_fake, pred_real, pred_ref)
    fakes, reals, names = spread_samples(G, dataset, vocab if conditional else None,
                                         opts.spread_combinations,
                                         opts.spread_k, opts.seed)
    m["spread"] = {**spread(fakes, reals), "names": names}
    pics["spread"] = (fakes, reals, names)
    m["seconds"]["diversity"] = round(time.perf_counter() - t, 1)
    return m, pics


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
    if "stargan" in m:
        for k, v in m["stargan"].items():
            if k.startswith("mean_"):
                out[k.removeprefix("mean_")] = v
    return out


def evaluate_run(run_dir: str | Path, data: str | Path | None = None,
                 checkpoint: str | Path | None = None, opts: EvalOptions | None = None,
                 out_dir: str | Path | None = None, log: bool = True,
                 command: str = "") -> dict:
    """Evaluate a run's EMA generator; write metrics.json, report.md and pictures into
    ``out_dir`` (default RUN/eval). Returns the metrics."""
    from trainer.evaluate.report import write_report
    from trainer.runs import load_generator

    opts = opts or EvalOptions()
    start = time.perf_counter()
    run_dir = Path(run_dir)
    loaded = load_generator(run_dir, checkpoint)  # refuses non-finite weights, naming the file
    dataset = load_run_dataset(loaded.config, data)
    check_pairing(loaded.vocab, dataset)
    refuse_nonfinite_outputs(loaded, dataset)
    with preserved_rng():
        m, pics = evaluate_generator(loaded.model, dataset, loaded.vocab, opts, log)
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
    G = unwrap(G)
    out: dict[str, float] = {}
    with preserved_rng():
        heads = clf.dataset_heads(dataset, "labels")
        settings = clf.TrainSettings(samples=classifier_samples)
        model = None
        if heads.heads:
            key = str(clf.classifier_cache_file(cache, clf.dataset_key(dataset), heads.heads,
                                                int(dataset.images.shape[-1]),  # type: ignore[attr-defined]
                                                settings))
            if key not in _CLASSIFIERS:
                _CLASSIFIERS[key] = clf.fitted_classifier(dataset, "labels", cache, settings)[0]
            model = _CLASSIFIERS[key]
        if _is_domains(vocab) and model is not None:
            from trainer.evaluate.stargan_metrics import stargan_metrics

            res = stargan_metrics(G, dataset, vocab, model, stargan_n, seed=0)
            out["target_accuracy"] = res.get("mean_target_accuracy", math.nan)
            out["preservation"] = res.get("mean_preservation", math.nan)
            return out
        conditional = vocab is not None and bool(getattr(G, "n_cond", 1))
        if conditional and model is not None:
            from trainer.evaluate.tag_accuracy import tag_accuracy

            acc = tag_accuracy(G, vocab, model, k, seed=0)
            out.update({f"acc_{g}": v for g, v in acc["per_group"].items()})
            out["acc_joint"] = acc["joint"]
        if fid:
            res, _, _ = fid_for_generator(G, dataset, n, 0, "clean", cache, conditional)
            out[f"fid{n}"] = float(res["fid"])
            out[f"kid{n}"] = float(res["kid"])
        fakes, reals, _ = spread_samples(G, dataset, vocab if conditional else None, 4, 8, 0)
        out["pixel_std_ratio"] = spread(fakes, reals, msssim=False)["pixel_std_ratio"]
    return out
