"""compare: what differs between runs, and one row of mean ± sd per setting over seeds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from trainer.config import load_config, to_yaml
from trainer.evaluate.__main__ import main
from trainer.evaluate.groups import differences, group_runs, mean_sd, run_settings


def fake_run(root: Path, name: str, overrides: list[str], fid: float, joint: float,
             step: int = 700, eval_dir: str = "eval", pick: str | None = None) -> Path:
    """A run folder with the resolved config and an evaluation's metrics.json (no weights:
    compare reads only what evaluate wrote)."""
    run = root / name
    run.mkdir(exist_ok=True)
    (run / "config.yaml").write_text(to_yaml(load_config("cgan_avatars", overrides)))
    ev = run / eval_dir
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({
        "run": {"dir": name, "step": step},
        "options": {"n": 1000, "resize": "clean", "seed": 0, "palette_pick": pick,
                    "cache_dir": str(root / name)},  # differs per run and must not count
        "fid": {"fid": fid, "n_fake": 1000, "n_real": 1000, "resize": "clean"},
        "summary": {"FID": fid, "acc joint": joint, "joint modes": 300},
    }))
    return run


def test_runs_that_differ_only_in_seed_are_one_row(tmp_path, capsys):
    fids = {"a0": 150.4, "a1": 133.1, "a2": 129.2, "b0": 130.0, "b1": 127.2}
    runs = [fake_run(tmp_path, "a0", [], fids["a0"], 0.40),
            fake_run(tmp_path, "b0", ["batch_size=8"], fids["b0"], 0.40, step=1270),
            fake_run(tmp_path, "a1", ["seed=1"], fids["a1"], 0.55),
            fake_run(tmp_path, "b1", ["batch_size=8", "seed=1"], fids["b1"], 0.50, step=1243),
            fake_run(tmp_path, "a2", ["seed=2"], fids["a2"], 0.39),
            fake_run(tmp_path, "c0", ["g_optim.lr=6e-4"], 141.6, 0.33)]
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    md = (out / "compare.md").read_text()
    res = json.loads((out / "compare.json").read_text())

    groups = res["groups"]
    assert [g["runs"] for g in groups] == [["a0 @700", "a1 @700", "a2 @700"],
                                           ["b0 @1270", "b1 @1243"], ["c0 @700"]]
    assert [g["seeds"] for g in groups] == [["0", "1", "2"], ["0", "1"], ["0"]]
    assert [g["changes"] for g in groups] == [[], ["batch_size=8"], ["g_optim.lr=0.0006"]]
    a = [fids[k] for k in ("a0", "a1", "a2")]
    st = groups[0]["stats"]["FID"]
    assert st["mean"] == pytest.approx(statistics.fmean(a))
    assert st["sd"] == pytest.approx(statistics.stdev(a))  # sample sd (n - 1)
    assert st["n"] == 3 and groups[2]["stats"]["FID"]["sd"] is None
    assert groups[1]["stats"]["step"]["mean"] == pytest.approx(1256.5)

    assert "## Over seeds" in md
    row = next(line for line in md.splitlines() if line.startswith("| batch_size=8 |"))
    assert "128.6 ± 2.0" in row and "0, 1" in row and "b0, b1" in row
    assert "| as a0 | 0, 1, 2 |" in md
    # the per-run table names what differs from the first run, seed included
    assert "| b1 @1243 | batch_size=8, seed=1 |" in md and "| a0 @700 | – |" in md
    assert (out / "seeds.png").is_file()


def test_an_evaluation_folder_stands_for_its_run(tmp_path):
    """Two evaluations of one checkpoint (another palette pick) compare; the option
    shows as what changed, and no over-seeds table appears without repeated seeds."""
    run = fake_run(tmp_path, "q", [], 150.4, 0.40)
    ev = run / "eval_vote"
    ev.mkdir()
    m = json.loads((run / "eval" / "metrics.json").read_text())
    m["options"]["palette_pick"], m["summary"]["FID"] = "vote", 131.0
    (ev / "metrics.json").write_text(json.dumps(m))
    out = tmp_path / "cmp"
    assert main(["compare", str(run), str(ev), "--out", str(out)]) == 0
    md = (out / "compare.md").read_text()
    assert "| q/eval_vote @700 | --palette-pick vote |" in md
    assert "Over seeds" not in md and not (out / "seeds.png").exists()


def test_differences_name_keys_as_the_command_line_does(tmp_path):
    base = {"seed": "0", "model.g_ch": "32", "data.attrs": "[]", "--palette-pick": "null"}
    other = {"seed": "1", "model.g_ch": "64", "data.attrs": '["Black_Hair", "Eyeglasses"]',
             "--palette-pick": '"vote"', "loss.r1": "1.0"}
    assert differences(other, base) == [
        "--palette-pick vote", "data.attrs=[Black_Hair,Eyeglasses]", "loss.r1=1.0",
        "model.g_ch=64", "seed=1"]
    assert differences(base, other, ignore=["seed"])[-2:] == ["loss.r1=(unset)",
                                                               "model.g_ch=32"]
    # a folder without config.yaml contributes only its evaluation options
    assert run_settings(tmp_path, {"options": {"n": 16, "cache_dir": "x"}}) == {"--n": "16"}


def test_groups_keep_the_order_given_and_mean_sd_is_the_sample_one():
    s = [{"seed": "0", "a": "1"}, {"seed": "0", "a": "2"}, {"seed": "5", "a": "1"}]
    groups = group_runs(s)
    assert [g.members for g in groups] == [[0, 2], [1]]
    assert groups[0].seeds == ["0", "5"] and groups[1].changes == ["a=2"]
    assert mean_sd([1.0, 2.0, 4.0]) == (pytest.approx(7 / 3), pytest.approx(1.527525, 1e-6))
    assert mean_sd([3.0]) == (3.0, None)


def test_unreadable_inputs_name_the_file(tmp_path, capsys):
    run = fake_run(tmp_path, "a", [], 150.0, 0.4)
    (run / "eval" / "metrics.json").write_text("{not json")
    assert main(["compare", str(run), "--out", str(tmp_path / "c")]) == 2
    assert "a/eval/metrics.json: not valid JSON" in capsys.readouterr().err
    (run / "eval" / "metrics.json").write_text("[]")
    assert main(["compare", str(run), "--out", str(tmp_path / "c")]) == 2
    assert "no 'summary' object" in capsys.readouterr().err
    b = fake_run(tmp_path, "b", [], 150.0, 0.4)
    (b / "config.yaml").write_text("model: [unclosed\n")
    assert main(["compare", str(b), "--out", str(tmp_path / "c")]) == 2
    assert "b/config.yaml: not a readable config" in capsys.readouterr().err


def test_no_dot_plot_without_a_headline_metric(tmp_path):
    runs = []
    for seed in (0, 1):
        run = fake_run(tmp_path, f"s{seed}", [f"seed={seed}"], 100.0, 0.5)
        m = json.loads((run / "eval" / "metrics.json").read_text())
        m["summary"] = {"custom score": 0.1 * (seed + 1)}
        (run / "eval" / "metrics.json").write_text(json.dumps(m))
        runs.append(str(run))
    out = tmp_path / "cmp"
    assert main(["compare", *runs, "--out", str(out)]) == 0
    md = (out / "compare.md").read_text()
    assert "## Over seeds" in md and "0.150 ± 0.071" in md
    assert "seeds.png" not in md and not (out / "seeds.png").exists()
