"""The run log: metrics.jsonl, TensorBoard, the progress bar and the run folder's own files.

Phases' scalars are summed on the device between log steps (no host sync per step);
``flush`` averages them over the steps and over processes (a collective every rank
enters) and the main process writes one metrics.jsonl row and the TensorBoard
scalars. Only the main process writes files.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from trainer.collectives import Collectives
from trainer.config import TrainConfig, to_yaml
from trainer.progress import Progress
from trainer.runs import write_text_atomic


class RunLog:
    """What a run records as it trains; see the module docstring."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, coll: Collectives, main: bool):
        self.run_dir, self.cfg, self.coll, self.main = Path(run_dir), cfg, coll, main
        self.sums: dict[str, torch.Tensor] = {}  # "phase/scalar" -> sum since the last row
        self.counts: dict[str, int] = {}
        self.tb: Any = None
        self.bar: Progress | None = None

    # -- the run folder ------------------------------------------------------------------
    def write_run_files(self, vocab: Any, acc: Any, hosts: list[str], state: Any) -> None:
        """config.yaml, vocab.json and world.json (and the samples/, checkpoints/ folders).

        world.json: the processes, precision and hosts of this start (``acc``: the
        run's accelerator, ``state``: the LoopState it starts from).
        """
        rd = self.run_dir
        (rd / "samples").mkdir(parents=True, exist_ok=True)
        (rd / "checkpoints").mkdir(exist_ok=True)
        write_text_atomic(rd / "config.yaml", to_yaml(self.cfg))
        if vocab is not None:
            from trainer.data.vocab import save_vocab

            save_vocab(vocab, rd / "vocab.json")
        self._write_world({
            "world_size": acc.num_processes, "distributed_type": str(acc.distributed_type),
            "mixed_precision": acc.mixed_precision, "device": str(acc.device),
            "hosts": hosts, "start": state.starts + 1, "resumed_at": state.step})

    def update_world(self, **fields: Any) -> None:
        """Add fields to world.json (e.g. the replica checksums at the end)."""
        world = json.loads((self.run_dir / "world.json").read_text())
        self._write_world({**world, **fields})

    def _write_world(self, world: dict) -> None:
        write_text_atomic(self.run_dir / "world.json", json.dumps(world, indent=2) + "\n")

    # -- a start ---------------------------------------------------------------------------
    def open(self, step: int, elapsed: float) -> None:
        """TensorBoard and the progress bar of a start at ``step`` (main process)."""
        if not self.main:
            return
        from torch.utils.tensorboard import SummaryWriter

        # Hide events logged after the checkpoint (the step itself was logged before it).
        self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=step + 1 if step else None)
        cfg = self.cfg  # steps, or seconds of the minutes= budget (trainer/progress.py)
        self.bar = Progress(cfg.name, cfg.steps, step, cfg.minutes, elapsed,
                            disable=os.environ.get("TAGFACE_NO_BAR") == "1")

    def progress(self, step: int, elapsed: float) -> None:
        if self.bar is not None:
            self.bar.update(step, elapsed)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    # -- scalars ---------------------------------------------------------------------------
    def add(self, phase: str, out: dict[str, torch.Tensor]) -> None:
        """Accumulate one phase step's scalars (on the device)."""
        for k, v in out.items():
            key = f"{phase}/{k}"
            v = v.detach().float()
            self.sums[key] = self.sums[key] + v if key in self.sums else v
            self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self, step: int, images: int, seconds: float, lr: float,
              elapsed: float) -> dict[str, float]:
        """Average the scalars since the last row over processes and write the row."""
        keys = sorted(self.sums)
        sums, counts = self.sums, self.counts
        self.sums, self.counts = {}, {}
        if not keys:
            return {}
        vals = self.coll.mean(torch.stack([sums[k] / counts[k] for k in keys]))
        row: dict[str, float] = dict(zip(keys, vals.tolist(), strict=True))
        if not self.main:
            return row
        row.update({"step": step, "img_per_s": round(images / max(seconds, 1e-9), 1),
                    "lr/G": lr, "time": round(elapsed, 2)})
        self._append(row)
        for k, v in row.items():
            if k != "step" and isinstance(v, float | int) and math.isfinite(v):
                self.tb.add_scalar(k, v, step)
        if self.bar is not None:
            self.bar.set_postfix({k.replace("/loss", ""): f"{v:.3f}"
                                  for k, v in row.items() if k.endswith("/loss")})
        return row

    def eval_row(self, step: int, scores: dict[str, float]) -> None:
        """An in-training evaluation's scores as ``eval/...`` (main process)."""
        self._append({"step": step, **{f"eval/{k}": v for k, v in scores.items()}})
        for k, v in scores.items():
            self.tb.add_scalar(f"eval/{k}", v, step)

    def _append(self, row: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
