"""Train a GAN: parse -> build & validate -> run.

    accelerate launch -m trainer.train --config cgan_avatars [--run-dir DIR] [--resume auto] [key=value ...]
    python -m trainer.train --config cgan_avatars steps=2000 mixed_precision=bf16

``--dry-run`` prints the resolved config and exits. The resolved config, the
vocabulary, checkpoints, samples and metrics go into the run folder
(default runs/<preset name>).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from trainer.config import (
    ConfigError,
    TrainConfig,
    inert_options,
    list_presets,
    load_config,
    to_yaml,
)
from trainer.data.vocab import VocabError
from trainer.runs import NONFINITE_FILE, RunError, write_text_atomic

if TYPE_CHECKING:
    from trainer.loop import Callback

# Keys that may differ between a run's saved config and a resumed invocation.
RESUMABLE_CHANGES = {"steps", "minutes", "log_every", "sample_every", "ckpt_every", "keep_ckpts",
                     "eval_every", "workers", "data.cache_dir", "mixed_precision"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainer.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help=f"preset name or YAML file; presets: {', '.join(list_presets())}")
    p.add_argument("--run-dir", help="run folder (default runs/<preset name>)")
    p.add_argument("--resume", choices=["auto", "never"], default="never",
                   help="auto: continue from the run folder's newest checkpoint if there is one")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. steps=500 loss.adv=hinge data.size=32")
    return p.parse_intermixed_args(argv)


def _flat(cfg: TrainConfig) -> dict:
    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from walk(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v
    return dict(walk(OmegaConf.to_container(OmegaConf.structured(cfg))))


def resolve(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    """The config and run folder of this invocation, checked against an existing run."""
    run_dir = Path(args.run_dir) if args.run_dir else None
    saved = run_dir / "config.yaml" if run_dir else None
    if args.config is None:
        if saved is not None and saved.is_file() and args.resume == "auto":
            cfg = load_config(str(saved), args.overrides)
        else:
            raise ConfigError("--config is required (a preset or a YAML file) unless resuming "
                              f"an existing --run-dir with --resume auto; presets: "
                              f"{', '.join(list_presets())}")
    else:
        cfg = load_config(args.config, args.overrides)
    run_dir = run_dir or Path("runs") / cfg.name
    if args.dry_run:
        return cfg, run_dir
    from trainer.checkpoints import candidates  # after --dry-run: imports torch

    ckpts = candidates(run_dir)
    ckpt = ckpts[0] if ckpts else None
    if ckpt is not None and args.resume != "auto":
        raise RunError(f"{run_dir} already holds a run (newest checkpoint {ckpt.name}); pass "
                       f"--resume auto to continue it or choose another --run-dir")
    if ckpt is not None:
        if not saved_config(run_dir).is_file():
            raise RunError(f"{saved_config(run_dir)}: missing, so the checkpoints in "
                           f"{run_dir / 'checkpoints'} cannot be checked against "
                           f"--config {args.config or '(none)'}; restore the file or start "
                           f"a new --run-dir")
        old = _flat(load_config(str(saved_config(run_dir))))
        new = _flat(cfg)
        changed = [k for k in new if old.get(k) != new[k] and k not in RESUMABLE_CHANGES]
        if changed:
            raise RunError(f"cannot resume {run_dir} with a different config: "
                           + ", ".join(f"{k} {old.get(k)!r} -> {new[k]!r}" for k in changed)
                           + f". Only {', '.join(sorted(RESUMABLE_CHANGES))} may change.")
    return cfg, run_dir


def saved_config(run_dir: Path) -> Path:
    return run_dir / "config.yaml"


def lock_run(acc, run_dir: Path):
    """The run folder's lock, taken by the main process; every process learns the outcome.

    Returns the lock (None on other processes); RunLocked names the holder.
    """
    from trainer.runlock import RunLock, RunLocked

    lock, error = None, ""
    if acc.is_main_process:
        try:
            lock = RunLock(run_dir).acquire()
            if lock.note:
                acc.print(f"note: {lock.note}")
        except RunLocked as e:
            error = str(e)
    from trainer.collectives import Collectives

    error = Collectives(acc).broadcast_object(error)  # every process learns the outcome
    if error:
        raise RunLocked(error)
    return lock


def build_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator

    acc = Accelerator(mixed_precision=cfg.mixed_precision)  # resolved by main(): never auto
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and acc.num_processes == 1:
        raise RuntimeError(
            f"{world} processes were started but each believes it is alone (no GPU backend). "
            f"On CPU set ACCELERATE_USE_CPU=1 and launch with --multi_gpu (see README).")
    return acc


def load_data(cfg: TrainConfig, acc) -> tuple[object, object]:
    """The dataset (decoded once per machine) and the labels the run's family trains on."""
    from trainer.data import load_configured_dataset
    from trainer.families import family_of

    with acc.local_main_process_first():
        dataset = load_configured_dataset(cfg.data)
    if len(dataset) < cfg.batch_size:
        raise ConfigError(f"batch_size={cfg.batch_size}: {cfg.data.path} has only "
                          f"{len(dataset)} usable images, fewer than one batch; use "
                          f"batch_size={len(dataset)} or less, or more images")
    return dataset, family_of(cfg).labels(cfg, dataset)  # labels: None if unconditional


def main(argv: list[str] | None = None, callbacks: Sequence[Callback] = ()) -> int:
    """``python -m trainer.train``; returns the exit code (0 done or preempted, 2 bad input,
    3 stopped on NaN/inf). ``callbacks``: trainer.loop.Callback hooks into the loop."""
    args = parse_args(argv)
    try:
        cfg, run_dir = resolve(args)
    except (ConfigError, RunError, VocabError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from trainer.precision import resolve_precision

    # auto becomes a precision here, so config.yaml records what the run really used.
    cfg.mixed_precision, why = resolve_precision(cfg.mixed_precision)
    warnings = [f"warning: {w}" for w in inert_options(cfg)]
    if args.dry_run:
        for w in warnings:
            print(w, file=sys.stderr)
        print(f"# run folder: {run_dir}\n# mixed precision: {cfg.mixed_precision} ({why})\n"
              f"{to_yaml(cfg)}", end="")
        return 0

    from trainer.data import DataError
    from trainer.loop import NonFiniteLoss, Trainer, shutdown
    from trainer.recipes import build_recipe

    acc = build_accelerator(cfg)
    trainer = None
    lock = None
    t0 = time.perf_counter()
    try:
        for w in warnings:  # the main process only, once
            acc.print(w, file=sys.stderr)
        lock = lock_run(acc, run_dir)
        dataset, vocab = load_data(cfg, acc)
        acc.print(f"{len(dataset)} images from {cfg.data.path} ({dataset.format}, "
                  f"{cfg.data.size}px); {acc.num_processes} process(es), {acc.device}, "
                  f"mixed precision {acc.mixed_precision} ({why}); run folder {run_dir}")
        trainer = Trainer(cfg, lambda: build_recipe(cfg, vocab, cfg.data.size), run_dir,
                          args.resume == "auto", acc, dataset, vocab, callbacks)
        start = trainer.state.step
        step = trainer.run()
    except (ConfigError, RunError, VocabError, DataError, NonFiniteLoss) as e:
        acc.print(f"error: {e}", file=sys.stderr)
        if isinstance(e, NonFiniteLoss) and acc.is_main_process:
            write_text_atomic(run_dir / NONFINITE_FILE, f"{e}\n")  # export/evaluate see it
        shutdown(acc, trainer)
        return 2 if not isinstance(e, NonFiniteLoss) else 3
    finally:
        if lock is not None:
            lock.release()
    wall = time.perf_counter() - t0
    if trainer.stop_reason == "signal":  # the loop said how to continue
        shutdown(acc, trainer)
        return 0
    if acc.is_main_process:
        (run_dir / NONFINITE_FILE).unlink(missing_ok=True)  # finished: no longer a failed run
    acc.print(f"done: steps {start} -> {step} in {wall:.0f} s; run folder {run_dir}\n"
              f"next: python -m export --run {run_dir} --out models/   |   "
              f"python -m trainer.evaluate --run {run_dir}")
    shutdown(acc, trainer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
