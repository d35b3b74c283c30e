"""One training per run folder: an exclusive lock that names its holder.

``RUN/train.lock`` holds the holder's host, pid, process start time and Slurm job
id (JSON). Taking or freeing it happens under a short ``filelock`` so that two
processes starting together cannot both win. A lock is taken over when it is
stale (same host, and the pid is gone or is a newer process with the same
number) or when it belongs to this Slurm job (a requeued job restarts, perhaps
on another node, while its old lock is still on disk). Anything else is a
``RunLocked`` error naming the holder; the CLI turns it into exit 2.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from trainer.runs import RunError, write_text_atomic

LOCK_FILE = "train.lock"


class RunLocked(RunError):
    """Another live process holds the run folder."""


def _start_time(pid: int) -> str | None:
    """Kernel start time of a process (distinguishes a reused pid), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22 of proc(5), counted after comm


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _me() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _start_time(pid),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "since": time.time()}


def _describe(h: dict) -> str:
    job = f", Slurm job {h['slurm_job_id']}" if h.get("slurm_job_id") else ""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.get("since", 0)))
    return f"pid {h.get('pid')} on host {h.get('host')}{job}, since {since}"


def _stale(h: dict, me: dict) -> str:
    """Why the holder ``h`` no longer holds the lock, or '' if it may still."""
    job = me["slurm_job_id"]
    if job and h.get("slurm_job_id") == job:
        return f"this Slurm job ({job}) held it before a requeue"
    if h.get("host") != me["host"]:
        return ""  # cannot see processes of another host
    pid = h.get("pid")
    if not isinstance(pid, int):
        return "it names no process"
    if pid == me["pid"]:
        return ""
    if not _alive(pid):
        return f"pid {pid} is gone"
    start = _start_time(pid)
    if h.get("pid_start") and start and start != h["pid_start"]:
        return f"pid {pid} is now another process"
    return ""


class RunLock:
    """``with RunLock(run_dir):`` or acquire()/release(); ``note`` says if a stale lock was taken."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.note = ""
        self._held = False

    def _guard(self) -> FileLock:
        return FileLock(self.run_dir / f".{LOCK_FILE}.guard", timeout=30)

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        me = _me()
        try:
            with self._guard():
                if self.path.exists():
                    try:
                        holder = json.loads(self.path.read_text())
                        if not isinstance(holder, dict):
                            raise ValueError
                    except (OSError, ValueError):
                        holder = {}
                    why = _stale(holder, me) if holder else "it is unreadable"
                    if not why and holder.get("pid") != me["pid"]:
                        raise RunLocked(f"{self.run_dir} is in use by another training "
                                        f"({_describe(holder)}; {self.path}); wait for it to "
                                        f"finish or choose another --run-dir")
                    if why:
                        self.note = f"took over the stale lock {self.path}: {why}"
                write_text_atomic(self.path, json.dumps(me) + "\n")
        except Timeout:
            raise RunLocked(f"{self.run_dir}: could not take {self.path} within 30 s "
                            f"(another process holds its guard file)") from None
        self._held = True
        return self

    def release(self) -> None:
        """Remove the lock file if this process still holds it (safe to call twice)."""
        if not self._held:
            return
        self._held = False
        try:
            with self._guard():
                holder = json.loads(self.path.read_text())
                if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                    self.path.unlink()
        except (OSError, ValueError, Timeout):
            pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
