"""A throw-away Slurm cluster on this machine, for tests/test_slurm.py.

One controller and two node daemons (n1, n2) that share the machine, each
node with its own port; Debian's Slurm is built with MULTIPLE_SLURMD, so
`slurmd -N n1` and `slurmd -N n2` can run side by side. Nothing outside one
temporary folder is touched:

    ROOT/slurm.conf          clients and daemons find it through SLURM_CONF
    ROOT/munge/              a private munge key, socket, pid, seed and log
    ROOT/state/ spool/ log/  slurmctld state, slurmd spool folders, daemon logs

Every daemon runs in the foreground as a child of this process and is
stopped by its PID in `stop()`. The setup needs no systemd and no cgroups
(proctrack/linuxproc, task/none, no accounting storage).
Slurm must run as root here (SlurmUser=root) because slurmd starts jobs as
the submitting user.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "slurmstepd")
CLIENTS = ("sbatch", "srun", "scontrol", "scancel", "squeue", "sinfo")
NODES = ("n1", "n2")
FINISHED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE")
CPUS_PER_NODE = 2
MEMORY_PER_NODE_MB = 10000
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def sbin(name: str) -> str | None:
    """Path of a Slurm/munge binary (daemons live in /usr/sbin, often off PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS + CLIENTS if sbin(name) is None]


def why_unavailable() -> str | None:
    """A reason the cluster cannot start here, or None."""
    missing = missing_binaries()
    if missing:
        return (f"Slurm is not installed (missing {', '.join(missing)}); "
                f"run .ci/install_slurm.sh")
    if os.geteuid() != 0:
        return "a local Slurm cluster needs root (slurmd starts jobs as other users)"
    return None


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies without stop()
    (e.g. killed by a CI timeout), so no daemon outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _clean_env() -> dict[str, str]:
    """os.environ without Slurm variables (tests may themselves run inside a job)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}


class SlurmCluster:
    """`start()` brings the cluster up and waits for idle nodes; `stop()` ends it.

    `env` is the environment for client commands (sbatch, scontrol, ...): it
    points SLURM_CONF at this cluster and has no inherited SLURM_* variables.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.env = self.client_env()
        self.procs: dict[str, subprocess.Popen] = {}
        socket_path = self.root / "munge" / "munge.socket"
        if len(str(socket_path)) > 100:  # sun_path holds 108 bytes
            raise ValueError(f"{root}: path too long for a unix socket; use a shorter folder")

    def client_env(self, **extra: str) -> dict[str, str]:
        """The current environment, minus inherited Slurm variables, pointed at this cluster.

        Jobs inherit the environment of sbatch (--export=ALL), so `extra` reaches them too.
        """
        return {**_clean_env(), "SLURM_CONF": str(self.conf), **extra}

    # ---- configuration -----------------------------------------------------------------
    def _write_config(self) -> None:
        root = self.root
        for sub in ("munge", "state", "spool", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        # munged insists on private key and socket folders it owns (we are root)
        (root / "munge").chmod(0o700)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)

        ctld_port, *node_ports = _free_ports(1 + len(NODES))
        host = socket.gethostname().split(".")[0]
        nodes = "\n".join(
            f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} "
            f"CPUs={CPUS_PER_NODE} RealMemory={MEMORY_PER_NODE_MB} State=UNKNOWN"
            for name, port in zip(NODES, node_ports, strict=True))
        self.conf.write_text(f"""\
# Written by tests/slurm_cluster.py: a two-node cluster on one machine.
ClusterName=tagface-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/state/slurmctld.pid
SlurmdPidFile={root}/spool/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd, no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MpiDefault=none
# finished jobs stay visible to `scontrol show job` for 10 minutes
MinJobAge=600
KillWait=30
{nodes}
PartitionName=debug Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP
""")

    # ---- daemons -----------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "wb")  # noqa: SIM115 - kept by Popen
        self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            preexec_fn=_die_with_parent)
        log.close()

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        self._write_config()
        m = self.root / "munge"
        self._spawn("munged", [sbin("munged"), "--foreground", "--force",
                               f"--socket={m}/munge.socket", f"--key-file={m}/munge.key",
                               f"--pid-file={m}/munged.pid", f"--seed-file={m}/munged.seed",
                               f"--log-file={m}/munged.log"])
        self._wait_for(lambda: (m / "munge.socket").exists(), 10, "munged socket")
        self._spawn("slurmctld", [sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        for node in NODES:
            self._spawn(f"slurmd-{node}",
                        [sbin("slurmd"), "-D", "-N", node, "-f", str(self.conf)])
        self.wait_for_idle_nodes(timeout)
        return self

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see "
                                   f"{self.root / 'log'}:\n{self.logs_tail()}")

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} after {timeout:.0f} s:\n{self.logs_tail()}")
            time.sleep(0.3)

    def wait_for_idle_nodes(self, timeout: float = 60.0) -> None:
        self._wait_for(self._nodes_idle, timeout, "idle nodes")

    def _nodes_idle(self) -> bool:
        out = self.run("sinfo", "--noheader", "--Node", "--format=%N %t", check=False)
        states = dict(line.split() for line in out.stdout.splitlines() if line.strip())
        return all(states.get(n) == "idle" for n in NODES)

    def stop(self) -> None:
        """Cancel all jobs, wait for them to end, then stop each daemon by PID."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user", "root", check=False)
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                jobs = self.run("squeue", "--noheader", "--format=%i", check=False)
                if jobs.returncode != 0 or not jobs.stdout.strip():
                    break
                time.sleep(0.5)
        # nodes first (they may still talk to the controller), munged last
        order = [f"slurmd-{n}" for n in NODES] + ["slurmctld", "munged"]
        for name in order:
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- clients -----------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """Run a Slurm client command against this cluster."""
        kw.setdefault("env", self.env)
        return subprocess.run([sbin(argv[0]), *argv[1:]], capture_output=True, text=True,
                              check=check, timeout=kw.pop("timeout", 60), **kw)

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, NodeList, ExitCode, ...).

        Without accounting storage there is no sacct: a job is visible here while it
        runs and for MinJobAge seconds after it ends.
        """
        out = self.run("scontrol", "show", "job", "--oneliner", job_id).stdout
        fields = {}
        for item in out.split():
            key, sep, value = item.partition("=")
            if sep:
                fields[key] = value
        return fields

    def wait_for_job(self, job_id: str, states: tuple[str, ...] = FINISHED,
                     timeout: float = 180.0) -> dict[str, str]:
        """Poll until the job reaches one of `states`; return its fields."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.get("JobState") in states:
                return job
            if job.get("JobState") in FINISHED or time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {job.get('JobState')} "
                                   f"({job.get('Reason')}), waiting for {'/'.join(states)}")
            self._check_alive()
            time.sleep(0.5)

    def logs_tail(self, lines: int = 15) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")) + [self.root / "munge/munged.log"]:
            if path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)
