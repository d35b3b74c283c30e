"""slurm/*.sh on a real two-node Slurm cluster started on this machine.

The cluster (tests/slurm_cluster.py) runs Debian's munged, slurmctld and two
slurmd (n1, n2); `sbatch slurm/train_cgan.sh` trains a tiny conditional GAN on
both nodes, on CPU (gloo), one process per node. The tests skip with the reason
when Slurm is not installed (.ci/install_slurm.sh installs it) or not root.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import NODES, SlurmCluster, why_unavailable

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "slurm").glob("*.sh"))

# A tiny model at 32 px, one log line per step, no periodic checkpoints.
TINY = ["data.size=32", "batch_size=8", "model.g_ch=16", "model.d_ch=16", "n_samples=16",
        "log_every=1", "sample_every=1000", "ckpt_every=1000", "mixed_precision=no"]
# Two nodes, one task (and one CPU process) each; time limit >= 3 min because
# Slurm may deliver --signal=B:USR1@120 up to ~30 s early.
SBATCH = ["--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1",
          "--time=5"]


# ---- cheap checks, no cluster --------------------------------------------------------------
def sbatch_directives(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.startswith("#SBATCH")]


@pytest.mark.parametrize("wrapper", ["train_cgan.sh", "train_stargan.sh"])
def test_wrappers_repeat_the_generic_defaults(wrapper):
    """Wrappers must carry their own #SBATCH lines; they may differ only in the job name."""
    generic = sbatch_directives(REPO / "slurm" / "train.sh")
    mine = sbatch_directives(REPO / "slurm" / wrapper)
    assert [d for d in mine if "--job-name" not in d] == \
        [d for d in generic if "--job-name" not in d]
    assert sum("--job-name" in d for d in mine) == 1


def test_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (.ci/install_slurm.sh installs it)")
    res = subprocess.run(["shellcheck", *map(str, SCRIPTS), str(REPO / ".ci/install_slurm.sh")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# ---- a real cluster ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


@pytest.fixture(scope="module")
def tiny_data(avatar_dir) -> Path:
    """Decode the avatars once, so the two nodes do not race to build the cache."""
    subprocess.run([sys.executable, "-m", "trainer.data", "cache", str(avatar_dir),
                    "--size", "32"], check=True, capture_output=True, cwd=REPO)
    return avatar_dir


def submit(cluster: SlurmCluster, tmp_path: Path, run: Path, overrides: list[str]) -> str:
    """sbatch slurm/train_cgan.sh from the checkout; returns the job id."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    env = cluster.client_env(
        PATH=f"{Path(sys.executable).parent}:{cluster.env['PATH']}",  # accelerate, python
        RUN_DIR=str(run), TAGFACE_NO_BAR="1")
    res = cluster.run("sbatch", "--parsable", *SBATCH, f"--output={logs}/%x-%j.out",
                      str(REPO / "slurm" / "train_cgan.sh"), *TINY, *overrides,
                      env=env, cwd=REPO)
    return res.stdout.strip().split(";")[0]


def log_of(tmp_path: Path, job_id: str) -> str:
    return (tmp_path / "logs" / f"cgan_avatars-{job_id}.out").read_text(errors="replace")


def metric_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def latest(run: Path) -> tuple[str, dict]:
    name = (run / "checkpoints" / "latest").read_text().strip()
    return name, json.loads((run / "checkpoints" / name / "meta.json").read_text())


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.distributed
def test_two_nodes_train_and_checkpoint(cluster, tiny_data, tmp_path):
    run = tmp_path / "run"
    job_id = submit(cluster, tmp_path, run, [f"data.path={tiny_data}", "steps=6"])
    job = cluster.wait_for_job(job_id)
    log = log_of(tmp_path, job_id)
    assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), log[-4000:]
    assert job["NodeList"] == "n[1-2]"

    # one rank on each node, really one process group (not two lone trainers)
    world = json.loads((run / "world.json").read_text())
    assert world["world_size"] == 2, world
    assert "MULTI_CPU" in world["distributed_type"], world
    assert sorted(world["hosts"]) == list(NODES), world
    for rank, node in enumerate(NODES):
        assert f"node {node}: machine_rank {rank}" in log, log[-4000:]

    name, meta = latest(run)
    assert name == "step_00000006" and meta["step"] == 6 and meta["world_size"] == 2
    assert (run / "checkpoints" / name / "random_states_1.pkl").is_file(), "rank 1 saved state"
    assert not (run / "preempted").exists()
    assert metric_steps(run) == list(range(1, 7))


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.distributed
def test_usr1_checkpoints_requeues_and_resumes(cluster, tiny_data, tmp_path):
    steps = 60
    run = tmp_path / "run"
    job_id = submit(cluster, tmp_path, run, [f"data.path={tiny_data}", f"steps={steps}"])

    # Mid-run: what Slurm sends 120 s before the time limit, sent by hand to the batch shell.
    deadline = time.monotonic() + 150
    while not metric_steps(run) or metric_steps(run)[-1] < 3:
        state = cluster.job(job_id)["JobState"]
        assert state in ("PENDING", "RUNNING") and time.monotonic() < deadline, \
            f"job {state} before training got going:\n" + log_of(tmp_path, job_id)[-4000:]
        time.sleep(0.2)
    cluster.run("scancel", "--batch", "--signal=USR1", job_id)

    # The script requeues the job; Slurm holds a requeued job ~2 min (BeginTime).
    job = cluster.wait_for_job(job_id, ("PENDING",), timeout=120)
    log = log_of(tmp_path, job_id)
    assert job["Restarts"] == "1", job
    stopped = re.search(r"training stopped at step (\d+) with checkpoint (\S+) \(exit 0\)", log)
    assert stopped and "requeueing job" in log, log[-4000:]
    step = int(stopped.group(1))
    assert 3 <= step < steps
    assert (run / "preempted").read_text().strip() == str(step)
    name, meta = latest(run)
    assert name == stopped.group(2) and meta["step"] == step, (name, meta)
    assert metric_steps(run)[-1] == step
    # Not before the old allocation is gone: slurmd rejects a job credential issued in
    # the same second as the revocation of the previous one ("Job credential revoked").
    cluster.wait_for_idle_nodes()
    time.sleep(2)
    cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")

    job = cluster.wait_for_job(job_id)
    log = log_of(tmp_path, job_id)
    assert (job["JobState"], job["ExitCode"], job["Restarts"]) == ("COMPLETED", "0:0", "1"), \
        log[-4000:]
    assert "restart 1," in log
    # The resumed run continued from the checkpoint: steps never go back to 1.
    assert metric_steps(run) == list(range(1, steps + 1)), metric_steps(run)
    world = json.loads((run / "world.json").read_text())
    assert (world["start"], world["resumed_at"], world["world_size"]) == (2, step, 2), world
    assert latest(run)[1]["step"] == steps
    assert not (run / "preempted").exists()
