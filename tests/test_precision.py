"""mixed_precision=auto: the decision table, what the trainer prints and records, and that
a run started with auto resumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer.precision import Facts, decide, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16"})
SAPPHIRE = frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"})
SKYLAKE = frozenset({"avx2", "avx512f"})  # AVX-512 without bf16: emulated
ZEN3 = frozenset({"avx2", "fma"})


@pytest.mark.parametrize("explicit, facts, expected, why", [
    # an explicit value always wins
    ("no", Facts("cuda", cuda_bf16=True), "no", "in the config"),
    ("bf16", Facts("cpu", cpu_flags=ZEN3), "bf16", "in the config"),
    ("fp16", Facts("cpu", cpu_flags=ZEN4, launcher="bf16"), "fp16", "in the config"),
    # then the launcher's value, its "no" included
    ("auto", Facts("cuda", cuda_bf16=True, launcher="no"), "no", "launcher"),
    ("auto", Facts("cpu", cpu_flags=ZEN3, launcher="BF16"), "bf16", "launcher"),
    ("auto", Facts("cuda", cuda_bf16=False, launcher="fp16"), "fp16", "launcher"),
    # CUDA: native bf16, else fp16 with loss scaling
    ("auto", Facts("cuda", cuda_bf16=True, cuda_name="NVIDIA H200"), "bf16", "H200"),
    ("auto", Facts("cuda", cuda_bf16=False, cuda_name="Tesla V100"), "fp16", "loss scaling"),
    # CPU: the bf16 flags decide, not torch's capability string
    ("auto", Facts("cpu", cpu_capability="AVX512", cpu_flags=ZEN4), "bf16", "avx512_bf16"),
    ("auto", Facts("cpu", cpu_capability="AVX512", cpu_flags=SAPPHIRE), "bf16", "amx_bf16"),
    ("auto", Facts("cpu", cpu_capability="AVX512", cpu_flags=SKYLAKE), "no", "no native bf16"),
    ("auto", Facts("cpu", cpu_capability="AVX2", cpu_flags=ZEN3), "no", "AVX2"),
    ("auto", Facts("cpu"), "no", "unknown"),
    ("auto", Facts("mps"), "no", "mps"),
])
def test_decision_table(explicit: str, facts: Facts, expected: str, why: str) -> None:
    precision, reason = decide(explicit, facts)
    assert precision == expected, reason
    assert why in reason


def train(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "ACCELERATE_MIXED_PRECISION"}
    full.update(TAGFACE_NO_BAR="1", OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "trainer.train", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=600)


def dry_run(*args: str, **env: str) -> tuple[str, dict]:
    res = train("--config", "cgan_avatars", "--dry-run", *args, **env)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()[1], yaml.safe_load(res.stdout)


def test_dry_run_prints_the_resolved_precision_and_why() -> None:
    expected, why = resolve_precision("auto")
    line, cfg = dry_run()
    assert line == f"# mixed precision: {expected} ({why})"
    assert cfg["mixed_precision"] == expected and expected != "auto"
    line, cfg = dry_run(ACCELERATE_MIXED_PRECISION="fp16")
    assert cfg["mixed_precision"] == "fp16" and "launcher" in line
    line, cfg = dry_run("mixed_precision=no", ACCELERATE_MIXED_PRECISION="bf16")
    assert cfg["mixed_precision"] == "no" and "in the config" in line


def test_no_preset_hard_codes_a_precision() -> None:
    presets = sorted((ROOT / "trainer" / "configs").glob("*.yaml"))
    assert presets
    for p in presets:
        assert "mixed_precision" not in (yaml.safe_load(p.read_text()) or {}), p.name


@pytest.mark.slow
def test_auto_is_recorded_resolved_and_the_run_resumes(avatar_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["--config", "cgan_avatars", "--run-dir", str(run), f"data.path={avatar_dir}",
              "data.size=32", "batch_size=8", "model.g_ch=8", "model.d_ch=8", "n_samples=8",
              "log_every=2", "sample_every=100", "ckpt_every=2"]
    first = train(*common, "steps=2")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    recorded = yaml.safe_load((run / "config.yaml").read_text())["mixed_precision"]
    assert recorded == resolve_precision("auto")[0]
    assert f"mixed precision {recorded} (auto: " in first.stdout
    again = train(*common, "steps=4", "--resume", "auto")  # the preset still says auto
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "at step 2" in again.stdout


def test_a_checkpoint_without_loss_scaler_state_loads_into_an_fp16_run(tmp_path: Path) -> None:
    """On a GPU, fp16 gives Accelerate a GradScaler, and load_state then demands scaler.pt,
    which a bf16 or fp32 checkpoint lacks. A CPU scaler stands in for the GPU's here."""
    import torch
    from accelerate import Accelerator

    from trainer.precision import load_state_any_precision

    def prepared(seed: int, scaler: torch.amp.GradScaler | None = None):
        torch.manual_seed(seed)
        acc = Accelerator(cpu=True)
        acc.scaler = scaler  # set before prepare, as Accelerator(fp16) on a GPU does
        model = torch.nn.Linear(4, 2)
        return (acc, *acc.prepare(model, torch.optim.Adam(model.parameters())))

    acc, model, _ = prepared(0)
    acc.save_state(str(tmp_path / "ckpt"), safe_serialization=True)
    assert not (tmp_path / "ckpt" / "scaler.pt").exists()
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    plain = prepared(2, torch.amp.GradScaler("cpu"))[0]
    with pytest.raises(FileNotFoundError):  # what the trainer's resume hit before
        plain.load_state(str(tmp_path / "ckpt"))
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    acc16, model16, opt16 = prepared(1, scaler)
    assert not all(torch.equal(v, saved[k]) for k, v in model16.state_dict().items())
    note = load_state_any_precision(acc16, tmp_path / "ckpt")
    assert "loss scale starts afresh" in note
    assert acc16.scaler is scaler and opt16.scaler is scaler
    for k, v in model16.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert load_state_any_precision(acc, tmp_path / "ckpt") == ""  # no scaler: plain load
