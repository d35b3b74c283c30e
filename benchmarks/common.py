"""What the benchmarks share: the machine, the matmul peak, timing the real training loop,
statistics, Markdown tables and JSON output.

``time_training`` runs ``trainer.train.main`` itself (the command a user types) and reads
the clock at the top of every loop iteration, so a measured step is everything the loop
does per iteration: data loading, every phase, EMA, bookkeeping. Start-up (imports, the
dataset cache, model building, the first steps) and the end (checkpoint) are excluded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
         "amx_tile", "amx_bf16", "amx_int8")  # CPU flags that decide which kernels run
BIG = 10**9  # a step count or interval that is never reached


# -- the machine ---------------------------------------------------------------------
def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(),
                                                          platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return model, flags


def machine_info() -> dict[str, Any]:
    """CPU model, cores, the flags that matter, library versions, GPUs, load average."""
    model, flags = _cpuinfo()
    info: dict[str, Any] = {
        "cpu": model,
        "cores": os.cpu_count(),
        "cpu_flags": [f for f in FLAGS if f in flags],
        "native_bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "load_average": round(os.getloadavg()[0], 2),
    }
    if info["gpus"]:
        info["gpu"] = gpu_info()
    with contextlib.suppress(ImportError):
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    with contextlib.suppress(ImportError):
        import accelerate

        info["accelerate"] = accelerate.__version__
    return info


def gpu_info(index: int = 0) -> dict[str, Any]:
    """CUDA device ``index``: name, memory, compute capability, bf16, CUDA/cuDNN versions,
    and whether fp32 matmuls and convolutions may use TF32 (they decide what "fp32" means)."""
    p = torch.cuda.get_device_properties(index)
    return {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
            "capability": f"{p.major}.{p.minor}", "multiprocessors": p.multi_processor_count,
            "bf16": torch.cuda.is_bf16_supported(), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_conv": torch.backends.cudnn.allow_tf32}


def machine_line(m: dict[str, Any]) -> str:
    """One Markdown line describing ``machine_info()``."""
    flags = ", ".join(m["cpu_flags"]) or "none of " + ", ".join(FLAGS[:4])
    gpus = f"; GPUs: {', '.join(m['gpus'])}" if m["gpus"] else "; no GPU"
    if "gpu" in m:
        g = m["gpu"]
        gpus += (f" ({g['memory_gib']} GiB, compute {g['capability']}, CUDA {g['cuda']}, "
                 f"cuDNN {g['cudnn']}, TF32 matmul {'on' if g['tf32_matmul'] else 'off'}, "
                 f"TF32 conv {'on' if g['tf32_conv'] else 'off'})")
    libs = ", ".join(f"{k} {m[k]}" for k in ("torch", "onnxruntime", "accelerate") if k in m)
    load = f"load average {m['load_average']} at start"
    if "load_average_end" in m:
        load += f", {m['load_average_end']} at the end"
    line = (f"Machine: {m['cpu']}, {m['cores']} cores (flags: {flags}; native bf16: "
            f"{'yes' if m['native_bf16'] else 'no'}){gpus}; Python {m['python']}, {libs}; "
            f"{m['torch_threads']} torch threads; {load}.")
    if max(m["load_average"], m.get("load_average_end", 0)) > 0.5 * (m["cores"] or 1):
        line += ("\n\n**Warning: other processes were using the CPU; these numbers are low "
                 "and noisy. Rerun on an idle machine.**")
    return line


def finish_machine(m: dict[str, Any]) -> dict[str, Any]:
    """Add the load average at the end of a benchmark to ``machine_info()``'s dict."""
    m["load_average_end"] = round(os.getloadavg()[0], 2)
    return m


def matmul_peak_gflops(dtype: torch.dtype, max_n: int = 2048, repeats: int = 3,
                       min_seconds: float = 0.05, device: str | torch.device = "cpu"
                       ) -> tuple[float, int]:
    """Best GFLOP/s of a square torch.mm in ``dtype`` on ``device`` (2 n^3 FLOPs), and n.

    n doubles from 256 until one product takes ``min_seconds`` or reaches ``max_n``, so
    that a slow dtype (bf16 without native support) does not take minutes. On CUDA each
    timing is of ``inner`` back-to-back products between two synchronisations, so that
    the launch and the synchronisation are not what is measured.
    """
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    inner = 10 if device.type == "cuda" else 1

    def timed(a: torch.Tensor, b: torch.Tensor) -> float:
        sync()
        t = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b)
        sync()
        return (time.perf_counter() - t) / inner

    n = min(256, max_n)
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        timed(a, b)  # warm-up: kernel selection, page faults
        best = timed(a, b)
        if best >= min_seconds or n >= max_n:
            break
        n *= 2
    for _ in range(repeats - 1):
        best = min(best, timed(a, b))
    return 2 * n**3 / best / 1e9, n


# -- statistics, tables, output ---------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between order statistics."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt(x: float | None, digits: int = 1) -> str:
    """A number for a table cell; '-' when missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.{digits}f}"


def _numeric(cell: Any) -> bool:
    if isinstance(cell, (int, float)):
        return True
    text = str(cell).replace(",", "").rstrip("x%").strip()
    try:
        float(text)
    except ValueError:
        return text == "-"
    return True


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; columns of numbers are right-aligned."""
    align = ["---:" if rows and all(_numeric(r[i]) for r in rows) else "---"
             for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def tiny_avatars(folder: Path, count: int = 64, size: int = 64) -> Path:
    """A small fresh avatar dataset (``count`` images, seed 0) for --tiny runs."""
    from trainer.data.avatars import generate_avatars

    if not (folder / "tags.csv").is_file():
        generate_avatars(folder, count, size, seed=0, workers=2, progress=False)
    return folder


# -- timing the project's training loop ------------------------------------------------
@dataclass
class TrainTiming:
    """Steady-state speed of one training run (per process; images counted for all)."""

    img_per_s: float  # images of every process per second
    steps: int  # timed iterations
    seconds: float
    step_ms: list[float]  # each timed iteration
    batch_size: int  # per process
    world_size: int
    distributed_type: str
    mixed_precision: str
    flops_per_step: float = math.nan  # per process, counted by torch.utils.flop_counter

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepClock:
    """Reads the clock at the top of each loop iteration and says when timing is complete.

    Iterations ``0 .. warmup-1`` are warm-up; the last of them is FLOP-counted if asked.
    Timing ends after ``steps`` timed iterations or, in a single process, once
    ``max_seconds`` have been timed (and at least ``min_steps``). Several processes
    must stop at the same iteration (the loop's stop check is a collective), so they
    count iterations only.

    On a CUDA device the clock waits for the device (``torch.cuda.synchronize``) at the
    first timed iteration and at the last, so the timed span is the device's work, not
    the host's kernel launches running ahead of it; iterations in between are not
    synchronised, so host and device still overlap as in training (per-iteration times
    are then host-side, their sum is right).
    """

    def __init__(self, warmup: int, steps: int, max_seconds: float = math.inf,
                 min_steps: int = 2, count_flops: bool = False):
        if warmup < 1 or steps < 1:
            raise ValueError("warmup and steps must be >= 1")
        self.warmup, self.steps, self.max_seconds = warmup, steps, max_seconds
        self.min_steps, self.count_flops = min(min_steps, steps), count_flops
        self.stamps: list[float] = []
        self.flops = math.nan
        self.done = False
        self._counter: Any = None
        self.info: dict[str, Any] = {}
        self.sync: Any = None  # called before the first and the last timed reading

    def start(self, batch_size: int, world_size: int = 1, distributed_type: str = "NO",
              mixed_precision: str = "no", device: str | torch.device = "cpu") -> None:
        """What one iteration is: images per process, processes, precision, device."""
        self.info = {"batch_size": batch_size, "world_size": world_size,
                     "distributed_type": distributed_type, "mixed_precision": mixed_precision,
                     "device": str(device)}
        if torch.device(device).type == "cuda":
            self.sync = torch.cuda.synchronize

    def tick(self) -> bool:
        """Call at the top of every iteration; True once the timed iterations are done."""
        if self.done:
            return True
        i = len(self.stamps)  # the iteration about to run
        if self.sync is not None and i == self.warmup:
            self.sync()
        now = time.perf_counter()
        self.stamps.append(now)
        if self.count_flops and i == self.warmup - 1:
            from torch.utils.flop_counter import FlopCounterMode

            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        elif self._counter is not None and i == self.warmup:
            self._counter.__exit__(None, None, None)
            self.flops = float(self._counter.get_total_flops())
            self._counter = None
            self.stamps[-1] = time.perf_counter()  # the counter's exit is not part of a step
        timed = i - self.warmup
        single = self.info.get("world_size", 1) == 1
        self.done = timed >= self.steps or (single and timed >= self.min_steps and
                                            now - self.stamps[self.warmup] > self.max_seconds)
        if self.done and self.sync is not None:
            self.sync()
            self.stamps[-1] = time.perf_counter()
        return self.done

    def result(self) -> TrainTiming:
        if len(self.stamps) <= self.warmup + 1:
            raise RuntimeError(f"the run ended after {len(self.stamps)} iterations, before "
                               f"any timed step (warm-up {self.warmup})")
        t = self.stamps[self.warmup:]
        steps, seconds = len(t) - 1, t[-1] - t[0]
        i = self.info
        return TrainTiming(
            img_per_s=steps * i["batch_size"] * i["world_size"] / seconds, steps=steps,
            seconds=seconds, step_ms=[(b - a) * 1e3 for a, b in zip(t, t[1:], strict=False)],
            batch_size=i["batch_size"], world_size=i["world_size"],
            distributed_type=i["distributed_type"], mixed_precision=i["mixed_precision"],
            flops_per_step=self.flops)


def require_at_least_one(p: argparse.ArgumentParser, args: argparse.Namespace,
                         *names: str) -> None:
    """``p.error`` naming the options unless each (a number or a list of numbers) is >= 1."""
    values = [getattr(args, n) for n in names]
    if min(min(v) if isinstance(v, list) else v for v in values) < 1:
        opts = [f"--{n.replace('_', '-')}" for n in names]
        p.error(f"{', '.join(opts[:-1])} and {opts[-1]} must be >= 1")


@contextlib.contextmanager
def env_vars(**values: str | None) -> Iterator[None]:
    """Set (or, for None, unset) environment variables; restore them afterwards."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def reset_accelerate() -> None:
    """Forget Accelerate's process-wide state, so the next Accelerator may differ
    (precision, dynamo backend). Single-process use only."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def time_training(preset: str, overrides: Sequence[str], run_dir: Path, *, warmup: int,
                  steps: int, max_seconds: float = math.inf, count_flops: bool = False,
                  compile_backend: str | None = None, quiet: bool = True) -> TrainTiming:
    """Run ``python -m trainer.train --config PRESET --run-dir RUN_DIR OVERRIDES`` in this
    process and time its steady-state iterations (see StepClock).

    ``compile_backend`` (e.g. "inductor") is Accelerate's dynamo backend: ``prepare``
    then wraps G and D in torch.compile, as ``accelerate launch --dynamo_backend`` does.
    Under ``accelerate launch`` with several processes, call it once per process.
    """
    from trainer import train
    from trainer.loop import Callback

    clock = StepClock(warmup, steps, max_seconds, count_flops=count_flops)
    argv = ["--config", preset, "--run-dir", str(run_dir), *overrides,
            f"steps={BIG}", f"log_every={BIG}", f"sample_every={BIG}", f"ckpt_every={BIG}",
            "eval_every=0", "minutes=0"]

    class Timing(Callback):
        """Reads the clock at the top of every iteration; stops the run once timed."""

        def on_step_start(self, trainer: Any) -> None:
            if not clock.stamps:
                acc = trainer.acc
                clock.start(trainer.cfg.batch_size, acc.num_processes,
                            str(acc.distributed_type), str(acc.mixed_precision), acc.device)
            if not clock.done and clock.tick():
                trainer.request_stop()  # as a preemption: checkpoint, leave after this step

    out = io.StringIO()
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    backend = compile_backend.upper() if compile_backend else None
    with env_vars(TAGFACE_NO_BAR="1", ACCELERATE_DYNAMO_BACKEND=backend if single else
              os.environ.get("ACCELERATE_DYNAMO_BACKEND")):
        if single:
            reset_accelerate()
        with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
            rc = train.main(argv, callbacks=[Timing()])
    if rc != 0:
        raise RuntimeError(f"python -m trainer.train {' '.join(argv)} failed (exit {rc}):\n"
                           f"{out.getvalue()[-3000:]}")
    return clock.result()
