"""1 against N processes: images/s of the real training loop under ``accelerate launch``.

    python -m benchmarks.scaling                          # cgan_avatars, 1 and 2 CPU processes
    python -m benchmarks.scaling --processes 1 2 4 8 --mixed-precision bf16   # a GPU node
    python -m benchmarks.scaling --tiny --json out.json   # seconds; CI

For each process count N: ``accelerate launch --num_processes N [--multi_gpu] -m
benchmarks.scaling --worker ...`` runs ``python -m trainer.train`` (trainer.train.main)
in every process, timed from inside its loop (benchmarks.common.time_training); rank 0
writes its timing. Without GPUs, ACCELERATE_USE_CPU=1 with --multi_gpu gives N real
processes over gloo (``--cpu --num_processes 2`` silently starts ONE process),
and each process gets cores / N threads. A run whose world size is not N is an error.

  weak    batch per process fixed (the project's batch_size is per process): global N x B
  strong  global batch fixed: B / N per process
Runs are interleaved (every count and mode once, then again); figures are medians.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TINY_OVERRIDES = ["model.g_ch=8", "model.d_ch=8", "model.d_hidden=32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n: int, device: str, worker_args: list[str], precision: str, threads: int,
           timeout: float) -> subprocess.CompletedProcess:
    """``accelerate launch`` N processes of this module's worker."""
    exe = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or \
        shutil.which("accelerate")
    if exe is None:
        raise SystemExit("error: accelerate's launcher is not installed beside this Python")
    env = {**os.environ, "TAGFACE_NO_BAR": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    cmd = [exe, "launch", *(["--multi_gpu"] if n > 1 else []), "--num_processes", str(n),
           "--num_machines", "1", "--mixed_precision", precision, "--dynamo_backend", "no",
           "--main_process_port", str(free_port())]
    if device == "cpu":
        env["ACCELERATE_USE_CPU"] = "1"
        env["OMP_NUM_THREADS"] = str(threads)
        cmd += ["--num_cpu_threads_per_process", str(threads)]
    cmd += ["-m", "benchmarks.scaling", "--worker", *worker_args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def worker(args: argparse.Namespace) -> int:
    """One process of a launched run: train, time, rank 0 writes --worker-out."""
    from benchmarks.common import time_training

    t = time_training(args.preset, args.set, Path(args.run_dir), warmup=args.warmup,
                      steps=args.steps)
    if int(os.environ.get("RANK", "0")) == 0:
        import torch

        out = {**t.as_dict(), "threads": torch.get_num_threads()}
        Path(args.worker_out).write_text(json.dumps(out))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cgan_avatars")
    p.add_argument("--data", help="dataset folder (default: the preset's data.path)")
    p.add_argument("--processes", type=int, nargs="+",
                   help="process counts (default: 1 and the cores, or 1 and the GPUs)")
    p.add_argument("--scaling", nargs="+", choices=("weak", "strong"),
                   default=["weak", "strong"])
    p.add_argument("--batch", type=int, default=64,
                   help="batch per process (weak) or global batch (strong)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda when torch sees a GPU")
    p.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every run, e.g. model.g_ch=32")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process (0: cores / processes)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per launch")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--tiny", action="store_true",
                   help="48 fresh avatars, batch 4, narrow nets, 1+3 steps, weak, 1 repeat, "
                        "1 thread per process: a smoke test")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tiny:
        args.batch, args.warmup, args.steps, args.repeats = 4, 1, 3, 1
        args.scaling = ["weak"]
        args.threads = args.threads or 1  # no OpenMP spinning against a busy machine
        args.set = [*TINY_OVERRIDES, *args.set]
    from benchmarks.common import require_at_least_one

    require_at_least_one(p, args, "batch", "warmup", "steps", "repeats")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import torch

    from benchmarks.common import (
        finish_machine,
        fmt,
        machine_info,
        machine_line,
        md_table,
        median,
        tiny_avatars,
        write_json,
    )
    from trainer.config import ConfigError, load_config
    from trainer.data import load_configured_dataset

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    units = torch.cuda.device_count() if device == "cuda" else (os.cpu_count() or 1)
    counts = args.processes or sorted({1, units})
    if "strong" in args.scaling and any(args.batch % n for n in counts):
        raise SystemExit(f"error: --batch {args.batch} must divide by every process count "
                         f"{counts} for strong scaling")
    tmp = Path(tempfile.mkdtemp(prefix="tagface-scaling-"))
    try:
        base = list(args.set) + [f"mixed_precision={args.mixed_precision}"]
        if args.tiny:
            data = tiny_avatars(tmp / "avatars", 48, 64)
            base += [f"data.path={data}", f"data.cache_dir={tmp / 'cache'}"]
        elif args.data:
            base.append(f"data.path={args.data}")
        try:
            cfg = load_config(args.preset, base)
        except ConfigError as e:
            raise SystemExit(f"error: {e}") from None
        load_configured_dataset(cfg.data)  # the cache, built once, untimed
        machine = machine_info()
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in range(args.repeats):
            for mode in args.scaling:
                for n in counts:
                    per = args.batch if mode == "weak" else args.batch // n
                    threads = args.threads or max(1, (os.cpu_count() or 1) // n)
                    out = tmp / f"{mode}-{n}-{r}.json"
                    wargs = ["--preset", args.preset, "--warmup", str(args.warmup),
                             "--steps", str(args.steps), "--worker-out", str(out),
                             "--run-dir", str(tmp / f"run-{mode}-{n}-{r}"),
                             "--set", *base, f"batch_size={per}"]
                    res = launch(n, device, wargs, args.mixed_precision, threads, args.timeout)
                    if res.returncode != 0 or not out.is_file():
                        raise SystemExit(f"error: {n}-process run failed (exit "
                                         f"{res.returncode}):\n{res.stdout[-2000:]}\n"
                                         f"{res.stderr[-4000:]}")
                    t = json.loads(out.read_text())
                    if t["world_size"] != n:
                        raise SystemExit(f"error: asked for {n} processes, the run had world "
                                         f"size {t['world_size']} ({t['distributed_type']})")
                    t["threads_per_process"] = threads if device == "cpu" else t["threads"]
                    runs.setdefault((mode, n), []).append(t)
                    shutil.rmtree(tmp / f"run-{mode}-{n}-{r}", ignore_errors=True)
                    print(f"  [{r + 1}/{args.repeats}] {mode:<6} {n} process(es): "
                          f"{t['img_per_s']:8.1f} img/s", flush=True)
        finish_machine(machine)
        rows = []
        for mode in args.scaling:
            one = median([t["img_per_s"] for t in runs[(mode, counts[0])]])
            for n in counts:
                ts = runs[(mode, n)]
                ips = median([t["img_per_s"] for t in ts])
                speedup = ips / one * counts[0]
                rows.append({"scaling": mode, "processes": n, "batch_per_process": ts[0]
                             ["batch_size"], "global_batch": ts[0]["batch_size"] * n,
                             "threads_per_process": ts[0]["threads_per_process"],
                             "img_per_s": ips, "img_per_s_runs": [t["img_per_s"] for t in ts],
                             "step_ms_median": median([s for t in ts for s in t["step_ms"]]),
                             "speedup": speedup, "efficiency": speedup / n,
                             "world_size": ts[0]["world_size"],
                             "distributed_type": ts[0]["distributed_type"],
                             "mixed_precision": ts[0]["mixed_precision"]})
        report = {"benchmark": "scaling", "machine": machine, "device": device,
                  "settings": {"preset": args.preset, "processes": counts,
                               "scaling": args.scaling, "batch": args.batch,
                               "warmup": args.warmup, "steps": args.steps,
                               "repeats": args.repeats, "mixed_precision": args.mixed_precision,
                               "overrides": args.set, "tiny": args.tiny},
                  "results": rows}
        print()
        print(machine_line(machine))
        print(f"Preset {args.preset} on {device}, mixed precision {args.mixed_precision}; median "
              f"of {args.repeats} interleaved launches of {args.steps} timed steps after "
              f"{args.warmup} warm-up.\n")
        print(md_table(
            ["scaling", "processes", "batch/process", "global batch", "threads/process",
             "img/s", "range", "speedup", "efficiency", "backend"],
            [[x["scaling"], x["processes"], x["batch_per_process"], x["global_batch"],
              x["threads_per_process"], fmt(x["img_per_s"]),
              f"{min(x['img_per_s_runs']):.0f}-{max(x['img_per_s_runs']):.0f}",
              fmt(x["speedup"], 2) + "x", f"{fmt(100 * x['efficiency'], 0)}%",
              x["distributed_type"].replace("DistributedType.", "")] for x in rows]))
        if args.json:
            write_json(args.json, report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(math.isfinite(x["img_per_s"]) for x in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
