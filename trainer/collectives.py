"""Every collective of a training run, in one place; each one a no-op in a single process.

The loop, the checkpointer, the stop agreement, the run log and the run lock reach
the other processes only through ``Collectives``. A collective must be entered by
every rank in the same order, or the run hangs: keeping them here makes each call
site visible. Tensors go through ``torch.distributed`` directly (sum, mean, min,
gather, the gradient bucket); the barrier is Accelerate's ``wait_for_everyone``,
which picks the device for NCCL. ``shutdown`` ends a run's processes cleanly.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def process_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the process group (a copy), for code that has no accelerator:
    D's adaptive augmentation (trainer.augment) and LeCam's averages (trainer.losses).
    ``t`` itself when there is no group."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t)
    return t


class Collectives:
    """Cross-process operations of one run; ``accelerator`` gives the world and the barrier."""

    def __init__(self, accelerator: Any):
        self.acc = accelerator
        self.world: int = accelerator.num_processes

    @property
    def active(self) -> bool:
        """Several processes with an initialised process group."""
        return self.world > 1 and dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        """Wait until every process gets here."""
        self.acc.wait_for_everyone()

    def _reduce(self, t: torch.Tensor, op: dist.ReduceOp.RedOpType) -> torch.Tensor:
        t = t.clone()
        if self.active:
            dist.all_reduce(t, op=op)
        return t

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over processes (a copy; ``t`` is left alone)."""
        return self._reduce(t, dist.ReduceOp.SUM)

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """Elementwise mean over processes: the sum divided by the world size."""
        out = self.sum(t)
        if self.active:
            out /= self.world
        return out

    def min(self, t: torch.Tensor) -> torch.Tensor:
        """Elementwise minimum over processes."""
        return self._reduce(t, dist.ReduceOp.MIN)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every process's ``t`` concatenated along dim 0, in rank order."""
        if not self.active:
            return t.clone()
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=0)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's picklable ``obj``, in rank order."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """The main process's picklable ``obj``, on every process."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def average_gradients(self, model: nn.Module) -> None:
        """Average the gradients of ``model`` over processes in one flat bucket.

        Phases run under ``no_sync`` (several forwards per backward), so DDP's reducer
        does not do it; one bucket is one collective per optimizer step.
        """
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not self.active or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n

    def hostnames(self) -> list[str]:
        """Each process's host (the Slurm node name where there is one), in rank order."""
        name = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
        return [str(h) for h in self.gather_objects(name)]

    @torch.no_grad()
    def replica_checksums(self, models: dict[str, nn.Module], device: torch.device
                          ) -> dict[str, list[float]]:
        """Per model, each process's float64 sum of its parameters (all equal when in sync)."""
        local = torch.stack([sum((p.double().sum() for p in m.parameters()),
                                 torch.zeros((), dtype=torch.float64, device=device))
                             for m in models.values()])
        everyone = self.gather(local[None]).cpu()  # [world, n_models]
        return {n: everyone[:, i].tolist() for i, n in enumerate(models)}

    @staticmethod
    def raise_if_diverged(sums: dict[str, list[float]]) -> None:
        """RuntimeError naming the models whose per-process checksums differ."""
        diverged = [n for n, v in sums.items() if len(set(v)) > 1]
        if diverged:
            raise RuntimeError(f"processes hold different weights for {', '.join(diverged)}: "
                               f"{sums}; gradient synchronisation is broken")


def shutdown(acc: Any, trainer: Any | None) -> None:
    """Tear down in the order that avoids gloo's abort at exit (SIGABRT in about half of
    2-process runs without it): drop every reference to what was prepared, then end."""
    Collectives(acc).barrier()
    if trainer is not None:
        trainer.recipe.models.clear()
        trainer.recipe.optimizers.clear()
        trainer.__dict__.clear()  # EMA, loader, fixed inputs: nothing may outlive the group
    acc.free_memory()  # the accelerator's own references to what it prepared; collects
    acc.end_training()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
