"""When a run stops early, agreed by every process: a signal, the time budget, a NaN loss.

- A stop signal (SIGUSR1 from Slurm before preemption, SIGTERM) or ``request()``
  makes the run checkpoint and exit at the next agreed step, resumable.
- The ``minutes=`` budget counts training seconds over all starts.
- A non-finite loss is noted on the device (no host sync per step) and checked at
  log and checkpoint steps: ``NonFiniteLoss`` then, keeping the last good checkpoint.

With several processes every rank enters the collectives on the same steps (every
5th and the last for the stop flags), whatever its own flags say, so they line up.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import torch

from trainer.collectives import Collectives
from trainer.runs import latest_checkpoint, write_text_atomic

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
AGREE_EVERY = 5  # steps between stop-flag agreements with several processes
ADVICE = ("Lower the learning rate, use mixed_precision=no or bf16, or add loss.gp / "
          "model.spectral_norm.")


class NonFiniteLoss(RuntimeError):
    """A loss or a weight became NaN or inf; the run stops and keeps its last good checkpoint."""


def kept_checkpoint(run_dir: Path, good: str) -> str:
    """What a non-finite stop leaves: the newest checkpoint (``good`` says why it is fine)."""
    ckpt = latest_checkpoint(run_dir)
    return good.format(ckpt=ckpt) if ckpt else "no checkpoint was written"


class StopAgreement:
    """Stop flags of one run and their agreement across processes."""

    def __init__(self, coll: Collectives, device: torch.device, steps: int, minutes: float):
        self.coll, self.device = coll, device
        self.steps, self.minutes, self.budget = steps, minutes, minutes * 60
        self.signum: int | None = None
        self._old: dict[int, object] = {}
        self._bad_step = torch.full((), -1, dtype=torch.long, device=device)

    # -- signals ---------------------------------------------------------------------------
    def install(self) -> None:
        """Catch the stop signals (where possible: only the main thread may)."""
        for s in STOP_SIGNALS:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. under a test runner thread)
                pass

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def restore(self) -> None:
        """Put the previous signal handlers back."""
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def request(self) -> None:
        """Stop as a preemption signal would: checkpoint, then leave at the next agreed step."""
        self.signum = signal.SIGUSR1

    # -- budget and agreement --------------------------------------------------------------
    def budget_spent(self, elapsed: float) -> bool:
        """Whether ``elapsed`` training seconds used up the ``minutes=`` budget (if any)."""
        return bool(self.budget) and elapsed >= self.budget

    def agreed(self, step: int, elapsed: float) -> str:
        """"signal", "time budget" or "" after iteration ``step``, the same on every process."""
        flags = [float(self.signum is not None), float(self.budget_spent(elapsed))]
        if self.coll.world > 1:
            if step % AGREE_EVERY and step < self.steps:
                return ""
            total = self.coll.sum(torch.tensor(flags, device=self.device))
            flags = [float(v) for v in total.tolist()]  # any process stopping stops all
        if flags[0]:
            return "signal"
        return "time budget" if flags[1] else ""

    def conclude(self, reason: str, step: int, acc: Any, run_dir: Path) -> None:
        """How the run ended, said once: a signal leaves the ``preempted`` marker (removed
        by a run that ends otherwise) and the command that continues it."""
        main = acc.is_main_process
        if reason == "signal":
            if main:
                write_text_atomic(run_dir / "preempted", f"{step}\n")
            acc.print(f"stopped by a signal at step {step} of {self.steps}, not done; "
                      f"checkpoint saved. Continue with: python -m trainer.train --run-dir "
                      f"{run_dir} --resume auto")
            return
        if reason:
            acc.print(f"time budget of {self.minutes} min reached at step {step}; "
                      f"checkpoint saved (--resume auto with a larger minutes= continues)")
        if main:
            (run_dir / "preempted").unlink(missing_ok=True)

    # -- non-finite losses -----------------------------------------------------------------
    def watch(self, loss: torch.Tensor, step: int) -> None:
        """Note ``step`` if ``loss`` is not finite and no earlier step was (on the device)."""
        bad = ~torch.isfinite(loss)
        self._bad_step = torch.where(bad & (self._bad_step < 0), step, self._bad_step)

    def first_bad(self) -> int:
        """The first step with a non-finite loss on any process, or -1 (one host sync)."""
        if self.coll.world > 1:
            big = torch.iinfo(torch.long).max
            flag = self.coll.min(torch.where(self._bad_step < 0, big, self._bad_step))
            return -1 if int(flag) == big else int(flag)
        return int(self._bad_step)

    def raise_if_nonfinite(self, run_dir: Path, losses: dict[str, torch.Tensor]) -> None:
        """NonFiniteLoss naming the losses if any process saw one (a collective)."""
        step = self.first_bad()
        if step < 0:
            return
        bad = [k for k, v in losses.items() if k.endswith("/loss") and not torch.isfinite(v)]
        keep = kept_checkpoint(run_dir, "the last good checkpoint is {ckpt}, with finite weights")
        raise NonFiniteLoss(f"{', '.join(bad) or 'a loss'} became NaN or inf at step {step}; "
                            f"stopping ({keep}). {ADVICE}")
