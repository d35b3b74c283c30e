"""Real 2-process CPU DDP (gloo) through `accelerate launch`: both ranks hold the same weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.runs import latest_checkpoint

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

TINY = ["data.size=32", "batch_size=8", "model.g_ch=16", "model.d_ch=16", "log_every=2",
        "sample_every=6", "ckpt_every=6", "n_samples=16"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(args: list[str], precision: str) -> subprocess.CompletedProcess:
    exe = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert exe, "accelerate's launcher is not installed beside this Python"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "TAGFACE_NO_BAR": "1", "OMP_NUM_THREADS": "1"}
    cmd = [exe, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", precision, "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "trainer.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("preset, precision, extra", [
    ("wgan_gp_avatars", "bf16", []),
    ("cgan_avatars", "no", []),
    ("cgan_avatars_long", "bf16", ["loss.lecam=0.1"]),  # ADA, R1, LeCam
])
def test_two_process_ranks_agree(avatar_dir, tmp_path, preset, precision, extra):
    run = tmp_path / preset
    res = accelerate_launch(["--config", preset, "--run-dir", str(run),
                             f"data.path={avatar_dir}", "steps=6", *TINY, *extra], precision)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    world = json.loads((run / "world.json").read_text())
    assert world["world_size"] == 2, world
    assert "MULTI_CPU" in world["distributed_type"] or "MULTI_GPU" in world["distributed_type"]
    assert world["mixed_precision"] == precision
    sums = world["replica_checksums"]
    assert set(sums) >= {"G", "D", "ema"}
    for name, per_rank in sums.items():
        assert len(per_rank) == 2 and per_rank[0] == per_rank[1], (name, per_rank)
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and ckpt.name == "step_00000006"
    assert (ckpt / "random_states_1.pkl").is_file(), "each rank saves its RNG state"
    if extra:
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert any("D/lecam" in r for r in rows), "the LeCam term is logged"
