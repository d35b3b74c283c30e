"""The training entry point on tiny settings: run folder, resume, NaN stop, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from trainer import train
from trainer.runs import latest_checkpoint, load_generator

TINY = ["data.size=32", "batch_size=8", "model.g_ch=16", "model.d_ch=16", "log_every=2",
        "sample_every=4", "ckpt_every=4", "n_samples=16", "mixed_precision=no"]


def run_train(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {"TAGFACE_NO_BAR": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    import os

    env.update({k: v for k, v in os.environ.items() if k.startswith(("TAGFACE_", "HOME",
                                                                       "VIRTUAL_ENV"))})
    return subprocess.run([sys.executable, "-m", "trainer.train", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def states_equal(a: dict, b: dict) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def short_run(avatar_dir, tmp_path_factory):
    """One tiny cGAN run of 24 steps, shared by the checks below."""
    run = tmp_path_factory.mktemp("runs") / "cgan"
    res = run_train(["--config", "cgan_avatars", "--run-dir", str(run), f"data.path={avatar_dir}",
                     "steps=24", *TINY, "sample_every=8", "ckpt_every=8", "log_every=4"])
    assert res.returncode == 0, res.stderr[-3000:]
    return run, res


def test_run_folder_contents(short_run):
    run, res = short_run
    for name in ("config.yaml", "vocab.json", "metrics.jsonl", "world.json", "progress.png",
                 "losses.png", "samples/step_00000008.png", "samples/step_00000024.png",
                 "same_tags_different_noise.png", "same_noise_different_tags.png"):
        assert (run / name).is_file(), name
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and ckpt.name == "step_00000024"
    assert (ckpt / "g_ema.safetensors").is_file()
    assert list(ckpt.glob("*.safetensors")), "accelerate weights are safetensors"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(4, 25, 4))
    assert all(np.isfinite(r["D/loss"]) and np.isfinite(r["G/loss"]) for r in rows)
    assert json.loads((run / "world.json").read_text())["world_size"] == 1
    vocab = json.loads((run / "vocab.json").read_text())
    assert [g["name"] for g in vocab["groups"]] == ["hair", "eyes"]


def test_samples_change_and_are_not_constant(short_run):
    run, _ = short_run
    first = np.asarray(Image.open(run / "samples/step_00000008.png"), dtype=np.float32)
    last = np.asarray(Image.open(run / "samples/step_00000024.png"), dtype=np.float32)
    assert first.shape == last.shape
    assert np.abs(first - last).mean() > 1.0, "samples did not change during training"
    g = load_generator(run)
    z = torch.randn(16, g.config.model.z_dim, generator=torch.Generator().manual_seed(1))
    tags = torch.zeros(16, g.vocab.n_tags)
    tags[:, 0] = 1
    tags[:, 12] = 1
    out = g.model(z, tags)
    assert out.shape == (16, 3, 32, 32)
    assert out.std(dim=0).mean() > 1e-3, "every noise vector gives the same image"


def test_saved_ema_has_standing_statistics(short_run, avatar_dir):
    """g_ema's BatchNorm statistics are measured on the EMA weights (ema_bn_batches batches
    of the training distribution, seeded by the step), not copied from the live G; the
    evaluation's --standing-stats 32 measures the same ones again."""
    from trainer.evaluate.pipeline import load_run_dataset, remeasure_batchnorm

    run, _ = short_run
    ckpt = latest_checkpoint(run)
    saved, live = load_file(ckpt / "g_ema.safetensors"), load_file(ckpt / "model.safetensors")
    tracked = [k for k in saved if k.endswith("num_batches_tracked")]
    assert tracked and all(int(saved[k]) == 32 for k in tracked), "32 batches by default"
    assert all(int(live[k]) == 24 * 2 for k in tracked), "G's own count: 2 forwards a step"
    assert not torch.equal(saved[tracked[0].replace("num_batches_tracked", "running_mean")],
                           live[tracked[0].replace("num_batches_tracked", "running_mean")])
    g = load_generator(run)
    assert remeasure_batchnorm(g, load_run_dataset(g.config, avatar_dir), 32) == len(tracked)
    again = g.model.state_dict()
    for k in saved:
        assert torch.allclose(saved[k].float(), again[k].float(), atol=1e-5), k


def test_existing_run_needs_resume(short_run, avatar_dir):
    run, _ = short_run
    res = run_train(["--config", "cgan_avatars", "--run-dir", str(run),
                     f"data.path={avatar_dir}", "steps=24", *TINY])
    assert res.returncode == 2
    assert "--resume auto" in res.stderr


def test_resume_rejects_changed_config(short_run, avatar_dir):
    run, _ = short_run
    res = run_train(["--config", "cgan_avatars", "--run-dir", str(run), "--resume", "auto",
                     f"data.path={avatar_dir}", "steps=24", *TINY, "loss.adv=lsgan"])
    assert res.returncode == 2
    assert "loss.adv" in res.stderr


# ADA adjusting p every 3 D steps: the stop at step 4 falls inside an adjustment interval;
# LeCam's moving averages carry across the stop too
ADA = ["--config", "cgan_avatars", "aug.policy=translation,cutout", "aug.target=0.05",
       "aug.interval=3", "aug.kimg=0.2", "loss.lecam=0.05"]


# top-k G updates whose k halves every data epoch of 3 batches (96 avatars, batch 32): the
# stop at step 4 falls inside epoch 1, so k must come back from the resumed data position
TOPK = ["--config", "cgan_avatars", "loss.topk_nu=0.25", "loss.topk_gamma=0.5"]


@pytest.mark.parametrize("setup", [["--config", "wgan_gp_avatars", "g_every=2"], ADA, TOPK],
                         ids=["wgan_gp", "ada", "topk"])
def test_resume_equals_uninterrupted(avatar_dir, tmp_path, setup):
    """8 steps straight == 4 steps, stop, resume to 8: identical weights, EMA and optimizer
    (and ADA's probability, adjusted across the stop)."""
    common = [*setup, f"data.path={avatar_dir}", *TINY, "ckpt_every=4",
              *(["batch_size=32"] if setup is TOPK else [])]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_train([*common, "--run-dir", str(a), "steps=8"]).returncode == 0
    assert run_train([*common, "--run-dir", str(b), "steps=4"]).returncode == 0
    res = run_train([*common, "--run-dir", str(b), "--resume", "auto", "steps=8"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stdout + res.stderr
    ca, cb = latest_checkpoint(a), latest_checkpoint(b)
    assert ca.name == cb.name == "step_00000008"
    for f in ("g_ema.safetensors", "model.safetensors", "model_1.safetensors"):
        diff = states_equal(load_file(ca / f), load_file(cb / f))
        assert not diff, f"{f} differs after resume: {diff[:3]}"
    if setup is ADA:  # p moved, so the comparison above covered an adjustment after the stop
        d_state = load_file(ca / "model_1.safetensors")
        p = [v for k, v in d_state.items() if k.endswith(".p")]
        assert len(p) == 1 and float(p[0]) > 0
        lecam = [v for k, v in d_state.items() if k.endswith("lecam.ema")]
        assert len(lecam) == 1 and float(lecam[0][2]) == 8  # one update per D step
    if setup is TOPK:  # k per logged row (2 steps): 32 (epoch 0, not logged), 16, 16, 8
        for run in (a, b):
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            k = {r["step"]: r.get("G/topk") for r in rows if "step" in r}
            assert [k[s] for s in (2, 4, 6, 8)] == [None, 16, 16, 8], k
    opt_a = torch.load(ca / "optimizer.bin", weights_only=True)
    opt_b = torch.load(cb / "optimizer.bin", weights_only=True)
    for k, st in opt_a["state"].items():
        assert torch.equal(st["exp_avg"], opt_b["state"][k]["exp_avg"])


def test_nan_stops_and_keeps_last_good_checkpoint(avatar_dir, tmp_path, monkeypatch):
    from trainer.recipes.gan import GanRecipe

    original = GanRecipe.phases
    calls = {"D": 0}

    def poisoned(self):
        phases = original(self)
        d = phases[0]
        step = d.step

        def bad_step(batch):
            calls["D"] += 1
            loss, scalars = step(batch)
            return (loss * float("nan") if calls["D"] >= 6 else loss), scalars

        d.step = bad_step
        return phases

    monkeypatch.setattr(GanRecipe, "phases", poisoned)
    monkeypatch.setenv("TAGFACE_NO_BAR", "1")
    run = tmp_path / "nan"
    rc = train.main(["--config", "cgan_avatars", "--run-dir", str(run),
                     f"data.path={avatar_dir}", "steps=12", *TINY])
    assert rc == 3
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and ckpt.name == "step_00000004", "last good checkpoint kept"
    g = load_generator(run, ckpt)  # named: the default latest is refused after a NaN stop
    assert all(torch.isfinite(p).all() for p in g.model.parameters())


def test_dry_run_prints_config(avatar_dir, capsys):
    assert train.main(["--config", "cgan_avatars", "--dry-run", "steps=3"]) == 0
    out = capsys.readouterr().out
    assert "steps: 3" in out and "cond:" in out


def test_inert_option_is_warned_about(avatar_dir):
    """An option that refines a switched-off one trains as asked, with a warning naming both."""
    res = run_train(["--config", "cgan_avatars", "--dry-run", f"data.path={avatar_dir}",
                     "loss.lecam_decay=0.9"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert ("warning: loss.lecam_decay=0.9 has no effect without loss.lecam > 0"
            in res.stderr.splitlines())
    assert "lecam_decay: 0.9" in res.stdout


def test_bad_inputs_are_named(tmp_path, capsys):
    assert train.main(["--config", "cgan_avatars", "--run-dir", str(tmp_path / "r"),
                       "model.cond=magic"]) == 2
    assert "model.cond" in capsys.readouterr().err
    assert train.main(["--config", "nope"]) == 2
    assert "presets are" in capsys.readouterr().err
    res = run_train(["--config", "cgan_avatars", "--run-dir", str(tmp_path / "r2"),
                     f"data.path={tmp_path / 'missing'}", *TINY])
    assert res.returncode == 2
    assert "missing" in res.stdout + res.stderr
