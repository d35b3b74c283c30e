"""Export a run's EMA generator to one self-contained .onnx file, checked and self-describing.

Steps of ``export_run``: read the run folder (trainer.runs.load_generator) ->
export with the dynamo exporter (torch.export; the TorchScript exporter cannot
export StarGAN's InstanceNorm with a dynamic batch) with a dynamic batch axis ->
write metadata_props -> optionally store weights as float16 -> onnx.checker ->
ONNX Runtime against PyTorch on fresh random inputs at batch 1 and a larger
batch. The file is written under a temporary name and renamed only when every
check passes, so a failed export never leaves a model behind. ``export_run``
then writes the model card beside it (export/model_card.py).

Graph contract (docs/architecture.md): GAN inputs ``z`` [B, z_dim] and ``tags``
[B, n_tags] (no ``tags`` when unconditional), output ``image`` [B, 3, S, S];
StarGAN inputs ``image`` [B, 3, S, S] and ``domains`` [B, n_domains] (the target),
plus ``source`` [B, n_domains] (the input's own domains) when ``model.g_condition``
is ``difference``; output ``translated`` (ONNX forbids an output named like an
input). Values in [-1, 1].

StarGAN InstanceNorm statistics: the exported graph uses what the generator
uses in eval mode, chosen by ``model.norm_stats`` in the run's config:
``running`` (the running averages; exports as BatchNormalization) or
``instance`` (each image's own statistics, as the official StarGAN test;
exports as InstanceNormalization). ``norm_stats_in_use`` checks by experiment
that the model really does what the config says before exporting.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from export.graph import (
    ExportError,
    NonFiniteOutput,
    ParityError,
    Signature,
    random_inputs,
    signature,
    wrap,
)
from export.model_card import model_card
from export.runtime import CPU, make_session
from trainer import __version__
from trainer.config import ConfigError, TrainConfig, config_sha256
from trainer.data.vocab import Domains, Vocab, VocabError
from trainer.runs import (
    EMA_FILE,
    META_FILE,
    RunError,
    latest_checkpoint,
    load_generator,
    load_run,
    read_meta,
    refuse_after_nonfinite_stop,
    write_text_atomic,
)

FP32_TOL = 1e-4  # max abs difference ORT vs PyTorch, fp32 weights
FP16_TOL = 2e-2  # the same with float16 weights (outputs in [-1, 1])
# A generator that picks one palette colour per pixel (model.g_palette_pick other than soft):
# at most this share of pixels may pick another colour than PyTorch (near ties, in float16).
PICK_FLIP_LIMIT = 5e-3
FORMAT_VERSION = "2"  # of the metadata below; bump when a field changes meaning
# How an image input must be prepared: what trainer.data.transforms.load_image does to
# every training image (composite onto white, centred square crop with torchvision's
# rounding, PIL bilinear resize, antialiased when shrinking) and the scaling to
# value_range. The demo and trainer.translate follow it; tests check it matches.
PREPROCESS = {"alpha": "white", "crop": "center", "resize": "bilinear",
              "value_range": [-1, 1]}


# -- metadata -------------------------------------------------------------------------
def build_metadata(cfg: TrainConfig, vocab: Vocab | Domains | None, *, step: int,
                   config_hash: str, precision: str = "fp32") -> dict[str, str]:
    """metadata_props: everything another runtime needs, as strings (JSON where structured)."""
    sig = signature(cfg, vocab)
    groups = ([{"name": g.name, "tags": list(g.tags), "aliases": list(g.aliases)}
               for g in vocab.groups] if isinstance(vocab, Vocab) and "tags" in sig.inputs else [])
    domains = ({"names": list(vocab.names), "exclusive": [list(g) for g in vocab.exclusive]}
               if isinstance(vocab, Domains) and "domains" in sig.inputs
               else {"names": [], "exclusive": []})
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": sig.kind,
        "arch": cfg.model.arch,
        "tag_groups": json.dumps(groups),
        "image_size": str(cfg.data.size),
        "image_layout": "NCHW RGB",
        "value_range": "[-1, 1]",
        "domains": json.dumps(domains),
        "precision": precision,
        "step": str(step),
        "config_sha256": config_hash,
        "config_name": cfg.name,
        "tagface_version": __version__,
    }
    if "image" in sig.inputs:  # takes an image (StarGAN), no noise
        meta["norm_stats"] = cfg.model.norm_stats
        meta["preprocess"] = json.dumps(PREPROCESS)
        # "difference": the graph has a third input, source (the input image's own domains)
        meta["g_condition"] = cfg.model.g_condition
    else:
        meta["cond"] = cfg.model.cond
        if cfg.model.g_palette:  # how the graph picks each pixel's colour (layers.PALETTE_PICKS)
            meta["palette_pick"] = cfg.model.g_palette_pick
        meta["z_dim"] = str(cfg.model.z_dim)
        meta["z_distribution"] = "standard_normal"
    return meta


def _doc_string(sig: Signature, meta: dict[str, str]) -> str:
    shapes = ", ".join(f"{n} float32 [B, {', '.join(map(str, s))}]" for n, s in sig.inputs.items())
    s = meta["image_size"]
    lines = [f"tagface {sig.kind} generator. Inputs: {shapes}. Output: {sig.output} float32 "
             f"[B, 3, {s}, {s}], RGB, values in [-1, 1]: uint8 = round((x + 1) * 127.5)."]
    if "z" in sig.inputs:
        lines.append("z ~ N(0, 1).")
    if "tags" in sig.inputs:
        lines.append("tags: one one-hot per group, concatenated in the order of the "
                     "tag_groups metadata.")
    if "image" in sig.inputs:
        lines.append(f"image: the input image as the preprocess metadata says (transparency "
                     f"onto white, centred square crop, bilinear resize, scaled to [-1, 1]); "
                     f"domains: 0/1 per name in the domains metadata, at most one on per "
                     f"exclusive set. InstanceNorm statistics: {meta['norm_stats']}.")
    if "source" in sig.inputs:
        lines.append("source: the input image's own domains, 0/1 in the same order; the "
                     "generator is told domains - source (g_condition difference).")
    return " ".join(lines)


# -- checks ---------------------------------------------------------------------------
def norm_stats_in_use(model: nn.Module, inputs: Sequence[torch.Tensor]) -> str:
    """Which InstanceNorm statistics the eval-mode ``model`` uses: "running" or "instance".

    Found by experiment: shift every running average and see whether the output moves.
    """
    def norms(m: nn.Module) -> list[nn.Module]:
        return [x for x in m.modules() if isinstance(
            x, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d))
            and x.running_mean is not None]

    if not norms(model):
        return "instance"
    probe = copy.deepcopy(model).eval()
    for m in norms(probe):
        m.running_mean.add_(0.5)  # type: ignore[operator]
        m.running_var.mul_(2.0)  # type: ignore[operator]
    with torch.no_grad():
        same = torch.equal(model(*inputs), probe(*inputs))
    return "instance" if same else "running"


def picks_colours(model: nn.Module) -> bool:
    """Whether ``model`` paints each pixel with one palette colour it picks (model.g_palette_pick
    other than soft): where two colours are nearly tied, float rounding may pick the other."""
    from trainer.models.layers import PaletteOutput

    return any(isinstance(m, PaletteOutput) and m.pick != "soft" for m in model.modules())


def check_parity(model: nn.Module, path: str | Path, sig: Signature,
                 batches: Sequence[int] = (1, 8), seed: int = 1,
                 tol: float | None = None) -> tuple[dict[int, float], dict[int, float]]:
    """Max abs difference between ONNX Runtime (CPU) and PyTorch per batch size, and the
    share of pixels that took another palette colour.

    With ``tol`` and a generator that picks colours (``picks_colours``), a pixel that
    differs by more than ``tol`` counts as picked differently (a near tie that float16
    or another kernel resolved the other way) and is left out of the max difference;
    otherwise the share is 0 and the max covers every pixel.
    """
    session = make_session(path, [CPU])
    rng = np.random.default_rng(seed)
    wrapped = wrap(model, sig)
    picks = tol is not None and picks_colours(model)
    diffs, flipped = {}, {}
    for b in batches:
        feeds = random_inputs(sig, b, rng)
        with torch.no_grad():
            ref = wrapped(*(torch.from_numpy(v) for v in feeds.values())).numpy()
        out = session.run([sig.output], feeds)[0]
        if out.shape != ref.shape:
            raise ParityError(f"batch {b}: ONNX output shape {list(out.shape)}, PyTorch "
                              f"{list(ref.shape)}")
        pixel = np.abs(out.astype(np.float32) - ref).max(axis=1)  # [B, S, S]
        other = pixel > tol if picks else np.zeros(pixel.shape, bool)  # NaN stays in: not >
        flipped[b] = float(other.mean())
        diffs[b] = float(pixel[~other].max()) if (~other).any() else 0.0
    return diffs, flipped


def parity_ok(diffs: dict[int, float], tol: float,
              flipped: dict[int, float] | None = None) -> bool:
    """Every difference finite and within ``tol`` (``nan > tol`` is False, so NaN must fail
    here), and at most PICK_FLIP_LIMIT of the pixels picked another palette colour."""
    return (all(math.isfinite(d) and d <= tol for d in diffs.values())
            and all(f <= PICK_FLIP_LIMIT for f in (flipped or {}).values()))


# -- export ---------------------------------------------------------------------------
@dataclass
class ExportResult:
    path: Path
    metadata: dict[str, str]
    signature: Signature
    diffs: dict[int, float]  # batch size -> max abs diff ORT vs PyTorch
    tolerance: float
    opset: int
    seconds: float  # export + checks
    notes: list[str] = field(default_factory=list)
    card: Path | None = None  # the model card beside the file (export_run writes one)
    flipped: dict[int, float] = field(default_factory=dict)  # batch size -> share of pixels
    #                                  that picked another palette colour (picking generators)

    def report(self) -> str:
        """What the CLI prints."""
        m, sig = self.metadata, self.signature
        size = self.path.stat().st_size / 2**20
        ins = ", ".join(f"{n} [B, {', '.join(map(str, s))}]" for n, s in sig.inputs.items())
        s = m["image_size"]
        diffs = ", ".join(f"batch {b} max abs diff {d:.2e}" for b, d in self.diffs.items())
        if any(self.flipped.values()):
            diffs += "; pixels that picked another palette colour: " + ", ".join(
                f"batch {b} {f:.3%}" for b, f in self.flipped.items())
        lines = [f"exported {m['config_name']} step {m['step']} ({sig.kind}) -> {self.path} "
                 f"({size:.1f} MB, {m['precision']}, opset {self.opset}) in {self.seconds:.1f} s",
                 f"  inputs: {ins}; output: {sig.output} [B, 3, {s}, {s}] in {m['value_range']}"]
        if "norm_stats" in m:
            lines.append(f"  InstanceNorm statistics: {m['norm_stats']} (model.norm_stats)")
        lines += ["  onnx.checker: ok",
                  f"  parity, ONNX Runtime ({CPU}) vs PyTorch: {diffs} "
                  f"(limit {self.tolerance:.0e})"]
        if self.card is not None:
            lines.append(f"  model card: {self.card}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _to_fp16(path: Path) -> None:
    """Store weights and compute as float16, keeping float32 inputs and outputs.

    The converter appends its input casts at the end of the node list; the graph
    is sorted again so that onnx.checker (and strict runtimes) accept it.
    """
    import onnx_ir as ir
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = ir.serde.deserialize_model(
            convert_float_to_float16(onnx.load(str(path)), keep_io_types=True))
    except (ValueError, ir.serde.SerdeError) as e:  # an invalid converted graph
        first = str(e.__cause__ or e).splitlines()[0][:200]
        raise ExportError(f"--fp16: onnxruntime's float16 converter produced an invalid graph "
                          f"for this generator ({first}); export it in float32") from None
    model.graph.sort()
    ir.save(model, str(path))


def export_generator(model: nn.Module, cfg: TrainConfig, vocab: Vocab | Domains | None,
                     path: str | Path, *, step: int, config_hash: str, opset: int | None = None,
                     fp16: bool = False, batches: Sequence[int] = (1, 8),
                     seed: int = 0) -> ExportResult:
    """Export an eval-mode generator to ``path`` and check it; see the module docstring."""
    t0 = time.perf_counter()
    path = Path(path)
    sig = signature(cfg, vocab)
    model = model.eval()
    rng = np.random.default_rng(seed)
    example = tuple(torch.from_numpy(v) for v in random_inputs(sig, 2, rng).values())
    with torch.no_grad():
        probe = wrap(model, sig)(*example)
    if not torch.isfinite(probe).all():
        raise NonFiniteOutput(f"the generator's output holds {int((~torch.isfinite(probe)).sum())} "
                          f"NaN/inf values on random inputs; not exporting a broken model")
    meta = build_metadata(cfg, vocab, step=step, config_hash=config_hash,
                          precision="fp16" if fp16 else "fp32")
    if "norm_stats" in meta:  # an InstanceNorm generator (StarGAN): check what it really uses
        used = norm_stats_in_use(model, example)
        if used != cfg.model.norm_stats:
            raise ExportError(f"model.norm_stats={cfg.model.norm_stats!r} but the generator uses "
                              f"{used} InstanceNorm statistics in eval mode")
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        # One Dim shared by all inputs is reported as "will not be used"; it is.
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
        program = torch.onnx.export(
            wrap(model, sig), example, dynamo=True, external_data=False, verbose=False,
            opset_version=opset, output_names=[sig.output],
            dynamic_shapes={name: {0: batch} for name in sig.inputs})
    assert program is not None
    program.model.metadata_props.update(meta)
    program.model.model_version = step  # ModelProto.model_version: ORT's modelmeta.version
    program.model.doc_string = _doc_string(sig, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        program.save(str(tmp), external_data=False)
        if fp16:
            _to_fp16(tmp)
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"onnx.checker rejects the exported model: {e}") from None
        proto = onnx.load(str(tmp))
        names = [i.name for i in proto.graph.input]
        if names != list(sig.inputs) or [o.name for o in proto.graph.output] != [sig.output]:
            raise ExportError(f"exported graph has inputs {names}, expected {list(sig.inputs)}")
        opset_used = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        tol = FP16_TOL if fp16 else FP32_TOL
        diffs, flipped = check_parity(model, tmp, sig, batches, seed + 1, tol)
        if not parity_ok(diffs, tol, flipped):
            picks = picks_colours(model)  # the flip share means nothing for other graphs
            raise ParityError("ONNX Runtime differs from PyTorch: " + ", ".join(
                f"batch {b} max abs diff {d:.2e}"
                + (f", {flipped[b]:.2%} of pixels picked another colour" if picks else "")
                for b, d in diffs.items())
                + (f" (limits {tol:.0e}, {PICK_FLIP_LIMIT:.1%})" if picks else f" > {tol:.0e}")
                + "; no file written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(path, meta, sig, diffs, tol, opset_used, time.perf_counter() - t0,
                        flipped=flipped)


def _resolve_checkpoint(run: Path, checkpoint: str | Path | None) -> Path:
    """The checkpoint folder to export: ``checkpoint`` (folder, its name, or its
    g_ema.safetensors) or the run's latest."""
    if checkpoint is None:
        latest = latest_checkpoint(run)
        if latest is None:
            raise ExportError(f"{run}: no generator checkpoint yet (checkpoints/latest is "
                              f"missing); train longer or lower ckpt_every")
        refuse_after_nonfinite_stop(run, latest)
        return latest
    path = Path(checkpoint)
    if not path.exists() and (run / "checkpoints" / path).exists():
        path = run / "checkpoints" / path
    if path.is_file():
        if path.name != EMA_FILE:
            raise ExportError(f"--checkpoint {checkpoint}: expected a checkpoint folder or its "
                              f"{EMA_FILE}, got another file")
        path = path.parent
    if not path.is_dir():
        raise ExportError(f"--checkpoint {checkpoint}: no such checkpoint folder")
    if not (path / META_FILE).is_file():
        raise ExportError(f"{path}: no {META_FILE}; not a complete tagface checkpoint")
    return path


def export_run(run: str | Path, out_dir: str | Path, *, name: str | None = None,
               checkpoint: str | Path | None = None, opset: int | None = None,
               fp16: bool = False, batches: Sequence[int] = (1, 8), seed: int = 0) -> ExportResult:
    """Export the EMA generator of a run folder to ``out_dir/<name or run name>.onnx``."""
    run = Path(run)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ExportError(f"--out {out_dir}: an existing file; expected a folder (the model "
                          f"is written as OUT/NAME.onnx)")
    try:
        cfg, vocab = load_run(run)
        signature(cfg, vocab)  # a run of the wrong shape fails before loading weights
        ckpt = _resolve_checkpoint(run, checkpoint)
        loaded = load_generator(run, ckpt)
        recorded = read_meta(ckpt).get("config_sha256", "")
    except (RunError, ConfigError, VocabError) as e:
        raise ExportError(str(e)) from None
    except RuntimeError as e:  # load_state_dict: tensors of the wrong shape
        detail = str(e).strip().splitlines()[-1].strip()
        raise ExportError(f"{ckpt / EMA_FILE}: weights do not fit the {cfg.model.arch} generator "
                          f"of {run / 'config.yaml'} (a checkpoint of another kind or size? "
                          f"{detail})") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{run}: unreadable checkpoint: {e}") from None
    current = config_sha256(loaded.config)
    notes = []
    if recorded and recorded != current:
        notes.append(f"config.yaml changed since step {loaded.step} was saved (hash "
                     f"{recorded[:12]} recorded, {current[:12]} now); metadata keeps the recorded")
    stem = name or run.resolve().name
    try:
        result = export_generator(loaded.model, loaded.config, loaded.vocab,
                                  Path(out_dir) / f"{stem}.onnx", step=loaded.step,
                                  config_hash=recorded or current, opset=opset, fp16=fp16,
                                  batches=batches, seed=seed)
    except NonFiniteOutput as e:  # name the weights that give it
        raise NonFiniteOutput(f"{ckpt / EMA_FILE}: {e}") from None
    result.notes += notes
    card = result.path.with_suffix(".md")
    write_text_atomic(card, model_card(stem, result.metadata, loaded.config, run, ckpt))
    result.card = card
    return result
