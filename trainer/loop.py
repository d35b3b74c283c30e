"""The one training loop, generic over GANs.

A recipe gives networks, optimizers and phases (trainer/recipes/base.py). The
loop owns everything else once: devices, processes and precision (through
Accelerate), data order, gradient synchronisation, EMA, learning-rate decay,
logging, samples, checkpoints, resume, preemption signals and the NaN stop.

Gradient synchronisation: GAN phases run several forwards per backward (real,
fake, interpolates for the gradient penalty, D inside the G phase). DDP's
reducer assumes one forward per backward, so every phase runs under
``accelerator.no_sync`` and the loop all-reduces the trained model's gradients
itself, in one flat bucket, before the optimizer step. The prepared modules
still give DDP's parameter and buffer broadcast.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from safetensors.torch import load_file, save_file
from torch import nn

from trainer import __version__
from trainer.checkpoints import nonfinite_report, resumable_checkpoint, write_meta
from trainer.config import TrainConfig, config_sha256, to_yaml
from trainer.data.transforms import to_model_input
from trainer.data.vocab import save_vocab
from trainer.precision import load_state_any_precision
from trainer.progress import Progress
from trainer.recipes.base import Batch, Phase, Recipe
from trainer.runs import (
    EMA_FILE,
    META_FILE,
    RunError,
    checkpoint_name,
    latest_checkpoint,
    truncate_metrics,
    write_text_atomic,
)
from trainer.viz import plot_losses, progress_strip, save_grid

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class NonFiniteLoss(RuntimeError):
    """A loss or a weight became NaN or inf; the run stops and keeps its last good checkpoint."""


class StepBatches(torch.utils.data.Sampler[list[int]]):
    """Global batches of indices, epoch after epoch, a pure function of (seed, position).

    Batch b of the stream is the (b mod per_epoch)-th chunk of epoch b // per_epoch's
    permutation, so resuming needs only the number of batches already consumed.
    Accelerate shards the stream across processes (every world-th batch).
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0):
        if n < batch_size:
            raise ValueError(f"the dataset has {n} images, fewer than one batch of "
                             f"{batch_size}; lower batch_size")
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start
        self.per_epoch = n // batch_size

    def __iter__(self) -> Iterator[list[int]]:
        b = self.start
        while True:
            epoch, i = divmod(b, self.per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + epoch))
            for j in range(i, self.per_epoch):
                yield perm[j * self.batch_size:(j + 1) * self.batch_size].tolist()
            b = (epoch + 1) * self.per_epoch


class BatchView(torch.utils.data.Dataset):
    """Fetches a whole batch with one fancy index into the uint8 cache."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i]

    def __getitems__(self, idx: list[int]):
        index = torch.as_tensor(idx)
        return self.dataset.images[index], self.dataset.labels[index]


def _identity(x):
    return x


@dataclass
class LoopState:
    step: int = 0  # iterations done
    consumed: int = 0  # batches this process has drawn (data position)
    elapsed: float = 0.0  # training seconds over all starts (for minutes=)
    starts: int = 0  # how many times the run has started (1 + resumes)
    history: list[int] = field(default_factory=list)  # steps at which samples were saved


class StopFlag:
    """Set by SIGUSR1 / SIGTERM; the loop checkpoints and exits at the next agreed step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def install(self) -> None:
        for s in STOP_SIGNALS:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. under a test runner thread)
                pass

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class Trainer:
    """Runs one recipe on one run folder; ``run()`` returns the final step."""

    def __init__(self, cfg: TrainConfig, recipe_factory, run_dir: Path, resume: bool,
                 accelerator: Accelerator, dataset, vocab):
        self.cfg, self.run_dir, self.acc = cfg, Path(run_dir), accelerator
        self.dataset, self.vocab = dataset, vocab
        self.device = accelerator.device
        self.state = LoopState()
        self.stop = StopFlag()
        self.stop_reason = ""  # after run(): "", "signal" or "time budget"
        self.tb = None
        main = accelerator.is_main_process

        # Same seed on every process while building, so all start from the same weights.
        set_seed(cfg.seed)
        self.recipe: Recipe = recipe_factory()
        self.recipe.accelerator = accelerator
        names = list(self.recipe.models)
        G = self.recipe.models[self.recipe.ema_of]
        self.ema = _make_ema(G)
        if cfg.channels_last:
            for m in self.recipe.models.values():
                m.to(memory_format=torch.channels_last)
        sampler = StepBatches(len(dataset), cfg.batch_size, cfg.seed)
        self.sampler = sampler
        loader = torch.utils.data.DataLoader(
            BatchView(dataset), batch_sampler=sampler, collate_fn=_identity,
            num_workers=cfg.workers, pin_memory=self.device.type == "cuda",
            persistent_workers=cfg.workers > 0,
            # Its own generator: creating an iterator must not draw from the global
            # RNG, or a resumed run would see different noise than an uninterrupted one.
            generator=torch.Generator().manual_seed(cfg.seed))
        prepared = accelerator.prepare(*[self.recipe.models[n] for n in names],
                                       *[self.recipe.optimizers[n] for n in names])
        for i, n in enumerate(names):
            self.recipe.models[n] = prepared[i]
            self.recipe.optimizers[n] = prepared[len(names) + i]
        self.loader = loader  # prepared lazily at start, once the data position is known
        self.ema.to(self.device)
        self.base_lr = {n: [g["lr"] for g in o.param_groups]
                        for n, o in self.recipe.optimizers.items()}
        self.phases: list[Phase] = self.recipe.phases()
        if resume:
            self._resume()
        # Different random streams per process from here on (noise, flips, wrong tags).
        if self.state.step == 0:
            set_seed(cfg.seed + 1 + accelerator.process_index)
        self.fixed = self.recipe.fixed_inputs(dataset, cfg.n_samples, cfg.seed)
        self.fixed = {k: v.to(self.device) for k, v in self.fixed.items()}
        self.hosts = _gather_hostnames(accelerator)  # a collective: every process calls it
        if main:
            self._write_run_files()

    # -- run folder ----------------------------------------------------------
    def _write_run_files(self) -> None:
        rd = self.run_dir
        (rd / "samples").mkdir(parents=True, exist_ok=True)
        (rd / "checkpoints").mkdir(exist_ok=True)
        write_text_atomic(rd / "config.yaml", to_yaml(self.cfg))
        if self.vocab is not None:
            save_vocab(self.vocab, rd / "vocab.json")
        acc = self.acc
        write_text_atomic(rd / "world.json", json.dumps({
            "world_size": acc.num_processes, "distributed_type": str(acc.distributed_type),
            "mixed_precision": acc.mixed_precision, "device": str(acc.device),
            "hosts": self.hosts, "start": self.state.starts + 1, "resumed_at": self.state.step,
        }, indent=2) + "\n")

    # -- checkpoints ---------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """accelerate save_state into a temporary folder, then rename and point to it.

        A crash at any moment leaves ``checkpoints/latest`` naming a complete folder.
        Nothing is written unless every weight, buffer and optimizer state (EMA
        included) is finite, on every process: NonFiniteLoss instead, naming the
        newest checkpoint, which therefore is always finite.
        """
        acc = self.acc
        ckpts = self.run_dir / "checkpoints"
        final = ckpts / checkpoint_name(self.state.step)
        tmp = ckpts / f".tmp-{final.name}"
        self._check_finite_state()
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_file({k: v.detach().float().cpu().contiguous()
                       for k, v in self.ema.state_dict().items()}, str(tmp / EMA_FILE))
            meta = {"step": self.state.step, "consumed": self.state.consumed,
                    "elapsed": self.state.elapsed, "starts": self.state.starts,
                    "world_size": acc.num_processes, "config_sha256": config_sha256(self.cfg),
                    "tagface_version": __version__, "history": self.state.history}
            write_meta(tmp, meta)  # last: lists every file with its size
            if final.exists():  # same step saved twice (e.g. signal right after a save)
                shutil.rmtree(final)
            os.replace(tmp, final)
            write_text_atomic(ckpts / "latest", final.name + "\n")
            self._prune(ckpts, keep=final)
        acc.wait_for_everyone()
        return final

    def _prune(self, ckpts: Path, keep: Path) -> None:
        done = sorted(p for p in ckpts.glob("step_*") if p.is_dir())
        for old in done[:-self.cfg.keep_ckpts]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def _check_finite_state(self) -> None:
        acc = self.acc
        models = {n: acc.unwrap_model(m) for n, m in self.recipe.models.items()}
        problems = nonfinite_report({**models, f"{self.recipe.ema_of} EMA": self.ema},
                                    self.recipe.optimizers)
        flag = torch.tensor(float(bool(problems)), device=self.device)
        if acc.num_processes > 1:
            flag = acc.reduce(flag, reduction="sum")
        if not float(flag):
            return
        ckpt = latest_checkpoint(self.run_dir)
        keep = (f"the newest checkpoint, {ckpt}, passed this check" if ckpt
                else "no checkpoint was written")
        what = "; ".join(problems) or "another process holds non-finite values"
        raise NonFiniteLoss(f"non-finite weights at step {self.state.step} ({what}); no "
                            f"checkpoint written, stopping ({keep}). Lower the learning rate, "
                            f"use mixed_precision=no or bf16, or add loss.gp / "
                            f"model.spectral_norm.")

    def _resume(self) -> None:
        """Load the newest checkpoint that verifies; warn about each broken newer one.

        Every file is read before anything is restored, so a resume is all or nothing.
        """
        # The RNG states the checkpoint's own processes wrote must all be readable.
        ckpt, broken = resumable_checkpoint(self.run_dir)
        for problem in broken:
            self.acc.print(f"warning: skipping a broken checkpoint: {problem}")
        if ckpt is None:
            return
        meta = json.loads((ckpt / META_FILE).read_text())
        if meta.get("world_size", self.acc.num_processes) != self.acc.num_processes:
            self.acc.print(f"note: {ckpt} was written by {meta['world_size']} processes, "
                           f"resuming with {self.acc.num_processes}: the data order changes "
                           f"(and processes it has no RNG state for start a fresh one)")
        try:
            note = load_state_any_precision(self.acc, ckpt)  # weights_only; safetensors
            if note:
                self.acc.print(note)
            ema = load_file(str(ckpt / EMA_FILE), device="cpu")  # copied to the device below
            self.ema.load_state_dict(ema)
        except (RuntimeError, KeyError, ValueError) as e:  # shapes of another config
            raise RunError(f"{ckpt}: does not fit this run's models and optimizers "
                           f"({str(e).strip().splitlines()[-1]})") from None
        self.state = LoopState(step=meta["step"], consumed=meta["consumed"],
                               elapsed=meta["elapsed"], starts=meta["starts"],
                               history=list(meta.get("history", [])))
        if self.acc.is_main_process:
            dropped = truncate_metrics(self.run_dir / "metrics.jsonl", self.state.step)
            if dropped:
                self.acc.print(f"metrics.jsonl: dropped {dropped} row(s) logged after step "
                               f"{self.state.step}")
        self.acc.print(f"resumed from {ckpt} at step {self.state.step}")

    # -- the loop ------------------------------------------------------------
    def _batches(self) -> Iterator[Batch]:
        world = self.acc.num_processes
        self.sampler.start = self.state.consumed * world
        loader = self.acc.prepare_data_loader(self.loader, device_placement=True)
        cl = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        for images, labels in loader:
            self.state.consumed += 1
            x = to_model_input(images.to(self.device, non_blocking=True), flip=self.cfg.data.flip)
            yield {"image": x.contiguous(memory_format=cl),
                   "labels": labels.to(self.device, non_blocking=True)}

    def _set_lr(self) -> None:
        start, end = self.cfg.lr_decay_start, self.cfg.steps
        if start <= 0 or self.state.step < start:
            return
        frac = max(0.0, 1.0 - (self.state.step - start) / max(1, end - start))
        for n, opt in self.recipe.optimizers.items():
            for g, base in zip(opt.param_groups, self.base_lr[n], strict=True):
                g["lr"] = base * frac

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
        if acc.num_processes > 1:
            _all_reduce_grads(models[phase.model], acc.num_processes)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if phase.after is not None:
            phase.after()
        if phase.model == self.recipe.ema_of:
            self._update_ema()
        return {"loss": loss.detach(), **scalars}

    @torch.no_grad()
    def _update_ema(self) -> None:
        src = self.acc.unwrap_model(self.recipe.models[self.recipe.ema_of])
        # Warm-up as tf.train.ExponentialMovingAverage(num_updates): early samples follow G.
        step = self.state.step
        decay = 0.0 if step < self.cfg.ema_start else min(self.cfg.ema, (1 + step) / (10 + step))
        ema_p = list(self.ema.parameters())
        src_p = [p.detach().to(e.dtype) for p, e in zip(src.parameters(), ema_p, strict=True)]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - decay)
        for e, b in zip(self.ema.buffers(), src.buffers(), strict=True):
            e.copy_(b)

    def run(self) -> int:
        cfg, acc, st = self.cfg, self.acc, self.state
        main = acc.is_main_process
        self.stop.install()
        if main:
            from torch.utils.tensorboard import SummaryWriter

            # Hide events logged after the checkpoint (the step itself was logged before it).
            self.tb = SummaryWriter(str(self.run_dir / "tb"),
                                    purge_step=st.step + 1 if st.step else None)
        st.starts += 1
        bar = None
        if main:  # steps, or seconds of the minutes= budget (trainer/progress.py)
            bar = Progress(cfg.name, cfg.steps, st.step, cfg.minutes, st.elapsed,
                           disable=os.environ.get("TAGFACE_NO_BAR") == "1")
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        batches = self._batches()
        t0 = time.perf_counter()
        elapsed0 = st.elapsed
        images_done = 0
        stop_reason = ""
        last_ckpt = st.step
        try:
            while st.step < cfg.steps:
                if cfg.minutes and st.elapsed >= cfg.minutes * 60:
                    stop_reason = "time budget"  # e.g. resuming a run that used its budget
                    break
                self._set_lr()
                first = next(batches)
                for phase in self.phases:
                    if st.step % phase.every:
                        continue
                    for r in range(phase.repeat):
                        batch = first if r == 0 else next(batches)
                        out = self._run_phase(phase, batch)
                        for k, v in out.items():
                            key = f"{phase.name}/{k}"
                            v = v.detach().float()
                            sums[key] = sums[key] + v if key in sums else v
                            counts[key] = counts.get(key, 0) + 1
                        bad = ~torch.isfinite(out["loss"])
                        bad_step = torch.where(bad & (bad_step < 0), st.step, bad_step)
                st.step += 1
                images_done += cfg.batch_size * acc.num_processes
                st.elapsed = elapsed0 + time.perf_counter() - t0
                if bar is not None:
                    bar.update(st.step, st.elapsed)

                at_log = st.step % cfg.log_every == 0 or st.step == cfg.steps
                at_ckpt = st.step % cfg.ckpt_every == 0 or st.step == cfg.steps
                if (at_log or at_ckpt) and self._first_bad(bad_step) >= 0:
                    self._raise_nonfinite(self._first_bad(bad_step), sums)
                if at_log:
                    row = self._log(sums, counts, images_done, time.perf_counter() - t0)
                    sums, counts = {}, {}
                    if bar is not None:
                        bar.set_postfix({k.replace("/loss", ""): f"{v:.3f}"
                                         for k, v in row.items() if k.endswith("/loss")})
                if st.step % cfg.sample_every == 0 or st.step == cfg.steps:
                    self._sample()
                if cfg.eval_every and st.step % cfg.eval_every == 0:
                    self._evaluate()
                reason = self._should_stop()
                if reason and st.step < cfg.steps:
                    stop_reason = reason
                    break
                if at_ckpt:
                    self.save_checkpoint()
                    last_ckpt = st.step
            if st.step != last_ckpt or stop_reason == "signal":
                self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            self.stop.restore()
        self._check_replicas()
        self.stop_reason = stop_reason
        if stop_reason == "signal":
            if main:
                write_text_atomic(self.run_dir / "preempted", f"{st.step}\n")
            acc.print(f"stopped by a signal at step {st.step} of {cfg.steps}, not done; "
                      f"checkpoint saved. Continue with: python -m trainer.train --run-dir "
                      f"{self.run_dir} --resume auto")
        else:
            if stop_reason:
                acc.print(f"time budget of {cfg.minutes} min reached at step {st.step}; "
                          f"checkpoint saved (--resume auto with a larger minutes= continues)")
            if main:
                (self.run_dir / "preempted").unlink(missing_ok=True)
                if st.step not in st.history:
                    self._sample()  # a time budget ends between sample steps: show the last one
                self._finish()
        if self.tb is not None:
            self.tb.close()
        return st.step

    @torch.no_grad()
    def _check_replicas(self) -> None:
        """Every process must hold the same weights; record per-rank checksums in world.json."""
        acc = self.acc
        if acc.num_processes == 1:
            return
        mods = {**{n: acc.unwrap_model(m) for n, m in self.recipe.models.items()},
                "ema": self.ema}
        local = torch.stack([sum((p.double().sum() for p in m.parameters()),
                                 torch.zeros((), dtype=torch.float64, device=self.device))
                             for m in mods.values()])
        everyone = acc.gather(local[None]).cpu()  # [world, n_models]
        sums = {n: everyone[:, i].tolist() for i, n in enumerate(mods)}
        if acc.is_main_process:
            world = json.loads((self.run_dir / "world.json").read_text())
            world["replica_checksums"] = sums
            write_text_atomic(self.run_dir / "world.json", json.dumps(world, indent=2) + "\n")
        diverged = [n for n, v in sums.items() if len(set(v)) > 1]
        if diverged:
            raise RuntimeError(f"processes hold different weights for {', '.join(diverged)}: "
                               f"{sums}; gradient synchronisation is broken")

    def _should_stop(self) -> str:
        """Agree across processes whether to stop (signal or time budget).

        With several processes every rank enters the collective on the same
        steps (every 5th and the last), whatever its own flags say, so the
        collectives always line up; a signal waits at most 5 steps.
        """
        cfg, st, acc = self.cfg, self.state, self.acc
        flags = [float(self.stop.signum is not None),
                 float(bool(cfg.minutes) and st.elapsed >= cfg.minutes * 60)]
        if acc.num_processes > 1:
            if st.step % 5 and st.step < cfg.steps:
                return ""
            total = acc.reduce(torch.tensor(flags, device=self.device), reduction="sum")
            flags = [float(v) for v in total.tolist()]  # any process stopping stops all
        if flags[0]:
            return "signal"
        return "time budget" if flags[1] else ""

    def _first_bad(self, bad_step: torch.Tensor) -> int:
        """The first step with a non-finite loss on any process, or -1 (one host sync)."""
        if self.acc.num_processes > 1:
            flag = torch.where(bad_step < 0, torch.iinfo(torch.long).max, bad_step).clone()
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            return -1 if int(flag) == torch.iinfo(torch.long).max else int(flag)
        return int(bad_step)

    def _raise_nonfinite(self, step: int, sums: dict[str, torch.Tensor]) -> None:
        bad = [k for k, v in sums.items() if k.endswith("/loss") and not torch.isfinite(v)]
        what = ", ".join(bad) or "a loss"
        ckpt = latest_checkpoint(self.run_dir)
        keep = (f"the last good checkpoint is {ckpt}, with finite weights" if ckpt
                else "no checkpoint was written")
        raise NonFiniteLoss(f"{what} became NaN or inf at step {step}; stopping ({keep}). "
                            f"Lower the learning rate, use mixed_precision=no or bf16, or add "
                            f"loss.gp / model.spectral_norm.")

    def _log(self, sums, counts, images: int, seconds: float) -> dict[str, float]:
        acc = self.acc
        keys = sorted(sums)
        if not keys:
            return {}
        vals = torch.stack([sums[k] / counts[k] for k in keys])
        vals = acc.reduce(vals, reduction="mean") if acc.num_processes > 1 else vals
        row = dict(zip(keys, vals.tolist(), strict=True))
        if acc.is_main_process:
            row.update({"step": self.state.step, "img_per_s": round(images / max(seconds, 1e-9),
                                                                    1),
                        "lr/G": self.recipe.optimizers[self.recipe.ema_of].param_groups[0]["lr"],
                        "time": round(self.state.elapsed, 2)})
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            for k, v in row.items():
                if k != "step" and isinstance(v, float | int) and math.isfinite(v):
                    self.tb.add_scalar(k, v, self.state.step)
        return row

    @torch.no_grad()
    def _sample(self) -> None:
        if not self.acc.is_main_process:
            return
        images, nrow = self.recipe.sample(self.ema, self.fixed)
        save_grid(images, self.run_dir / "samples" / f"{checkpoint_name(self.state.step)}.png",
                  nrow)
        self.state.history.append(self.state.step)

    def _evaluate(self) -> None:
        if not self.acc.is_main_process:
            return
        from trainer.evaluate import evaluate_during_training

        scores = evaluate_during_training(self.ema, self.dataset, self.vocab, self.cfg,
                                          fid=self.cfg.eval_fid)
        row = {"step": self.state.step, **{f"eval/{k}": v for k, v in scores.items()}}
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in scores.items():
            self.tb.add_scalar(f"eval/{k}", v, self.state.step)

    def _finish(self) -> None:
        rd = self.run_dir
        samples = sorted((rd / "samples").glob("step_*.png"))
        progress_strip(samples, rd / "progress.png", image_size=self.cfg.data.size,
                       crop_cols=self.recipe.strip_cols)
        plot_losses(rd / "metrics.jsonl", rd / "losses.png", title=self.cfg.name)
        for name, (images, nrow) in self.recipe.final_grids(self.ema, self.dataset,
                                                            self.cfg.seed).items():
            save_grid(images, rd / f"{name}.png", nrow)


def _make_ema(G: nn.Module) -> nn.Module:
    import copy

    ema = copy.deepcopy(G).eval().float()
    ema.requires_grad_(False)
    return ema


def _all_reduce_grads(model: nn.Module, world: int) -> None:
    """Average the gradients of ``model`` over processes in one flat bucket."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def _gather_hostnames(acc: Accelerator) -> list[str]:
    name = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    if acc.num_processes == 1 or acc.distributed_type == DistributedType.NO:
        return [name]
    out: list[str | None] = [None] * acc.num_processes
    dist.all_gather_object(out, name)
    return [str(h) for h in out]


def shutdown(acc: Accelerator, trainer: Trainer | None) -> None:
    """Tear down in the order that avoids gloo's abort at exit (SIGABRT in about half of 2-process runs without it)."""
    acc.wait_for_everyone()
    if trainer is not None:
        trainer.recipe.models.clear()
        trainer.recipe.optimizers.clear()
        trainer.__dict__.clear()  # EMA, loader, fixed inputs: nothing may outlive the group
    # The accelerator keeps its own references to what it prepared.
    for attr in ("_models", "_optimizers", "_dataloaders", "_schedulers", "_custom_objects"):
        if isinstance(getattr(acc, attr, None), list):
            getattr(acc, attr).clear()
    gc.collect()
    acc.end_training()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
