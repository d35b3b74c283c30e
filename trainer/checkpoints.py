"""Checkpoints that are safe to continue from: finite when written, verified when read.

A checkpoint folder holds accelerate's ``save_state`` files (``model*.safetensors``,
``optimizer*.bin``, ``random_states_<rank>.pkl``), the EMA generator and ``meta.json``.
``meta.json`` is written last and records every file with its size, so a truncated
or missing file is found without trusting the pointer ``checkpoints/latest``.

- ``nonfinite_report`` says which models hold NaN/inf; the loop writes no checkpoint
  then, so the newest checkpoint of a run is always finite.
- ``verify_checkpoint`` reads every file of a folder (safetensors, ``weights_only``
  torch loads) and returns what is wrong with it, or None.
- ``resumable_checkpoint`` picks the newest folder that verifies, with a warning per
  broken newer folder; a run whose every checkpoint is broken is a RunError.

- ``Checkpointer`` is the training loop's part that uses them: ``save`` (finite check
  on every process, accelerate ``save_state`` into a temporary folder, rename, point
  ``latest`` at it, rotate to ``keep_ckpts``) and ``resume`` (the newest folder that
  verifies, all or nothing), with the loop's position in ``LoopState``.

The functions need no Accelerate object, so they can be tested alone; the
Checkpointer is handed the run's accelerator.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer import __version__
from trainer.collectives import Collectives
from trainer.ema import EMA
from trainer.runs import (
    CKPT_PREFIX,
    EMA_FILE,
    META_FILE,
    RunError,
    checkpoint_name,
    truncate_metrics,
    write_text_atomic,
)
from trainer.stopping import ADVICE, NonFiniteLoss, kept_checkpoint

META_KEYS = ("step", "consumed", "elapsed", "starts")  # what a resume restores from meta.json
RNG_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")


# -- writing -------------------------------------------------------------------------
def _count_nonfinite(tensors: Iterable[tuple[str, torch.Tensor]]) -> tuple[int, list[str]]:
    named = [(n, t) for n, t in tensors if t.is_floating_point() or t.is_complex()]
    if not named:
        return 0, []
    # One host sync for all tensors, not one per tensor (this runs at every checkpoint).
    dev = named[0][1].device
    counts = torch.stack([(~torch.isfinite(t.detach())).sum().to(dev) for _, t in named]).tolist()
    names = [n for (n, _), c in zip(named, counts, strict=True) if c]
    return int(sum(counts)), names


def _optimizer_tensors(opt: torch.optim.Optimizer) -> Iterable[tuple[str, torch.Tensor]]:
    for i, state in enumerate(opt.state.values()):
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                yield f"state[{i}].{k}", v


@torch.no_grad()
def nonfinite_report(models: Mapping[str, nn.Module],
                     optimizers: Mapping[str, torch.optim.Optimizer]) -> list[str]:
    """One phrase per model or optimizer holding NaN/inf values (empty when all finite).

    Parameters, buffers (BatchNorm statistics, spectral-norm vectors) and every
    optimizer state tensor count: a checkpoint with any of them non-finite cannot
    continue training.
    """
    out = []
    for name, m in models.items():
        n, where = _count_nonfinite([*m.named_parameters(), *m.named_buffers()])
        if n:
            out.append(f"{name} has {n} non-finite values in {len(where)} tensors "
                       f"(first {where[0]})")
    for name, opt in optimizers.items():
        n, where = _count_nonfinite(_optimizer_tensors(opt))
        if n:
            out.append(f"the {name} optimizer has {n} non-finite state values "
                       f"(first {where[0]})")
    return out


def file_sizes(folder: Path) -> dict[str, int]:
    """Every file of a checkpoint folder with its size, for meta.json."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def write_meta(folder: Path, meta: dict) -> None:
    """meta.json last, fsynced, listing every other file: its presence means complete."""
    meta = {**meta, "files": file_sizes(folder)}
    path = folder / META_FILE
    with open(path, "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())


# -- reading -------------------------------------------------------------------------
def read_meta_checked(folder: Path) -> dict:
    """meta.json of a checkpoint with every key a resume needs; RunError naming the file."""
    path = folder / META_FILE
    if not path.is_file():
        raise RunError(f"{path}: missing (the checkpoint was not completed)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    missing = [k for k in META_KEYS if not isinstance(meta.get(k), int | float)]
    if missing:
        raise RunError(f"{path}: no number for {', '.join(missing)}; expected the keys "
                       f"{', '.join(META_KEYS)}")
    return meta


def _read_safetensors(path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise RunError(f"{path}: unreadable safetensors file ({str(e).splitlines()[0]})") from None
    n, where = _count_nonfinite(tensors.items())
    if n:
        raise RunError(f"{path}: {n} non-finite values (first {where[0]})")


def _read_torch(path: Path, keys: tuple[str, ...] = ()) -> None:
    from accelerate.utils import load  # torch.load(weights_only=True) + numpy's safe globals

    try:
        obj = load(str(path), map_location="cpu")
    except Exception as e:  # any unpickling failure: the file is broken, whatever the type
        detail = str(e).splitlines()[0][:100] if str(e) else "truncated"
        raise RunError(f"{path}: unreadable ({type(e).__name__}: {detail})") from None
    if keys and not (isinstance(obj, dict) and all(k in obj for k in keys)):
        raise RunError(f"{path}: expected the keys {', '.join(keys)}")


def verify_checkpoint(folder: Path, world_size: int | None = None) -> str | None:
    """What is wrong with a checkpoint folder (one line naming the file), or None.

    Checks meta.json, that every file it lists is there with its recorded size, and
    reads each weight, optimizer and RNG file. ``world_size``: the RNG states of
    that many processes must be present (default: the world size in meta.json).
    """
    try:
        meta = read_meta_checked(folder)
        recorded = meta.get("files")
        if isinstance(recorded, dict):
            for name, size in recorded.items():
                p = folder / name
                if not p.is_file():
                    return f"{p}: missing"
                if p.stat().st_size != size:
                    return f"{p}: {p.stat().st_size} bytes, {size} when written (truncated?)"
        world = world_size or int(meta.get("world_size", 1))
        if not (folder / EMA_FILE).is_file():
            return f"{folder / EMA_FILE}: missing"
        if not list(folder.glob("model*.safetensors")):
            return f"{folder}: no model*.safetensors"
        for p in sorted(folder.glob("*.safetensors")):
            _read_safetensors(p)
        for p in sorted(folder.glob("optimizer*.bin")):
            _read_torch(p, ("state", "param_groups"))
        for r in range(world):
            p = folder / f"random_states_{r}.pkl"
            if not p.is_file():
                return f"{p}: missing (RNG state of process {r})"
            _read_torch(p, RNG_KEYS)
    except RunError as e:
        return str(e)
    except OSError as e:
        return f"{folder}: unreadable ({e})"
    return None


def _step_of(folder: Path) -> int:
    try:
        return int(folder.name[len(CKPT_PREFIX):])
    except ValueError:
        return -1


def candidates(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, newest step first.

    By step, not by ``checkpoints/latest``: a crash between the rename of a finished
    folder and the pointer update leaves the newer folder complete and unnamed.
    """
    ckpts = Path(run_dir) / "checkpoints"
    if not ckpts.is_dir():
        return []
    return sorted((p for p in ckpts.glob(f"{CKPT_PREFIX}*") if p.is_dir() and _step_of(p) >= 0),
                  key=_step_of, reverse=True)


def resumable_checkpoint(run_dir: Path, world_size: int | None = None
                         ) -> tuple[Path | None, list[str]]:
    """(newest checkpoint that verifies, one warning per broken newer one).

    (None, []) when the run has no checkpoint; RunError when it has some and none
    can be used, naming what is wrong with the newest.
    """
    warnings: list[str] = []
    folders = candidates(run_dir)
    for folder in folders:
        problem = verify_checkpoint(folder, world_size)
        if problem is None:
            return folder, warnings
        warnings.append(problem)
    if folders:
        raise RunError(f"no usable checkpoint in {Path(run_dir) / 'checkpoints'}: "
                       + "; ".join(warnings[:3]) + ("; ..." if len(warnings) > 3 else "")
                       + ". Start a new --run-dir or remove the broken folders")
    return None, warnings


# -- the loop's part ------------------------------------------------------------------
@dataclass
class LoopState:
    """Where a run is; saved in every checkpoint's meta.json, restored on resume."""

    step: int = 0  # iterations done
    consumed: int = 0  # batches this process has drawn (data position)
    elapsed: float = 0.0  # training seconds over all starts (for minutes=)
    starts: int = 0  # how many times the run has started (1 + resumes)
    history: list[int] = field(default_factory=list)  # steps at which samples were saved

    @classmethod
    def from_meta(cls, meta: dict) -> LoopState:
        return cls(step=meta["step"], consumed=meta["consumed"], elapsed=meta["elapsed"],
                   starts=meta["starts"], history=list(meta.get("history", [])))


class Checkpointer:
    """Saves, verifies, rotates and resumes the checkpoints of one run folder."""

    def __init__(self, accelerator: Any, coll: Collectives, run_dir: Path, keep: int,
                 config_hash: str):
        self.acc, self.coll, self.run_dir = accelerator, coll, Path(run_dir)
        self.keep, self.config_hash = keep, config_hash
        self.folder = self.run_dir / "checkpoints"

    def save(self, state: LoopState, models: Mapping[str, nn.Module],
             optimizers: Mapping[str, torch.optim.Optimizer], ema: EMA) -> Path:
        """accelerate save_state into a temporary folder, then rename and point to it.

        A crash at any moment leaves ``checkpoints/latest`` naming a complete folder.
        Nothing is written unless every weight, buffer and optimizer state (``models``:
        the bare models, EMA included) is finite, on every process: NonFiniteLoss
        instead, naming the newest checkpoint, which therefore is always finite.
        """
        acc, main = self.acc, self.acc.is_main_process
        final = self.folder / checkpoint_name(state.step)
        tmp = self.folder / f".tmp-{final.name}"
        self._check_finite(state.step, models, optimizers)
        self.coll.barrier()
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.coll.barrier()
        acc.save_state(str(tmp), safe_serialization=True)
        self.coll.barrier()
        if main:
            from safetensors.torch import save_file

            save_file(ema.state_dict(), str(tmp / EMA_FILE))
            write_meta(tmp, self._meta(state))  # last: lists every file with its size
            if final.exists():  # same step saved twice (e.g. signal right after a save)
                shutil.rmtree(final)
            os.replace(tmp, final)
            write_text_atomic(self.folder / "latest", final.name + "\n")
            self._rotate(keep=final)
        self.coll.barrier()
        return final

    def _meta(self, state: LoopState) -> dict:
        return {"step": state.step, "consumed": state.consumed, "elapsed": state.elapsed,
                "starts": state.starts, "world_size": self.acc.num_processes,
                "config_sha256": self.config_hash, "tagface_version": __version__,
                "history": state.history}

    def _rotate(self, keep: Path) -> None:
        """Delete all but the newest ``keep_ckpts`` complete folders (never ``keep``)."""
        done = sorted(p for p in self.folder.glob("step_*") if p.is_dir())
        for old in done[:-self.keep]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def _check_finite(self, step: int, models: Mapping[str, nn.Module],
                      optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        problems = nonfinite_report(models, optimizers)
        flag = self.coll.sum(torch.tensor(float(bool(problems)), device=self.acc.device))
        if not float(flag):
            return
        keep = kept_checkpoint(self.run_dir, "the newest checkpoint, {ckpt}, passed this check")
        what = "; ".join(problems) or "another process holds non-finite values"
        raise NonFiniteLoss(f"non-finite weights at step {step} ({what}); no checkpoint "
                            f"written, stopping ({keep}). {ADVICE}")

    def resume(self, ema: EMA) -> LoopState | None:
        """Load the newest checkpoint that verifies; warn about each broken newer one.

        Every file is read before anything is restored, so a resume is all or nothing.
        Returns the loop's state, or None when the run has no checkpoint yet.
        """
        acc = self.acc
        ckpt, broken = resumable_checkpoint(self.run_dir)
        for problem in broken:
            acc.print(f"warning: skipping a broken checkpoint: {problem}")
        if ckpt is None:
            return None
        meta = json.loads((ckpt / META_FILE).read_text())
        if meta.get("world_size", acc.num_processes) != acc.num_processes:
            acc.print(f"note: {ckpt} was written by {meta['world_size']} processes, resuming "
                      f"with {acc.num_processes}: the data order changes (and processes it "
                      f"has no RNG state for start a fresh one)")
        self._load(ckpt, ema)
        state = LoopState.from_meta(meta)
        if acc.is_main_process:
            dropped = truncate_metrics(self.run_dir / "metrics.jsonl", state.step)
            if dropped:
                acc.print(f"metrics.jsonl: dropped {dropped} row(s) logged after step "
                          f"{state.step}")
        acc.print(f"resumed from {ckpt} at step {state.step}")
        return state

    def _load(self, ckpt: Path, ema: EMA) -> None:
        from safetensors.torch import load_file

        from trainer.precision import load_state_any_precision

        try:
            note = load_state_any_precision(self.acc, ckpt)  # weights_only; safetensors
            if note:
                self.acc.print(note)
            ema.load_state_dict(load_file(str(ckpt / EMA_FILE), device="cpu"))
        except (RuntimeError, KeyError, ValueError) as e:  # shapes of another config
            raise RunError(f"{ckpt}: does not fit this run's models and optimizers "
                           f"({str(e).strip().splitlines()[-1]})") from None
