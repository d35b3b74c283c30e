"""benchmarks.gpu_check: its CPU dry run passes, so the GPU check cannot rot unseen, and it
runs without the packages the GPU machine lacks; the GPU timing synchronises where it must.

The dry run takes about a minute on one core (three tiny trainings, a signalled training
process and its resume, the throughput benchmark, two exports).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import StepClock

ROOT = Path(__file__).resolve().parents[1]
# Not installed on the GPU machine; the check must not import them (omegaconf is carried).
GPU_MACHINE_LACKS = ("dicebear", "resvg_py", "cairosvg", "gradio", "gradio_client")

BLOCKER = '''
import os, sys
from importlib.abc import MetaPathFinder

class _Absent(MetaPathFinder):
    """Behave as if these top-level packages were not installed."""
    names = set(os.environ["TAGFACE_TEST_ABSENT"].split(","))

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Absent())
'''


def run_check(tmp_path: Path, absent: tuple[str, ...], *args: str,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m benchmarks.gpu_check ARGS`` with ``absent`` packages hidden from it and
    from every process it starts (a sitecustomize on PYTHONPATH)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "TAGFACE_TEST_ABSENT": ",".join(absent), "TMPDIR": str(tmp_path / "tmp"),
           "TAGFACE_NO_BAR": "1"}
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_dry_run_passes_without_the_packages_the_gpu_machine_lacks(tmp_path: Path,
                                                                   avatar_dir: Path) -> None:
    out = tmp_path / "out"
    res = run_check(tmp_path, GPU_MACHINE_LACKS, "--cpu-dry-run", "--data", str(avatar_dir),
                    "--out", str(out))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    first = res.stdout.splitlines()[0]
    assert "CPU dry run" in first and "--cpu-dry-run" in first, res.stdout
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["ok"] is True, report["problems"]
    assert report["problems"] == []

    train = report["train"]
    assert set(train) == {"cgan_bf16", "stargan_bf16", "cgan_fp16"}
    for name, r in train.items():
        assert r["ok"] and r["step"] == report["sizes"]["steps"], (name, r)
        assert r["device"] == "cpu" and r["mixed_precision"] == r["precision"], r
        assert r["losses_finite"] and r["weights_finite"] and r["tensors"] > 0, r
        assert math.isfinite(r["img_per_s"]) and r["img_per_s"] > 0, r

    resume = report["resume"]
    stopped = resume["stopped_at"]
    assert resume["ok"] and resume["first_exit"] == 0, resume
    assert stopped >= report["sizes"]["resume_at"] and resume["checkpoint_at_stop"] == stopped
    assert resume["final_step"] == stopped + report["sizes"]["resume_steps"], resume
    assert resume["resumed_at"] == stopped and resume["starts"] == 2, resume
    assert resume["consumed_final"] == resume["final_step"], resume

    calls = report["throughput"]["calls"]
    assert calls and report["throughput"]["skipped"] == []
    variants = {r["variant"] for c in calls for r in c["results"]}
    assert {"reference", "project", "reference + bf16", "project + bf16"} <= variants, variants
    for r in (r for c in calls for r in c["results"]):
        assert r["img_per_s"] > 0 and r["pct_of_peak"] > 0, r

    models = report["export"]["models"]
    assert set(models) == {"cgan_bf16", "stargan_bf16"}
    for m in models.values():
        assert Path(m["path"]).is_file()
        assert max(m["cpu_provider_max_abs_diff"].values()) <= m["tolerance"], m

    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# GPU check (CPU dry run") and "Machine: " in md and "|---" in md


def test_missing_package_is_one_line_and_exit_2(tmp_path: Path) -> None:
    res = run_check(tmp_path, ("omegaconf",), "--cpu-dry-run", "--out", str(tmp_path / "o"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().count("\n") == 0 and "omegaconf" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_help_says_what_it_needs_how_long_and_where(tmp_path: Path) -> None:
    res = run_check(tmp_path, (), "--help")
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    for needed in ("CUDA", "omegaconf", "onnxscript", "pip download", "--prepare",
                   "5 minutes", "gpu_check.json", "gpu_check.md", "dicebear", "--budget-s"):
        assert needed in text, needed


class _Calls:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


def test_step_clock_synchronises_a_cuda_device_at_both_ends_of_the_timing() -> None:
    """Without it a GPU's queued kernels would still run after the clock stopped."""
    clock = StepClock(warmup=2, steps=3)
    clock.start(batch_size=4)  # CPU: nothing to wait for
    assert clock.sync is None
    clock.sync = sync = _Calls()  # what start(device="cuda") installs
    ticks = [clock.tick() for _ in range(6)]
    assert ticks == [False, False, False, False, False, True]
    assert sync.n == 2  # before the first timed reading and before the last
    assert clock.result().steps == 3
