"""The evaluation entry points on hand-built run folders (randomly initialised generators)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from trainer.config import load_config, to_yaml
from trainer.data import load_dataset
from trainer.data.vocab import save_vocab
from trainer.evaluate import evaluate_during_training
from trainer.evaluate.__main__ import main
from trainer.models import build_discriminator, build_generator
from trainer.runs import (
    EMA_FILE,
    META_FILE,
    RunError,
    checkpoint_name,
    load_discriminator,
    load_generator,
)

QUICK = ["--n", "16", "--k", "1", "--classifier-samples", "640", "--stargan-n", "4"]


def make_run(run: Path, preset: str, data: Path, overrides: list[str], step: int = 100) -> Path:
    """A run folder as trainer.runs describes it: config, vocab, one checkpoint, metrics."""
    cfg = load_config(preset, [f"data.path={data}", "data.size=32", *overrides])
    ds = load_dataset(data, size=32, attrs=cfg.data.attrs)
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(cfg))
    save_vocab(ds.vocab, run / "vocab.json")
    ckpt = run / "checkpoints" / checkpoint_name(step)
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    G = build_generator(cfg, ds.labels.shape[1])
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(ckpt / EMA_FILE))
    (ckpt / META_FILE).write_text(json.dumps({"step": step}))
    (run / "checkpoints" / "latest").write_text(ckpt.name)
    rows = [{"step": s, "D/loss": 1.0 / s, "G/loss": 0.5 + s / 400} for s in range(10, step + 1, 10)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


@pytest.fixture(scope="module")
def cgan_run(avatar_dir, tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "cgan", "cgan_avatars", avatar_dir,
                    ["model.g_ch=16", "model.d_ch=16"])


@pytest.mark.slow
def test_report_renders(cgan_run, tmp_path, capsys):
    assert main(["--run", str(cgan_run), *QUICK, "--cache-dir", str(tmp_path / "cache")]) == 0
    out = cgan_run / "eval"
    for name in ("metrics.json", "report.md", "samples.png", "spread.png", "parts.png",
                 "confusion_hair.png", "confusion_eyes.png"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["run"]["step"] == 100 and m["fid"]["n_fake"] == 16 and m["fid"]["resize"] == "clean"
    assert math.isfinite(m["fid"]["fid"]) and m["fid"]["fid"] > 50  # random G vs avatars
    acc = m["tag_accuracy"]
    assert acc["n"] == 120 and set(acc["per_group"]) == {"hair", "eyes"}
    assert sum(map(sum, acc["confusion"]["hair"])) == 120
    assert m["modes"]["joint"]["modes_total"] == 42 * 4 * 6
    assert set(m["classifier"]) == {"labels", "parts"}
    report = (out / "report.md").read_text()
    assert "16 generated vs 16 real images" in report and "PIL bicubic" in report
    assert "![confusion hair](confusion_hair.png)" in report
    assert "grain: mean abs Laplacian" in report
    assert m["summary"]["grain ratio"] == pytest.approx(
        m["spread"]["grain_fake"] / m["spread"]["grain_real"])
    assert m["spread"]["grain_fake"] > 0  # an untrained G is nothing but grain
    assert "FID" in capsys.readouterr().out


def test_compare(cgan_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text('{"step": 5, "D/loss": 2.0, "G/loss": 1.0}\n')
    assert main(["compare", str(cgan_run), str(other), "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert (tmp_path / "cmp" / "compare.png").is_file()
    assert "| run |" in md and "other" in md and "Not evaluated yet" in md


def test_bad_input_names_the_problem(cgan_run, tmp_path, capsys):
    assert main(["--run", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["--run", str(cgan_run), "--data", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["--run", str(cgan_run), "--n", "1"]) == 2
    assert main(["compare", str(tmp_path / "nope"), "--out", str(tmp_path / "c")]) == 2


@pytest.mark.slow
def test_palette_pick_is_an_evaluation_option(cgan_run, avatar_dir, tmp_path, capsys):
    """--palette-pick samples the same checkpoint with another pick; a run without a
    palette output refuses it, naming the option."""
    common = ["--run", str(cgan_run), *QUICK, "--no-fid", "--cache-dir", str(tmp_path / "cache")]
    grains = {}
    for pick in ("soft", "vote"):
        out = tmp_path / pick
        assert main([*common, "--palette-pick", pick, "--out", str(out)]) == 0
        m = json.loads((out / "metrics.json").read_text())
        assert m["options"]["palette_pick"] == pick
        grains[pick] = m["spread"]["grain_fake"]
    # an untrained G mixes its colours to a near-flat grey; voting paints one per pixel
    assert grains["vote"] > 10 * grains["soft"]
    rgb = make_run(tmp_path / "rgb", "cgan_avatars_rgb", avatar_dir,
                   ["model.g_ch=16", "model.d_ch=16"])
    assert main(["--run", str(rgb), *QUICK, "--no-fid", "--palette-pick", "hard"]) == 2
    assert "--palette-pick hard" in capsys.readouterr().err


def test_during_training_is_cheap_and_leaves_state(cgan_run, avatar_dir, tmp_path):
    loaded = load_generator(cgan_run)
    G = loaded.model.train()
    ds = load_dataset(avatar_dir, size=32)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    scores = evaluate_during_training(G, ds, loaded.vocab, 8, cache_dir=tmp_path,
                                      classifier_samples=640)
    assert set(scores) == {"acc_hair", "acc_eyes", "acc_joint", "fid8", "kid8",
                           "pixel_std_ratio"}
    assert all(isinstance(v, float) for v in scores.values())
    assert G.training, "G's mode is restored"
    assert torch.equal(before, torch.random.get_rng_state()), "global RNG untouched"


@pytest.mark.slow
def test_stargan_report(avatar_dir, tmp_path):
    run = make_run(tmp_path / "sg", "stargan_avatars", avatar_dir,
                   ["model.g_ch=8", "model.d_ch=8", "model.repeat_num=1", "model.d_repeat_num=3"])
    assert main(["--run", str(run), *QUICK, "--no-fid", "--cache-dir", str(tmp_path / "c")]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    per = m["stargan"]["per_domain"]
    assert set(per) == {"Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Short_Hair"}
    hair = per["Blond_Hair"]
    assert hair["n"] == 4 and 0 <= hair["target_accuracy"] <= 1
    assert 0 < hair["l1"] < 1 and hair["psnr"] > 0, "ground truth re-rendered from meta.jsonl"
    assert hair["psnr_changed"] > 0 and hair["psnr_kept"] > 0
    assert "PSNR changed / kept px" in (run / "eval" / "report.md").read_text()
    assert "l1" not in per["Eyeglasses"], "adding glasses has no single ground truth"
    assert (run / "eval" / "translations.png").is_file()
    # no discriminator file beside the generator: the report says nothing of D
    assert "discriminator" not in m["stargan"]
    # with D's weights (its domain head zeroed: every logit 0, so nothing is called positive)
    cfg = load_config("stargan_avatars", [f"data.path={avatar_dir}", "data.size=32",
                                          "model.g_ch=8", "model.d_ch=8", "model.repeat_num=1",
                                          "model.d_repeat_num=3"])
    D = build_discriminator(cfg, [5])
    state = {k: (torch.zeros_like(v) if k.startswith("conv2.") else v).contiguous()
             for k, v in D.state_dict().items()}
    ckpt = load_generator(run).checkpoint
    save_file(state, str(ckpt / "model_1.safetensors"))
    assert main(["--run", str(run), *QUICK, "--no-fid", "--cache-dir", str(tmp_path / "c")]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    seen = m["stargan"]["discriminator"]
    assert list(seen) == list(per)
    n = m["dataset"]["n"]
    for r in seen.values():
        assert r["n_with"] + r["n_without"] == n
        assert r["specificity"] == 1.0 and (r["recall"] == 0.0 or r["n_with"] == 0)
    assert "What D's domain head sees" in (run / "eval" / "report.md").read_text()
    # a D file that does not fit is refused by name, not loaded half
    save_file({"conv2.weight": torch.zeros(1)}, str(ckpt / "model_1.safetensors"))
    with pytest.raises(RunError, match="model_1.safetensors: weights do not fit"):
        load_discriminator(load_generator(run), 32)
