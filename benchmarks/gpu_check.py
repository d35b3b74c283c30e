"""The GPU path, exercised: train, interrupt and resume, benchmark and export on a CUDA device.

    python -m benchmarks.gpu_check --prepare data/gpu_check     # beforehand, on a full install
    bash benchmarks/gpu_check.sh                                 # on the GPU machine
    python -m benchmarks.gpu_check --data data/gpu_check/avatars --out runs/gpu_check

On a machine with a CUDA device, in this order:
  train       cgan_avatars and stargan_avatars, --steps each, in bf16, then cgan_avatars in
              fp16 (Accelerate's GradScaler on CUDA); img/s (median of the logged intervals
              after the first), peak GPU memory, the device the run says it used, and that
              every logged loss and every weight of the last checkpoint is finite; fp16 also
              that the checkpoint holds the loss scaler's state, and its scale.
  resume      `python -m trainer.train` in a subprocess, stopped with SIGUSR1 once it has
              logged --resume-at steps, then `--resume auto` for --resume-steps more. Checked:
              it stopped with a checkpoint at the step it reports, the resumed process starts
              at that step with the data position saved there, and ends at that step plus
              --resume-steps with finite losses and weights. Not checked: bitwise equality with
              an uninterrupted run, which a GPU does not give (cuDNN chooses algorithms per
              process; some backward kernels accumulate with atomics in any order). On a CPU
              the test suite checks exact resume (tests/test_train.py).
  throughput  benchmarks.train_throughput on the GPU for cgan_avatars: the project's step
              against the pytorch/examples-style reference loop at batch 64 and
              --large-batch, fp32 and bf16, with channels_last toggled, the reference also
              on the project's uint8 cache instead of PIL decoding, then with
              torch.compile; each row's share of the measured bf16 (or fp32) matmul peak.
  export      both bf16 generators (trained on the GPU) exported to ONNX on the CPU with
              ONNX Runtime parity on the CPU provider; on the CUDA provider as well when the
              installed onnxruntime has a usable one; and the generator run by torch on the GPU
              against ONNX Runtime on the CPU (reported, TF32 convolutions allowed).
It writes OUT/gpu_check.json and OUT/gpu_check.md (machine line, versions, every figure,
seconds per stage) and keeps the run folders and .onnx files under OUT/work/. Exit 0 when
every check passed, 1 when one failed, 2 for a bad option or a missing package.

Time: designed to take under 5 minutes on one recent GPU with a 16-core host (about
1 minute of training and resume, 1-2 of throughput without compile, the rest for compile
and export); --budget-s (default 270 s) caps the throughput stage: what it has no time
for is skipped and reported as skipped. Not yet measured on a GPU.

What the GPU machine needs: torch with CUDA, accelerate, safetensors, tensorboard, numpy,
pillow, tqdm, matplotlib, filelock, onnx, onnxruntime (the CPU build is enough; a GPU build
adds the CUDA-provider parity), and from PyPI as wheels carried from elsewhere:
omegaconf 2.4 (the config; it vendors antlr4 and needs only PyYAML, which accelerate
brings; with omegaconf 2.3 carry antlr4-python3-runtime 4.9.3 too), onnxscript + onnx-ir
(the dynamo ONNX exporter; onnx brings their ml_dtypes). It does not need dicebear-core, dicebear-styles, resvg-py, cairosvg or gradio:
--prepare renders the avatars (PNG + tags.csv) on a machine with the full install, and the
uint8 cache is built from those PNGs with Pillow on the GPU machine (seconds):

    python -m benchmarks.gpu_check --prepare data/gpu_check          # 6000 avatars, ~30 s
    pip download --no-deps -d data/gpu_check/wheels omegaconf==2.4.0 onnxscript==0.7.2 \\
        onnx-ir==1.1.0
    # carry data/gpu_check (about 30 MB; data/ is git-ignored) with the working tree, then:
    bash benchmarks/gpu_check.sh      # installs those wheels (--no-deps), runs this module

Without a CUDA device the same command says so in one line, then runs a CPU dry run of
its own plumbing at tiny sizes (a few steps, narrow nets, 32 px) and exits 0 when that
passes; the test suite runs it (tests/test_gpu_check.py). --cpu-dry-run forces it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    env_vars,
    finish_machine,
    fmt,
    machine_info,
    machine_line,
    md_table,
    median,
    reset_accelerate,
    write_json,
)

ROOT = Path(__file__).resolve().parents[1]
# Modules each stage imports, and the PyPI distribution that provides each.
NEEDED = {"omegaconf": "omegaconf", "yaml": "PyYAML", "accelerate": "accelerate", "safetensors": "safetensors",
          "tensorboard": "tensorboard", "PIL": "pillow", "tqdm": "tqdm",
          "matplotlib": "matplotlib", "filelock": "filelock"}
NEEDED_EXPORT = {"onnx": "onnx", "onnxscript": "onnxscript", "onnx_ir": "onnx-ir",
                 "onnxruntime": "onnxruntime"}
PREPARE_COUNT = 6000  # avatars rendered by --prepare: enough for several batches of 512


@dataclass(frozen=True)
class Sizes:
    """How much the check does: the GPU sizes, or the CPU dry run's tiny ones."""

    steps: int  # training steps per precision run
    log_every: int
    resume_at: int  # SIGUSR1 once this step is logged
    resume_steps: int  # steps after the resume
    overrides: tuple[str, ...]  # for every training run
    throughput: tuple[tuple[int, str], ...]  # (batch, levers) per benchmark call, in order
    throughput_args: tuple[str, ...]
    throughput_set: tuple[str, ...] = ()  # config overrides of every throughput run


def gpu_sizes(args: argparse.Namespace) -> Sizes:
    basic = "bf16,channels_last+bf16,cache+bf16"  # cache: the reference without PIL decoding
    calls = [(64, basic), (args.large_batch, basic)]
    if not args.no_compile:
        calls += [(args.large_batch, "compile+bf16"), (64, "compile+bf16")]
    return Sizes(args.steps, 25, args.resume_at, args.resume_steps, (), tuple(calls),
                 ("--warmup", "5", "--steps", "30", "--repeats", "1", "--max-seconds", "20"))


DRY = Sizes(6, 1, 2, 3, ("data.size=32", "batch_size=8", "model.g_ch=8", "model.d_ch=8",
                         "model.d_hidden=32", "model.tag_embed=8", "model.d_tag_embed=8",
                         "model.repeat_num=1", "model.d_repeat_num=3", "n_samples=8"),
            ((4, "bf16"),), ("--tiny",), ("data.size=32",))


# -- set-up ----------------------------------------------------------------------------
def missing(modules: dict[str, str]) -> list[str]:
    """The PyPI names of ``modules`` that cannot be imported here."""
    def absent(mod: str) -> bool:
        try:
            return importlib.util.find_spec(mod) is None
        except (ImportError, ValueError):
            return True

    return [dist for mod, dist in modules.items() if absent(mod)]


def prepare(folder: Path, count: int) -> int:
    """Render the avatars the GPU machine cannot render (no dicebear / resvg there)."""
    from trainer.data.avatars import generate_avatars

    seconds = generate_avatars(folder / "avatars", count, 64, seed=0, progress=False)
    size = sum(f.stat().st_size for f in (folder / "avatars").rglob("*") if f.is_file())
    print(f"rendered {count} avatars at 64 px in {seconds:.0f} s -> {folder / 'avatars'} "
          f"({size / 2**20:.0f} MB)\nnext: pip download --no-deps -d {folder / 'wheels'} "
          f"omegaconf==2.4.0 onnxscript==0.7.2 onnx-ir==1.1.0\n"
          f"then carry {folder} to the GPU machine and run: GPU_CHECK_DIR={folder} "
          f"bash benchmarks/gpu_check.sh")
    return 0


# -- reading a run folder ----------------------------------------------------------------
def metrics_rows(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_rows_finite(rows: list[dict[str, Any]]) -> bool:
    losses = [v for r in rows for k, v in r.items() if k.endswith("/loss")]
    return bool(losses) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in losses)


def checkpoint_facts(run_dir: Path) -> dict[str, Any]:
    """Step, data position, finiteness of every saved tensor, and the loss scaler's state."""
    from safetensors.torch import load_file

    from trainer.runs import latest_checkpoint, read_meta

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return {"checkpoint": None, "weights_finite": False}
    meta = read_meta(ckpt)
    tensors = 0
    finite = True
    for f in sorted(ckpt.glob("*.safetensors")):
        for t in load_file(str(f)).values():
            tensors += 1
            finite &= bool(torch.isfinite(t.float()).all()) if t.is_floating_point() else True
    facts: dict[str, Any] = {"checkpoint": ckpt.name, "step": meta["step"],
                             "consumed": meta["consumed"], "tensors": tensors,
                             "weights_finite": finite and tensors > 0,
                             "loss_scaler": (ckpt / "scaler.pt").is_file()}
    if facts["loss_scaler"]:
        state = torch.load(ckpt / "scaler.pt", weights_only=True)
        facts["loss_scale"] = float(state.get("scale", math.nan))
    return facts


def world(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "world.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# -- stages --------------------------------------------------------------------------------
def train_overrides(data: Path, cache: Path, sizes: Sizes, steps: int, precision: str
                    ) -> list[str]:
    return [f"data.path={data}", f"data.cache_dir={cache}", f"steps={steps}",
            f"mixed_precision={precision}", f"log_every={sizes.log_every}",
            f"sample_every={steps}", f"ckpt_every={steps}", "eval_every=0", "minutes=0",
            "workers=0", *sizes.overrides]


def stage_train(name: str, preset: str, precision: str, data: Path, work: Path,
                sizes: Sizes, cuda: bool) -> dict[str, Any]:
    """One training run in this process; its speed, memory and finiteness."""
    from trainer import train

    run_dir = work / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    argv = ["--config", preset, "--run-dir", str(run_dir),
            *train_overrides(data, work / "cache", sizes, sizes.steps, precision)]
    reset_accelerate()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = io.StringIO()
    with env_vars(TAGFACE_NO_BAR="1"), contextlib.redirect_stdout(out):
        rc = train.main(argv)
    wall = time.perf_counter() - t0
    rows = [r for r in metrics_rows(run_dir) if "img_per_s" in r]
    w = world(run_dir)
    res: dict[str, Any] = {
        "preset": preset, "precision": precision, "run_dir": str(run_dir), "exit": rc,
        "wall_s": wall, "device": w.get("device"), "mixed_precision": w.get("mixed_precision"),
        "img_per_s": median([r["img_per_s"] for r in rows[1:]] or
                            [r["img_per_s"] for r in rows]),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "losses_finite": loss_rows_finite(rows), **checkpoint_facts(run_dir)}
    problems = []
    if rc != 0:
        problems.append(f"exit {rc}: {out.getvalue()[-500:]}")
    if cuda and not str(res["device"]).startswith("cuda"):
        problems.append(f"trained on {res['device']}, not the GPU")
    if res["mixed_precision"] != precision:
        problems.append(f"mixed precision {res['mixed_precision']}, asked {precision}")
    if res.get("step") != sizes.steps:
        problems.append(f"last checkpoint at step {res.get('step')}, expected {sizes.steps}")
    if not res["losses_finite"]:
        problems.append("a logged loss is NaN or inf (or none was logged)")
    if not res["weights_finite"]:
        problems.append("a weight in the last checkpoint is NaN or inf")
    if cuda and precision == "fp16" and not res["loss_scaler"]:
        problems.append("fp16 on CUDA but the checkpoint holds no loss scaler state")
    res["ok"], res["problems"] = not problems, problems
    return res


def _train_cmd(run_dir: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "trainer.train", "--config", "cgan_avatars", "--run-dir",
            str(run_dir), *args]


def stage_resume(data: Path, work: Path, sizes: Sizes, precision: str,
                 timeout: float = 240.0) -> dict[str, Any]:
    """SIGUSR1 to a real training process, then ``--resume auto`` in a new one."""
    run_dir = work / "runs" / "cgan_resume"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    env = {**os.environ, "TAGFACE_NO_BAR": "1"}
    logs = work / "resume-logs"
    logs.mkdir(exist_ok=True)
    # Far more steps than it will run: the signal, not the step count, ends the first start.
    first = train_overrides(data, work / "cache", sizes, 10**6, precision)
    res: dict[str, Any] = {"preset": "cgan_avatars", "precision": precision, "problems": []}
    problems: list[str] = res["problems"]
    with open(logs / "first.log", "w") as log:
        proc = subprocess.Popen(_train_cmd(run_dir, first), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        t0 = time.perf_counter()
        logged = 0
        while proc.poll() is None and time.perf_counter() - t0 < timeout:
            rows = metrics_rows(run_dir)
            logged = max((r.get("step", 0) for r in rows), default=0)
            if logged >= sizes.resume_at:
                break
            time.sleep(0.05)
        if proc.poll() is None and logged >= sizes.resume_at:
            sent = time.perf_counter()
            proc.send_signal(signal.SIGUSR1)
            res["signal_at_logged_step"] = logged
        else:
            proc.kill()
            sent = time.perf_counter()
            problems.append(f"no step {sizes.resume_at} logged within {timeout:.0f} s "
                            f"(exit {proc.poll()}); see {logs / 'first.log'}")
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            problems.append("the signalled process did not exit")
    res["first_exit"] = rc
    res["signal_to_exit_s"] = time.perf_counter() - sent
    stopped = run_dir / "preempted"
    s1 = int(stopped.read_text()) if stopped.is_file() else None
    res["stopped_at"] = s1
    before = checkpoint_facts(run_dir)
    res["checkpoint_at_stop"] = before.get("step")
    if problems:
        res["ok"] = False
        return res
    if rc != 0 or s1 is None:
        problems.append(f"the signalled run exited {rc} without a preempted marker")
    elif before.get("step") != s1:
        problems.append(f"stopped at step {s1} but the newest checkpoint is step "
                        f"{before.get('step')}")
    if problems:
        res["ok"] = False
        return res
    target = s1 + sizes.resume_steps
    second = [*train_overrides(data, work / "cache", sizes, target, precision)]
    t1 = time.perf_counter()
    done = subprocess.run([*_train_cmd(run_dir, second), "--resume", "auto"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    (logs / "resumed.log").write_text(done.stdout + done.stderr)
    res["resume_exit"], res["resume_wall_s"] = done.returncode, time.perf_counter() - t1
    after = checkpoint_facts(run_dir)
    rows = [r for r in metrics_rows(run_dir) if r.get("step", 0) > s1 and "img_per_s" in r]
    w = world(run_dir)
    res.update({"final_step": after.get("step"), "target_step": target,
                "consumed_at_stop": before.get("consumed"), "consumed_final": after.get("consumed"),
                "resumed_at": w.get("resumed_at"), "starts": w.get("start"),
                "rows_after_resume": len(rows), "losses_finite": loss_rows_finite(rows),
                "weights_finite": after.get("weights_finite", False)})
    if done.returncode != 0:
        problems.append(f"the resumed run exited {done.returncode}: {done.stdout[-300:]}"
                        f"{done.stderr[-300:]}")
    if f"at step {s1}" not in done.stdout:
        problems.append(f"the resumed run does not say it resumed at step {s1}")
    if after.get("step") != target:
        problems.append(f"the resumed run ended at step {after.get('step')}, expected {target}")
    # cgan_avatars draws one batch per step (d_repeat 1, one process): position == step.
    if before.get("consumed") != s1 or after.get("consumed") != target:
        problems.append(f"data position {before.get('consumed')} -> {after.get('consumed')} "
                        f"does not follow the steps {s1} -> {target}")
    if not rows or not res["losses_finite"] or not res["weights_finite"]:
        problems.append("no finite training after the resume")
    res["ok"] = not problems
    return res


def stage_throughput(data: Path, work: Path, sizes: Sizes, device: str,
                     deadline: float) -> dict[str, Any]:
    """benchmarks.train_throughput once per (batch, levers), while time is left."""
    from benchmarks import train_throughput

    calls, skipped = [], []
    for batch, levers in sizes.throughput:
        left = deadline - time.perf_counter()
        need = 90.0 if "compile" in levers else 20.0  # rough: compile takes a minute or more
        if left < need:
            skipped.append({"batch": batch, "levers": levers,
                            "why": f"{left:.0f} s of --budget-s left, ~{need:.0f} s needed"})
            continue
        out = work / f"throughput-b{batch}-{levers.replace('+', '_').replace(',', '-')}.json"
        argv = ["--presets", "cgan_avatars", "--data", str(data), "--device", device,
                "--batch", str(batch), "--levers", levers, "--json", str(out),
                *sizes.throughput_args,
                "--set", f"data.cache_dir={work / 'cache'}", *sizes.throughput_set]
        if sizes.throughput_args[:1] == ("--tiny",):
            argv.remove("--batch")
            argv.remove(str(batch))
        with contextlib.redirect_stdout(io.StringIO()):
            rc = train_throughput.main(argv)
        report = json.loads(out.read_text())
        table = train_throughput.render(report)  # without its machine line: the summary has it
        table = table.split(machine_line(report["machine"]), 1)[-1].strip()
        calls.append({"batch": report["settings"]["batch"], "levers": levers, "exit": rc,
                      "peak_gflops": report["peak_gflops"], "results": report["results"],
                      "markdown": table})
    rows = [r for c in calls for r in c["results"]]
    ok = bool(calls) and all(c["exit"] == 0 for c in calls) and all(
        math.isfinite(r["img_per_s"]) and r["img_per_s"] > 0 for r in rows)
    return {"ok": ok, "calls": calls, "skipped": skipped,
            "problems": [] if ok else ["a throughput call failed or measured nothing"]}


def _feeds_torch(model: torch.nn.Module, feeds: dict[str, Any], device: str) -> Any:
    with torch.no_grad():
        inputs = [torch.from_numpy(v).to(device) for v in feeds.values()]
        return model.to(device)(*inputs).float().cpu().numpy()


def stage_export(runs: dict[str, Path], work: Path, cuda: bool) -> dict[str, Any]:
    """Export each GPU-trained generator on the CPU; ORT parity on CPU (and CUDA) providers."""
    import numpy as np

    from export.onnx_export import export_run, random_inputs, signature
    from export.runtime import CPU, CUDA, cuda_status, make_session
    from trainer.runs import load_generator

    torch._dynamo.reset()
    ort_cuda, why = cuda_status()
    out: dict[str, Any] = {"ort_cuda_provider": ort_cuda, "ort_cuda_reason": why, "models": {}}
    problems: list[str] = []
    for name, run_dir in runs.items():
        t0 = time.perf_counter()
        result = export_run(run_dir, work / "models", name=name, batches=(1, 8))
        m: dict[str, Any] = {"path": str(result.path), "cpu_provider_max_abs_diff":
                             {str(b): d for b, d in result.diffs.items()},
                             "tolerance": result.tolerance, "export_s": time.perf_counter() - t0}
        loaded = load_generator(run_dir)
        sig = signature(loaded.config, loaded.vocab)
        feeds = random_inputs(sig, 8, np.random.default_rng(7))
        ref = make_session(result.path, [CPU]).run([sig.output], feeds)[0]
        if cuda:
            gpu = _feeds_torch(loaded.model, feeds, "cuda")
            m["torch_cuda_vs_ort_cpu_max_abs_diff"] = float(np.abs(gpu - ref).max())
        if ort_cuda:
            got = make_session(result.path, [CUDA, CPU]).run([sig.output], feeds)[0]
            diff = float(np.abs(got - ref).max())
            m["cuda_provider_vs_cpu_provider_max_abs_diff"] = diff
            m["cuda_provider_ok"] = diff <= 1e-2  # TF32 convolutions may be on
            if not m["cuda_provider_ok"]:
                problems.append(f"{name}: ORT CUDA provider differs from CPU by {diff:.2e}")
        out["models"][name] = m
    out["ok"], out["problems"] = not problems, problems
    return out


def guarded(stage: str, fn: Any, *args: Any) -> dict[str, Any]:
    """``fn(*args)``, or a failed result naming the exception: one stage never stops the rest."""
    t0 = time.perf_counter()
    try:
        res = fn(*args)
    except Exception as e:  # reported in the summary; the other stages still run
        res = {"ok": False, "problems": [f"{type(e).__name__}: {str(e).strip()[:500]}"]}
    res.setdefault("seconds", time.perf_counter() - t0)
    print(f"  {stage}: {'ok' if res['ok'] else 'FAILED ' + '; '.join(res['problems'])} "
          f"({res['seconds']:.0f} s)", flush=True)
    return res


# -- report ---------------------------------------------------------------------------------
def render(report: dict[str, Any]) -> str:
    """The Markdown summary."""
    lines = ["# GPU check" + (" (CPU dry run: plumbing only, no GPU figures)"
                              if report["dry_run"] else ""), "",
             machine_line(report["machine"]), "",
             f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}. "
             f"Wall time {report['wall_s']:.0f} s; "
             f"{'all checks passed' if report['ok'] else 'SOME CHECKS FAILED'}.", "",
             "## Training", ""]
    t = report["train"]
    lines.append(md_table(
        ["run", "precision", "device", "steps", "img/s", "peak GPU MiB", "losses finite",
         "weights finite", "loss scale", "wall s", "ok"],
        [[n, r["precision"], r["device"], r.get("step", "-"), fmt(r["img_per_s"]),
          fmt(r["peak_gpu_mib"], 0), r["losses_finite"], r["weights_finite"],
          fmt(r.get("loss_scale"), 0), fmt(r["wall_s"], 0), r["ok"]] for n, r in t.items()
         if "precision" in r]))
    if report["dry_run"]:
        lines += ["", "On a CPU Accelerate runs fp16 without autocast and without loss scaling "
                      "(its GradScaler is for GPUs): the fp16 row checks plumbing only."]
    r = report["resume"]
    lines += ["", "## Interrupt and resume", "",
              f"SIGUSR1 after step {r.get('signal_at_logged_step', '-')} was logged: stopped "
              f"at step {r.get('stopped_at')} (checkpoint {r.get('checkpoint_at_stop')}) "
              f"{fmt(r.get('signal_to_exit_s'))} s after the signal; `--resume auto` went on "
              f"to step {r.get('final_step', '-')} of {r.get('target_step', '-')}, data position "
              f"{r.get('consumed_at_stop', '-')} -> {r.get('consumed_final', '-')}, losses "
              f"finite: {r.get('losses_finite', '-')}. ok: {r['ok']}. Bitwise equality with an "
              f"uninterrupted run is not expected on a GPU and not checked."]
    th = report["throughput"]
    lines += ["", "## Training throughput (benchmarks.train_throughput)", ""]
    for c in th["calls"]:
        lines += [f"Batch {c['batch']}, levers {c['levers']}:", "", c["markdown"], ""]
    for s in th["skipped"]:
        lines.append(f"Skipped: batch {s['batch']}, levers {s['levers']} ({s['why']}).")
    e = report["export"]
    lines += ["", "## Export (on the CPU) and ONNX Runtime parity", "",
              f"ORT CUDA provider: {'yes' if e.get('ort_cuda_provider') else 'no'} "
              f"({e.get('ort_cuda_reason', '-')}).", ""]
    if e.get("models"):
        lines.append(md_table(
            ["model", "CPU provider max abs diff (batch 1 / 8)", "limit",
             "CUDA provider vs CPU", "torch CUDA vs ORT CPU"],
            [[n, " / ".join(f"{d:.1e}" for d in m["cpu_provider_max_abs_diff"].values()),
              f"{m['tolerance']:.0e}",
              f"{m['cuda_provider_vs_cpu_provider_max_abs_diff']:.1e}"
              if "cuda_provider_vs_cpu_provider_max_abs_diff" in m else "-",
              f"{m['torch_cuda_vs_ort_cpu_max_abs_diff']:.1e}"
              if "torch_cuda_vs_ort_cpu_max_abs_diff" in m else "-"]
             for n, m in e["models"].items()]))
    problems = [f"- {stage}: {p}" for stage, p in report["problems"]]
    if problems:
        lines += ["", "## Problems", "", *problems]
    lines += ["", "Seconds per stage: " + ", ".join(
        f"{k} {v:.0f}" for k, v in report["stage_s"].items()) + "."]
    return "\n".join(lines) + "\n"


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "torch": torch.__version__,
           "cuda": str(torch.version.cuda)}
    for mod in ("accelerate", "onnx", "onnxscript", "onnxruntime", "omegaconf", "safetensors"):
        with contextlib.suppress(Exception):
            out[mod] = __import__(mod).__version__
    return out


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="avatar folder (PNG + tags.csv), e.g. data/gpu_check/avatars "
                                  "from --prepare (dry run default: 96 fresh avatars)")
    p.add_argument("--out", default="runs/gpu_check",
                   help="output folder: gpu_check.json, gpu_check.md, work/ (default %(default)s)")
    p.add_argument("--steps", type=int, default=300, help="steps per training run (GPU)")
    p.add_argument("--resume-at", type=int, default=100,
                   help="send SIGUSR1 once this step is logged (GPU)")
    p.add_argument("--resume-steps", type=int, default=100, help="steps after the resume (GPU)")
    p.add_argument("--large-batch", type=int, default=512, help="the throughput's large batch")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    p.add_argument("--budget-s", type=float, default=270.0,
                   help="wall seconds after which throughput calls are skipped (default 270)")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="the tiny CPU run of the plumbing, even where a GPU is visible")
    p.add_argument("--prepare", metavar="DIR",
                   help="render --count avatars (64 px) into DIR/avatars to carry to the GPU "
                        "machine, and exit")
    p.add_argument("--count", type=int, default=PREPARE_COUNT,
                   help="avatars that --prepare renders (default %(default)s)")
    args = p.parse_args(argv)
    for name in ("steps", "resume_at", "resume_steps", "large_batch", "count"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.resume_at >= args.steps:
        p.error("--resume-at must be below --steps")
    if args.data and not (Path(args.data) / "tags.csv").is_file():
        p.error(f"--data {args.data}: expected an avatar folder with tags.csv "
                f"(python -m benchmarks.gpu_check --prepare DIR makes one)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        return prepare(Path(args.prepare), args.count)
    t_start = time.perf_counter()
    cuda = torch.cuda.is_available() and not args.cpu_dry_run
    if not cuda:
        why = "--cpu-dry-run" if args.cpu_dry_run else "no CUDA device visible to torch"
        print(f"gpu_check: {why}; running the CPU dry run of its own plumbing (tiny sizes), "
              f"no GPU figures")
    absent = missing(NEEDED)
    if absent:
        print(f"error: missing packages {', '.join(absent)}: carry their wheels and "
              f"pip install --no-deps them (see --help)", file=sys.stderr)
        return 2
    absent_export = missing(NEEDED_EXPORT)
    sizes = gpu_sizes(args) if cuda else DRY
    out = Path(args.out)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if args.data:
        data = Path(args.data).resolve()
    else:
        if cuda:
            print("error: --data is required on a GPU machine (python -m benchmarks.gpu_check "
                  "--prepare DIR renders the avatars beforehand)", file=sys.stderr)
            return 2
        from trainer.data.avatars import generate_avatars

        data = work / "avatars"
        generate_avatars(data, 96, 32, seed=0, workers=1, progress=False)
    machine = machine_info()
    stage_s: dict[str, float] = {}
    report: dict[str, Any] = {"benchmark": "gpu_check", "dry_run": not cuda, "machine": machine,
                              "versions": versions(), "data": str(data),
                              "sizes": {"steps": sizes.steps, "resume_at": sizes.resume_at,
                                        "resume_steps": sizes.resume_steps}}
    device = "cuda" if cuda else "cpu"
    with env_vars(ACCELERATE_USE_CPU=None if cuda else "1", ACCELERATE_MIXED_PRECISION=None,
                  ACCELERATE_DYNAMO_BACKEND=None):
        t = time.perf_counter()
        report["train"] = {
            name: guarded(f"train {name}", stage_train, name, preset, prec, data, work, sizes,
                          cuda)
            for name, preset, prec in (("cgan_bf16", "cgan_avatars", "bf16"),
                                       ("stargan_bf16", "stargan_avatars", "bf16"),
                                       ("cgan_fp16", "cgan_avatars", "fp16"))}
        stage_s["train"] = time.perf_counter() - t
        t = time.perf_counter()
        report["resume"] = guarded("resume", stage_resume, data, work, sizes, "bf16")
        stage_s["resume"] = time.perf_counter() - t
        t = time.perf_counter()
        report["throughput"] = guarded("throughput", stage_throughput, data, work, sizes,
                                       device, t_start + args.budget_s)
        report["throughput"].setdefault("calls", [])
        report["throughput"].setdefault("skipped", [])
        stage_s["throughput"] = time.perf_counter() - t
        t = time.perf_counter()
        trained = {n: Path(report["train"][n]["run_dir"]) for n in ("cgan_bf16", "stargan_bf16")
                   if report["train"][n]["ok"]}
        if absent_export:
            report["export"] = {"ok": False, "problems": [
                f"not run: missing {', '.join(absent_export)}"]}
        elif len(trained) < 2:
            report["export"] = {"ok": False, "problems": ["not run: a bf16 training run failed"]}
        else:
            report["export"] = guarded("export", stage_export, trained, work, cuda)
        stage_s["export"] = time.perf_counter() - t
    finish_machine(machine)
    stages = {**{f"train {n}": r for n, r in report["train"].items()},
              "resume": report["resume"], "throughput": report["throughput"],
              "export": report["export"]}
    report["problems"] = [(s, p) for s, r in stages.items() for p in r.get("problems", [])]
    report["ok"] = all(r["ok"] for r in stages.values())
    report["stage_s"] = stage_s
    report["wall_s"] = time.perf_counter() - t_start
    write_json(out / "gpu_check.json", report)
    (out / "gpu_check.md").write_text(render(report))
    verdict = "passed" if report["ok"] else "FAILED: " + "; ".join(
        f"{s}: {p}" for s, p in report["problems"])
    print(f"gpu_check {'dry run ' if not cuda else ''}{verdict} in {report['wall_s']:.0f} s; "
          f"summary: {out / 'gpu_check.md'}, {out / 'gpu_check.json'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
