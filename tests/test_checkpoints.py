"""Never save, export or resume from a broken state.

Finite checkpoints (the NaN stop keeps a finite one), verified resume with fallback
past a broken newest checkpoint, the run-folder lock, metrics rows once per step,
and the crash test: kill -9 at random moments (some during checkpoint writing),
``--resume auto`` each time, final weights bitwise equal to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from export.__main__ import main as export_main
from trainer.checkpoints import nonfinite_report, resumable_checkpoint, verify_checkpoint
from trainer.runlock import LOCK_FILE, RunLock, RunLocked
from trainer.runs import RunError, latest_checkpoint, truncate_metrics

TINY = ["data.size=32", "batch_size=8", "model.g_ch=16", "model.d_ch=16", "log_every=2",
        "sample_every=4", "ckpt_every=4", "n_samples=16", "mixed_precision=no", "keep_ckpts=3"]


def train_cmd(run: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trainer.train", "--config", "cgan_avatars", "--run-dir",
            str(run), f"data.path={data}", *TINY, *extra]


def env() -> dict[str, str]:
    keep = ("TAGFACE_", "HOME", "VIRTUAL_ENV", "PATH")
    return {**{k: v for k, v in os.environ.items() if k.startswith(keep)},
            "TAGFACE_NO_BAR": "1", "OMP_NUM_THREADS": "1"}


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300)


def step_of(ckpt: Path) -> int:
    return int(ckpt.name.split("_")[1])


@pytest.fixture(scope="module")
def done_run(avatar_dir, tmp_path_factory) -> Path:
    """12 steps, checkpoints at 4, 8 and 12; copied by tests that break it."""
    path = tmp_path_factory.mktemp("ckpt") / "run"
    res = run(train_cmd(path, avatar_dir, "steps=12"))
    assert res.returncode == 0, res.stderr[-3000:]
    return path


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- finite checkpoints -------------------------------------------------------------------
def test_nonfinite_report_names_model_and_optimizer():
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters())
    m(torch.ones(1, 3)).sum().backward()
    opt.step()
    assert nonfinite_report({"G": m}, {"G": opt}) == []
    with torch.no_grad():
        m.weight[0, 0] = float("nan")
    opt.state[m.bias]["exp_avg"][0] = float("inf")
    report = nonfinite_report({"G": m}, {"G": opt})
    assert report[0].startswith("G has 1 non-finite values") and "weight" in report[0]
    assert "G optimizer has 1 non-finite" in report[1]


def test_nan_run_keeps_a_finite_checkpoint_and_says_which(avatar_dir, tmp_path, capsys):
    """SGD at lr=1e3 blows up: the run stops (rc 3) and its newest checkpoint is finite;
    exporting "the latest" of that run is refused, naming the checkpoint to pass."""
    path = tmp_path / "nan"
    res = run(train_cmd(path, avatar_dir, "steps=20", "ckpt_every=2", "g_optim.name=sgd",
                        "d_optim.name=sgd", "g_optim.lr=1e3", "d_optim.lr=1e3"))
    assert res.returncode == 3, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    ckpt = latest_checkpoint(path)
    assert ckpt is not None
    assert f"{ckpt}" in res.stderr and "non-finite" in res.stderr
    for f in ckpt.glob("*.safetensors"):
        for k, v in load_file(f).items():
            assert torch.isfinite(v).all(), f"{f.name}:{k}"
    for f in ckpt.glob("optimizer*.bin"):
        state = torch.load(f, weights_only=True)["state"]
        assert all(torch.isfinite(t).all() for s in state.values() for t in s.values()
                   if isinstance(t, torch.Tensor))
    assert verify_checkpoint(ckpt) is None
    out = tmp_path / "models"
    assert export_main(["--run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "stopped on NaN/inf" in err and f"--checkpoint {ckpt.name}" in err
    assert not out.exists() or not list(out.glob("*.onnx"))
    assert export_main(["--run", str(path), "--out", str(out), "--checkpoint", ckpt.name]) == 0


def test_export_refuses_nonfinite_generator(done_run, tmp_path, capsys):
    path = copy_run(done_run, tmp_path / "run")
    ema = latest_checkpoint(path) / "g_ema.safetensors"
    state = load_file(ema)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    save_file(state, str(ema))
    assert export_main(["--run", str(path), "--out", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err
    assert str(ema) in err and "non-finite" in err
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


def test_export_refuses_nan_outputs(tmp_path):
    from export.onnx_export import ExportError, export_generator
    from trainer.config import load_config

    cfg = load_config(None, ["model.cond=none", "data.size=32", "model.g_ch=8"])

    class NanG(torch.nn.Module):
        def forward(self, z):
            return torch.full((z.shape[0], 3, 32, 32), float("nan"))

    with pytest.raises(ExportError, match="NaN/inf"):
        export_generator(NanG(), cfg, None, tmp_path / "g.onnx", step=1, config_hash="x")
    assert not (tmp_path / "g.onnx").exists()


def test_parity_fails_on_nan():
    from export.onnx_export import parity_ok

    assert parity_ok({1: 0.0, 8: 1e-5}, 1e-4)
    assert not parity_ok({1: 0.0, 8: float("nan")}, 1e-4)
    assert not parity_ok({1: float("inf")}, 1e-4)
    assert not parity_ok({1: 2e-4}, 1e-4)


# -- verified resume -----------------------------------------------------------------------
BREAKS = {
    "model.safetensors": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "optimizer.bin": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "g_ema.safetensors": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "meta.json": lambda p: p.write_text("{}"),
    "random_states_0.pkl": lambda p: p.write_bytes(p.read_bytes()[:200]),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_verify_names_the_broken_file(done_run, tmp_path, name):
    path = copy_run(done_run, tmp_path / "run")
    newest = latest_checkpoint(path)
    BREAKS[name](newest / name)
    assert name in verify_checkpoint(newest)
    ckpt, warnings = resumable_checkpoint(path, 1)
    assert ckpt is not None and step_of(ckpt) == 8
    assert len(warnings) == 1 and str(newest / name) in warnings[0]


def test_rng_states_of_every_writing_process_are_required(done_run, tmp_path):
    """meta.json's world_size says how many RNG files must be there (a resume with a
    different number of processes still verifies against what was written)."""
    path = copy_run(done_run, tmp_path / "run")
    newest = latest_checkpoint(path)
    meta = json.loads((newest / "meta.json").read_text())
    (newest / "meta.json").write_text(json.dumps({**meta, "world_size": 2}))
    assert "random_states_1.pkl: missing" in verify_checkpoint(newest)
    assert verify_checkpoint(newest, world_size=1) is None


def test_no_usable_checkpoint_is_an_error(done_run, tmp_path):
    path = copy_run(done_run, tmp_path / "run")
    for ckpt in (path / "checkpoints").glob("step_*"):
        (ckpt / "meta.json").write_text("{")
    with pytest.raises(RunError, match="no usable checkpoint"):
        resumable_checkpoint(path, 1)


def test_truncated_newest_resumes_from_previous(done_run, tmp_path):
    """The resume skips step 12 (named), restarts at 8 and ends bitwise where step 12 was;
    metrics.jsonl then has every step once."""
    path = copy_run(done_run, tmp_path / "run")
    good = load_file(done_run / "checkpoints/step_00000012/g_ema.safetensors")
    bad = path / "checkpoints/step_00000012/model.safetensors"
    bad.write_bytes(bad.read_bytes()[:1000])
    res = run(train_cmd(path, Path(json_cfg(path)["data"]["path"]), "steps=12",
                        "--resume", "auto"))
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert f"warning: skipping a broken checkpoint: {bad}" in out
    assert "at step 8" in out
    again = load_file(path / "checkpoints/step_00000012/g_ema.safetensors")
    assert all(torch.equal(good[k], again[k]) for k in good)
    steps = [json.loads(x)["step"] for x in (path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(2, 13, 2))


def json_cfg(run_dir: Path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))  # type: ignore


def test_truncate_metrics_drops_later_and_half_rows(tmp_path):
    m = tmp_path / "metrics.jsonl"
    m.write_text("".join(json.dumps({"step": s}) + "\n" for s in (2, 4, 6, 8)) + '{"st')
    assert truncate_metrics(m, 4) == 3
    assert [json.loads(x)["step"] for x in m.read_text().splitlines()] == [2, 4]
    assert truncate_metrics(m, 4) == 0


# -- the run-folder lock -------------------------------------------------------------------
def test_second_training_on_one_run_folder_exits_2_naming_the_first(avatar_dir, tmp_path):
    path = tmp_path / "run"
    log = (tmp_path / "first.out").open("w")
    first = subprocess.Popen(train_cmd(path, avatar_dir, "steps=100000", "ckpt_every=1000"),
                             stdout=log, stderr=subprocess.PIPE, text=True, env=env())
    try:
        deadline = time.monotonic() + 120
        while not (path / LOCK_FILE).is_file():
            assert first.poll() is None, first.stderr.read()[-3000:] if first.stderr else ""
            assert time.monotonic() < deadline, "the first training never took the lock"
            time.sleep(0.1)
        second = run(train_cmd(path, avatar_dir, "steps=8", "--resume", "auto"))
        assert second.returncode == 2
        assert f"pid {first.pid} on host {socket.gethostname()}" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first training must go on"
    finally:
        first.send_signal(signal.SIGTERM)  # stops at the next step with a checkpoint
        first.wait(timeout=120)
        log.close()
    assert first.returncode == 0
    assert not (path / LOCK_FILE).exists(), "released on exit"
    said = (tmp_path / "first.out").read_text()
    assert "stopped by a signal" in said and "--resume auto" in said
    assert "done:" not in said and "next: python -m export" not in said


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": dead.pid, "pid_start": "1", "since": 0}))
    with RunLock(tmp_path) as lock:
        assert f"pid {dead.pid} is gone" in lock.note
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_live_holder_and_requeued_slurm_job(tmp_path, monkeypatch):
    other = {"host": "node-elsewhere", "pid": 4242, "slurm_job_id": "77", "since": 0}
    (tmp_path / LOCK_FILE).write_text(json.dumps(other))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(RunLocked, match="pid 4242 on host node-elsewhere, Slurm job 77"):
        RunLock(tmp_path).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "77")  # the same job, requeued onto another node
    with RunLock(tmp_path) as lock:
        assert "Slurm job (77)" in lock.note


# -- the crash test ------------------------------------------------------------------------
def _newest_step(path: Path) -> int:
    steps = [step_of(p) for p in (path / "checkpoints").glob("step_*")] if (
        path / "checkpoints").is_dir() else []
    return max(steps, default=0)


def test_kill_9_at_random_moments_then_resume_is_bitwise_exact(avatar_dir, tmp_path):
    """5 kill -9 (at least 2 while a checkpoint is being written), resume each time."""
    common = ["steps=24", "ckpt_every=1", "keep_ckpts=2", "sample_every=1000", "log_every=5",
              "g_every=2"]
    straight = tmp_path / "straight"
    res = run(train_cmd(straight, avatar_dir, *common))
    assert res.returncode == 0, res.stderr[-3000:]

    path = tmp_path / "killed"
    rng = random.Random(15)
    kills, during_write, starts = 0, 0, 0
    while kills < 5 and starts < 20:
        starts += 1
        before = _newest_step(path)
        proc = subprocess.Popen(train_cmd(path, avatar_dir, *common, "--resume", "auto"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
        want_write = kills % 2 == 0  # alternate: during a write, or after a random delay
        delay = rng.uniform(0.0, 0.3)
        killed = False
        while proc.poll() is None:
            if _newest_step(path) > before:  # training progressed past the last restart
                tmp = list((path / "checkpoints").glob(".tmp-*"))
                if not want_write or tmp:
                    if not want_write:
                        time.sleep(delay)
                    proc.kill()
                    killed = True
                    break
            time.sleep(0.002)
        proc.wait(timeout=60)
        err = proc.stderr.read().decode() if proc.stderr else ""
        proc.stderr.close()
        if not killed:
            assert proc.returncode == 0, err[-3000:]
            break  # finished before the kill landed
        kills += 1
        during_write += bool(list((path / "checkpoints").glob(".tmp-*")))
    assert kills >= 5, f"only {kills} kills landed"
    assert during_write >= 2, f"only {during_write} kills landed during a checkpoint write"
    res = run(train_cmd(path, avatar_dir, *common, "--resume", "auto"))
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = latest_checkpoint(straight), latest_checkpoint(path)
    assert a.name == b.name == "step_00000024"
    for f in ("g_ema.safetensors", "model.safetensors", "model_1.safetensors"):
        ta, tb = load_file(a / f), load_file(b / f)
        assert all(torch.equal(ta[k], tb[k]) for k in ta), f"{f} differs after the kills"
    steps = [json.loads(x)["step"] for x in (path / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "a step appears twice in metrics.jsonl"
