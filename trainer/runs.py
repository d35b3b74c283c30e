"""The run folder: the hand-over point between training and every later stage.

```
runs/NAME/
  config.yaml            resolved config
  vocab.json             tag groups or StarGAN domains, in order
  checkpoints/step_N/    accelerate save_state + g_ema.safetensors + meta.json (written
                         last, with every file's size); only finite weights are saved
  checkpoints/latest     names the newest complete checkpoint (written last, atomically)
  train.lock             host and pid of the training that holds the folder (while it runs)
  samples/step_N.png     fixed inputs all run long; progress.png, losses.png
  metrics.jsonl          one JSON line per log step
  tb/                    TensorBoard events
```
Later stages (export, evaluate, translate) read it through this module and
never import the training loop.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from trainer.config import TrainConfig, load_run_config
from trainer.data.vocab import Domains, Vocab, load_vocab

CKPT_PREFIX = "step_"
EMA_FILE = "g_ema.safetensors"
META_FILE = "meta.json"
NONFINITE_FILE = "stopped_nonfinite"  # written when training stops on NaN/inf: why, one line


class RunError(ValueError):
    """A run folder or checkpoint that cannot be used; the message says why."""


def checkpoint_name(step: int) -> str:
    return f"{CKPT_PREFIX}{step:08d}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None if the run has none yet."""
    ckpts = Path(run_dir) / "checkpoints"
    pointer = ckpts / "latest"
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not name or "/" in name or not name.startswith(CKPT_PREFIX):
        raise RunError(f"{pointer}: expected the name of a checkpoint folder "
                       f"({CKPT_PREFIX}N), got {name!r}")
    path = ckpts / name
    if not (path / META_FILE).is_file():
        raise RunError(f"{pointer} names {path.name}, which is missing or incomplete")
    return path


def refuse_after_nonfinite_stop(run_dir: Path, latest: Path) -> None:
    """RunError when the run stopped on NaN/inf and the caller asked for "the latest".

    That checkpoint is finite but from just before the failure; using it must be a
    choice (``--checkpoint NAME``), not a default that hides the failure.
    """
    marker = Path(run_dir) / NONFINITE_FILE
    if marker.is_file():
        why = marker.read_text().strip().splitlines()[0][:200] if marker.stat().st_size else ""
        raise RunError(f"{run_dir}: training stopped on NaN/inf ({marker.name}: {why}); its "
                       f"newest checkpoint {latest.name} is finite but from before the failure: "
                       f"pass --checkpoint {latest.name} to use it anyway")


def read_meta(checkpoint: Path) -> dict:
    """meta.json of a checkpoint; RunError naming the file if it is unreadable."""
    path = checkpoint / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: unreadable checkpoint metadata ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise RunError(f"{path}: expected a JSON object with an integer 'step'")
    return meta


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the rows of metrics.jsonl logged after ``step`` (atomically); return how many.

    A resume goes back to its checkpoint's step and logs the later steps again:
    without this every crash would leave those steps twice in the file.
    """
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row_step = json.loads(line).get("step", 0)
        except (json.JSONDecodeError, AttributeError):
            dropped += 1  # a half-written last line from a kill
            continue
        if isinstance(row_step, int | float) and row_step > step:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        write_text_atomic(path, "".join(f"{x}\n" for x in keep))
    return dropped


@dataclass
class LoadedGenerator:
    model: nn.Module  # EMA generator in eval mode, on CPU, fp32
    config: TrainConfig
    vocab: Vocab | Domains | None
    step: int
    checkpoint: Path


def load_run(run_dir: str | Path) -> tuple[TrainConfig, Vocab | Domains | None]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    cfg = load_run_config(run_dir)
    vocab_path = run_dir / "vocab.json"
    vocab = load_vocab(vocab_path) if vocab_path.is_file() else None
    return cfg, vocab


def load_weights(model: nn.Module, weights: Path, what: str) -> None:
    """Load a safetensors file into ``model`` (no pickle); RunError naming the file when it is
    unreadable, holds NaN/inf, or does not fit ``what`` (e.g. "dcgan generator")."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise RunError(f"{weights}: unreadable safetensors file "
                       f"({str(e).splitlines()[0]})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise RunError(f"{weights}: non-finite weights (NaN or inf) in {len(bad)} tensors, "
                       f"first {bad[0]}; export or evaluate an earlier checkpoint "
                       f"(--checkpoint)")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise RunError(f"{weights}: weights do not fit a {what} of this "
                       f"config: {str(e).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise RunError(f"{weights}: weights do not fit a {what} of this "
                       f"config (missing {missing[:3]}, unexpected {unexpected[:3]})")


def model_file(index: int) -> str:
    """accelerate ``save_state``'s file for the ``index``-th prepared model."""
    return "model.safetensors" if index == 0 else f"model_{index}.safetensors"


def load_discriminator(loaded: LoadedGenerator, image_size: int) -> nn.Module:
    """The discriminator saved in the same checkpoint as ``loaded`` (eval mode, CPU, fp32).

    Built as its recipe builds it; the file is the one accelerate wrote for the recipe's
    "D" (models are prepared in ``recipe.models`` order). RunError if it is missing."""
    from trainer.families import family_of

    cfg = loaded.config
    recipe = family_of(cfg).recipe(cfg, loaded.vocab, image_size)
    weights = loaded.checkpoint / model_file(list(recipe.models).index("D"))
    if not weights.is_file():
        raise RunError(f"{loaded.checkpoint}: no {weights.name}; the discriminator was not "
                       f"saved in this checkpoint")
    D = recipe.models["D"]
    load_weights(D, weights, f"{cfg.model.arch} discriminator")
    return D.eval()


def load_generator(run_dir: str | Path, checkpoint: str | Path | None = None) -> LoadedGenerator:
    """Rebuild the EMA generator of a run from its safetensors weights (no pickle)."""
    from trainer.families import family_of
    from trainer.models import build_generator

    run_dir = Path(run_dir)
    cfg, vocab = load_run(run_dir)
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if ckpt is None:
        raise RunError(f"{run_dir}: no checkpoint yet (checkpoints/latest is missing); "
                       f"train longer or lower ckpt_every")
    if not checkpoint:
        refuse_after_nonfinite_stop(run_dir, ckpt)
    weights = ckpt / EMA_FILE
    if not weights.is_file():
        raise RunError(f"{ckpt}: no {EMA_FILE}; not a tagface generator checkpoint")
    model = build_generator(cfg, family_of(cfg).n_cond(vocab))
    load_weights(model, weights, f"{cfg.model.arch} generator")
    model.eval()
    return LoadedGenerator(model, cfg, vocab, int(read_meta(ckpt)["step"]), ckpt)
