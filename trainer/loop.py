"""The one training loop, generic over model families.

A recipe gives networks, optimizers and phases (trainer/recipes/base.py). The loop
runs the phases, each on its interval, and hands every other job to one part:

- ``StepLoader`` (trainer/data/batches.py): the resumable order of global batches;
- ``Checkpointer`` (trainer/checkpoints.py): save, verify, rotate, resume;
- ``RunLog`` (trainer/runlog.py): metrics.jsonl, TensorBoard, progress bar, run files;
- ``StopAgreement`` (trainer/stopping.py): signals, time budget, NaN stop, agreed by all;
- ``EMA`` (trainer/ema.py) and ``Pictures`` (trainer/pictures.py);
- ``Collectives`` (trainer/collectives.py): every call that reaches other processes;
- ``Callback``: public hooks at each iteration's start and end (the benchmarks use one).

Gradient synchronisation: GAN phases run several forwards per backward (real,
fake, interpolates for the gradient penalty, D inside the G phase). DDP's
reducer assumes one forward per backward, so every phase runs under
``accelerator.no_sync`` and the loop averages the trained model's gradients
itself, in one flat bucket, before the optimizer step. The prepared modules
still give DDP's parameter and buffer broadcast.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from trainer.checkpoints import Checkpointer, LoopState
from trainer.collectives import Collectives, shutdown
from trainer.config import TrainConfig, config_sha256
from trainer.data.batches import StepLoader
from trainer.ema import EMA
from trainer.pictures import Pictures
from trainer.recipes.base import Batch, Phase, Recipe
from trainer.runlog import RunLog
from trainer.schedule import LinearDecay
from trainer.standing_stats import standing_statistics
from trainer.stopping import NonFiniteLoss, StopAgreement

__all__ = ["Callback", "NonFiniteLoss", "Trainer", "shutdown"]


class Callback:
    """Hooks into the loop: subclass, override, pass ``callbacks=[...]`` to the Trainer."""

    def on_step_start(self, trainer: Trainer) -> None:
        """Before iteration ``trainer.state.step`` (and its learning-rate decay) runs."""

    def on_step_end(self, trainer: Trainer) -> None:
        """After an iteration with its logging, sampling, stop agreement and checkpoint."""


class Trainer:
    """Runs one recipe on one run folder; ``run()`` returns the final step."""

    def __init__(self, cfg: TrainConfig, recipe_factory: Callable[[], Recipe], run_dir: Path,
                 resume: bool, accelerator: Accelerator, dataset: Any, vocab: Any,
                 callbacks: Iterable[Callback] = ()):
        self.cfg, self.run_dir, self.acc = cfg, Path(run_dir), accelerator
        self.dataset, self.vocab, self.callbacks = dataset, vocab, list(callbacks)
        self.device, main = accelerator.device, accelerator.is_main_process
        self.coll = Collectives(accelerator)
        self.state = LoopState()
        self.stop = StopAgreement(self.coll, self.device, cfg.steps, cfg.minutes)
        self.stop_reason = ""  # after run(): "", "signal" or "time budget"
        self.log = RunLog(self.run_dir, cfg, self.coll, main)
        self.checkpoints = Checkpointer(accelerator, self.coll, self.run_dir, cfg.keep_ckpts,
                                        config_sha256(cfg))
        # Same seed on every process while building, so all start from the same weights.
        set_seed(cfg.seed)
        self.recipe = recipe_factory()
        self.ema = EMA(self.recipe.models[self.recipe.ema_of], cfg.ema, cfg.ema_start)
        self._standing_at = -1  # the step whose EMA weights the BatchNorm statistics fit
        self.data = self._prepare()
        self.phases: list[Phase] = self.recipe.phases()
        if resume:
            self.state = self.checkpoints.resume(self.ema) or self.state
        # Different random streams per process from here on (noise, flips, wrong tags).
        if self.state.step == 0:
            set_seed(cfg.seed + 1 + accelerator.process_index)
        self.pictures = Pictures(self.run_dir, self.recipe, cfg, dataset, self.device)
        hosts = self.coll.hostnames()  # a collective: every process calls it
        if main:
            self.log.write_run_files(vocab, accelerator, hosts, self.state)

    def _prepare(self) -> StepLoader:
        """Memory format, the data loader, Accelerate's prepare; EMA to the device."""
        cfg, acc, recipe = self.cfg, self.acc, self.recipe
        if cfg.channels_last:
            for m in recipe.models.values():
                m.to(memory_format=torch.channels_last)
        data = StepLoader(self.dataset, cfg.batch_size, cfg.seed, cfg.workers, cfg.data.flip,
                          cfg.channels_last, acc)  # prepared at start, at the data position
        names = list(recipe.models)
        prepared = acc.prepare(*[recipe.models[n] for n in names],
                               *[recipe.optimizers[n] for n in names])
        for i, n in enumerate(names):
            recipe.models[n] = prepared[i]
            recipe.optimizers[n] = prepared[len(names) + i]
        self.ema.to(self.device)
        self.lr = LinearDecay(recipe.optimizers, cfg.lr_decay_start, cfg.steps)
        return data

    def bare_models(self) -> dict[str, nn.Module]:
        """The recipe's models without Accelerate's wrappers."""
        return {n: self.acc.unwrap_model(m) for n, m in self.recipe.models.items()}

    def request_stop(self) -> None:
        """Stop as a preemption signal would: checkpoint, leave at the next agreed step."""
        self.stop.request()

    def save_checkpoint(self) -> Path:
        """A checkpoint of the current state (every process calls it); see Checkpointer."""
        self._standing_ema()
        models = {**self.bare_models(), f"{self.recipe.ema_of} EMA": self.ema.model}
        return self.checkpoints.save(self.state, models, self.recipe.optimizers, self.ema)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Train to ``cfg.steps`` or an agreed stop, checkpoint, finish; the final step."""
        st = self.state
        self.stop.install()
        st.starts += 1
        self.log.open(st.step, st.elapsed)
        try:
            reason = self._train()
        finally:
            self.log.close_bar()
            self.stop.restore()
        self._check_replicas()
        self.stop_reason = reason
        self._wrap_up(reason)
        self.log.close()
        return st.step

    def _train(self) -> str:
        """Iterations until done or stopped; the stop reason ("" when done)."""
        cfg, st = self.cfg, self.state
        batches = self._batches()
        self._t0, self._elapsed0, self._images = time.perf_counter(), st.elapsed, 0
        last_ckpt, reason = st.step, ""
        while st.step < cfg.steps:
            if self.stop.budget_spent(st.elapsed):
                reason = "time budget"  # e.g. resuming a run that used its budget
                break
            for cb in self.callbacks:
                cb.on_step_start(self)
            self._iteration(batches)
            reason = self._step_end()
            if reason:
                break
            if st.step % cfg.ckpt_every == 0 or st.step == cfg.steps:
                self.save_checkpoint()
                last_ckpt = st.step
            for cb in self.callbacks:
                cb.on_step_end(self)
        if st.step != last_ckpt or reason == "signal":
            self.save_checkpoint()
        return reason

    def _batches(self) -> Iterator[Batch]:
        for batch in self.data.batches(self.state.consumed):
            self.state.consumed += 1
            yield batch

    def _iteration(self, batches: Iterator[Batch]) -> None:
        """One iteration: every phase due at this step, each repeat on a new batch."""
        st = self.state
        self.lr.apply(st.step)
        self.recipe.epoch = self.data.epoch(st.consumed)  # for schedules by epoch (top-k)
        first = next(batches)
        for phase in self.phases:
            if st.step % phase.every:
                continue
            for r in range(phase.repeat):
                out = self._run_phase(phase, first if r == 0 else next(batches))
                self.log.add(phase.name, out)
                self.stop.watch(out["loss"], st.step)
        st.step += 1
        self._images += self.cfg.batch_size * self.acc.num_processes
        st.elapsed = self._elapsed0 + time.perf_counter() - self._t0
        self.log.progress(st.step, st.elapsed)

    def _step_end(self) -> str:
        """NaN check, log row, samples, evaluation; an agreed stop reason before the end."""
        cfg, st = self.cfg, self.state
        at_log = st.step % cfg.log_every == 0 or st.step == cfg.steps
        if at_log or st.step % cfg.ckpt_every == 0 or st.step == cfg.steps:
            self.stop.raise_if_nonfinite(self.run_dir, self.log.sums)
        if at_log:
            lr = self.recipe.optimizers[self.recipe.ema_of].param_groups[0]["lr"]
            self.log.flush(st.step, self._images, time.perf_counter() - self._t0, lr,
                           st.elapsed)
        if st.step % cfg.sample_every == 0 or st.step == cfg.steps:
            self._sample()
        if cfg.eval_every and st.step % cfg.eval_every == 0:
            self._evaluate()
        reason = self.stop.agreed(st.step, st.elapsed)
        return reason if st.step < cfg.steps else ""

    def _run_phase(self, phase: Phase, batch: Batch) -> dict[str, torch.Tensor]:
        acc, models = self.acc, self.recipe.models
        for n, m in models.items():
            m.requires_grad_(n == phase.model)
        opt = self.recipe.optimizers[phase.model]
        with contextlib.ExitStack() as stack:
            for m in models.values():
                stack.enter_context(acc.no_sync(m))
            with acc.autocast():
                loss, scalars = phase.step(batch)
            acc.backward(loss)
        self.coll.average_gradients(models[phase.model])
        opt.step()
        opt.zero_grad(set_to_none=True)
        if phase.after is not None:
            phase.after()
        if phase.model == self.recipe.ema_of:
            self.ema.update(acc.unwrap_model(models[phase.model]), self.state.step)
        return {"loss": loss.detach(), **scalars}

    # -- outputs ---------------------------------------------------------------------------
    def _standing_ema(self) -> None:
        """Measure the EMA G's BatchNorm statistics on its own weights (trainer/standing_stats.py)
        before it is sampled or saved: once per step, on the main process (the one that
        samples and writes g_ema.safetensors). The next EMA update copies G's again, so
        training never sees them."""
        cfg, step = self.cfg, self.state.step
        if cfg.ema_bn_batches <= 0 or self._standing_at == step or not self.acc.is_main_process:
            return
        self._standing_at = step
        standing_statistics(self.ema.model, lambda n, g: self.recipe.g_inputs(self.dataset, n, g),
                            cfg.ema_bn_batches, cfg.batch_size, seed=cfg.seed + step)

    def _sample(self) -> None:
        if self.acc.is_main_process:  # the history of sample steps is the main process's
            self._standing_ema()
            self.pictures.sample(self.ema.model, self.state.step)
            self.state.history.append(self.state.step)

    def _evaluate(self) -> None:
        if not self.acc.is_main_process:
            return
        from trainer.evaluate import evaluate_during_training

        self._standing_ema()
        scores = evaluate_during_training(self.ema.model, self.dataset, self.vocab, self.cfg,
                                          fid=self.cfg.eval_fid)
        self.log.eval_row(self.state.step, scores)

    def _check_replicas(self) -> None:
        """Every process must hold the same weights; per-rank checksums go to world.json."""
        if self.coll.world > 1:
            models = {**self.bare_models(), "ema": self.ema.model}
            sums = self.coll.replica_checksums(models, self.device)
            if self.acc.is_main_process:
                self.log.update_world(replica_checksums=sums)
            self.coll.raise_if_diverged(sums)

    def _wrap_up(self, reason: str) -> None:
        """Say how the run ended; unless preempted, the final pictures."""
        st = self.state
        self.stop.conclude(reason, st.step, self.acc, self.run_dir)
        if reason != "signal" and self.acc.is_main_process:
            if st.step not in st.history:
                self._sample()  # a time budget ends between sample steps: show the last one
            self._standing_ema()
            self.pictures.finish(self.ema.model)
