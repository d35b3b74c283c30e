"""The ``tagface`` entry point: --help lists every stage, --version, a stage gets its options.

Run through the module that implements it and, when ``pip install -e .`` has put it
there, through the installed ``tagface`` script beside this Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainer import __version__
from trainer.cli import STAGES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = shutil.which("tagface", path=str(Path(sys.executable).parent))
COMMANDS = [pytest.param([sys.executable, "-m", "trainer.cli"], id="module")]
COMMANDS.append(pytest.param([SCRIPT] if SCRIPT else [], id="script", marks=pytest.mark.skipif(
    SCRIPT is None, reason="the tagface script is not installed (pip install -e .)")))


def run(cmd: list[str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TAGFACE_NO_BAR": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_lists_the_stages_and_version_prints_it(cmd: list[str]) -> None:
    res = run(cmd, "--help")
    assert res.returncode == 0, res.stderr
    for stage in ("data", "train", "evaluate", "translate", "export", "demo"):
        assert f"\n  {stage} " in res.stdout, stage
    assert "accelerate launch -m trainer.train" in res.stdout
    res = run(cmd, "--version")
    assert res.returncode == 0 and res.stdout.strip() == f"tagface {__version__}", res


@pytest.mark.parametrize("cmd", COMMANDS)
def test_a_stage_gets_the_module_options(cmd: list[str]) -> None:
    res = run(cmd, "train", "--config", "cgan_avatars", "--dry-run", "steps=7")
    assert res.returncode == 0, res.stderr
    assert "name: cgan_avatars" in res.stdout and "steps: 7" in res.stdout
    res = run(cmd, "export", "--help")
    assert res.returncode == 0 and "--run" in res.stdout


def test_an_unknown_stage_is_one_line_and_exit_2() -> None:
    res = run([sys.executable, "-m", "trainer.cli"], "trian")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "'trian'" in res.stderr and "train" in res.stderr


def test_every_stage_module_has_a_main() -> None:
    import importlib

    for stage, (module, _) in STAGES.items():
        assert callable(getattr(importlib.import_module(module), "main", None)), stage
