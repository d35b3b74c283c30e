"""The run folder: the hand-over point between training and every later stage.

```
runs/NAME/
  config.yaml            resolved config
  vocab.json             tag groups or StarGAN domains, in order
  checkpoints/step_N/    accelerate save_state + g_ema.safetensors + meta.json
  checkpoints/latest     names the newest complete checkpoint (written last, atomically)
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
    path = ckpts / pointer.read_text().strip()
    if not (path / META_FILE).is_file():
        raise RunError(f"{pointer} names {path.name}, which is missing or incomplete")
    return path


def read_meta(checkpoint: Path) -> dict:
    return json.loads((checkpoint / META_FILE).read_text())


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


def load_generator(run_dir: str | Path, checkpoint: str | Path | None = None) -> LoadedGenerator:
    """Rebuild the EMA generator of a run from its safetensors weights (no pickle)."""
    from safetensors.torch import load_file

    from trainer.models import build_generator

    run_dir = Path(run_dir)
    cfg, vocab = load_run(run_dir)
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if ckpt is None:
        raise RunError(f"{run_dir}: no checkpoint yet (checkpoints/latest is missing); "
                       f"train longer or lower ckpt_every")
    weights = ckpt / EMA_FILE
    if not weights.is_file():
        raise RunError(f"{ckpt}: no {EMA_FILE}; not a tagface generator checkpoint")
    n_cond = 0 if vocab is None else (
        vocab.n_domains if isinstance(vocab, Domains) else vocab.n_tags)
    model = build_generator(cfg, n_cond)
    state = load_file(str(weights))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise RunError(f"{weights}: weights do not fit a {cfg.model.arch} generator of this "
                       f"config: {str(e).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise RunError(f"{weights}: weights do not fit a {cfg.model.arch} generator of this "
                       f"config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return LoadedGenerator(model, cfg, vocab, int(read_meta(ckpt)["step"]), ckpt)
