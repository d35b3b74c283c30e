"""The benchmarks run end to end in --tiny mode and write complete JSON (no timing asserts).

Each command runs as a subprocess, as a user types it; the numbers only have to exist and
be positive and finite. Together these take about a minute on a 2-core machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
MACHINE_KEYS = {"cpu", "cores", "cpu_flags", "native_bf16", "torch", "torch_threads", "gpus"}

pytestmark = pytest.mark.slow


def run_tiny(module: str, tmp_path: Path, *args: str, timeout: float = 300) -> dict[str, Any]:
    """``python -m benchmarks.MODULE --tiny --json OUT``; its JSON, after checking stdout."""
    out = tmp_path / f"{module}.json"
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "TAGFACE_NO_BAR": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    res = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--tiny", "--json",
                          str(out), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    assert "Machine: " in res.stdout and "|---" in res.stdout, res.stdout  # a Markdown table
    report = json.loads(out.read_text())
    assert report["benchmark"] == module
    assert MACHINE_KEYS <= set(report["machine"]), report["machine"]
    assert report["settings"]["tiny"] is True
    return report


def positive(row: dict[str, Any], *keys: str) -> None:
    for k in keys:
        assert isinstance(row[k], (int, float)) and math.isfinite(row[k]) and row[k] > 0, (k, row)


def test_train_throughput_tiny(tmp_path: Path) -> None:
    report = run_tiny("train_throughput", tmp_path)
    positive(report["peak_gflops"], "fp32", "bf16")
    rows = report["results"]
    for preset, arch in (("dcgan_avatars", "DCGAN"), ("cgan_avatars", "cGAN")):
        mine = {r["variant"]: r for r in rows if r["preset"] == preset}
        assert {"reference", "project", "reference + cache", "reference + fused",
                "project + bf16"} <= set(mine), sorted(mine)
        assert all(r["arch"] == arch for r in mine.values())
        for r in mine.values():
            positive(r, "img_per_s", "step_ms_median", "vs_reference", "vs_project",
                     "gflop_per_step", "gflop_per_s", "pct_of_peak")
        assert mine["reference"]["vs_reference"] == 1.0 and mine["project"]["vs_project"] == 1.0
    levers = {(x["preset"], x["loop"], tuple(x["levers"])) for x in report["levers"]}
    assert ("dcgan_avatars", "reference", ("channels_last",)) in levers
    assert ("cgan_avatars", "project", ("bf16",)) in levers
    for x in report["levers"]:
        positive(x, "gain")
        assert isinstance(x["wins"], bool)
    for name in ("dcgan_vs_reference", "cgan_vs_dcgan"):
        positive(report["goals"][name], "value", "target")
        assert isinstance(report["goals"][name]["met"], bool)


@pytest.mark.distributed
def test_scaling_tiny(tmp_path: Path) -> None:
    report = run_tiny("scaling", tmp_path, "--processes", "1", "2", "--device", "cpu")
    rows = {r["processes"]: r for r in report["results"]}
    assert set(rows) == {1, 2}
    for n, r in rows.items():
        positive(r, "img_per_s", "step_ms_median", "speedup", "efficiency",
                 "batch_per_process", "global_batch", "threads_per_process")
        assert r["world_size"] == n and r["scaling"] == "weak"
    assert "MULTI_CPU" in rows[2]["distributed_type"], rows[2]  # really two processes
    assert rows[2]["global_batch"] == 2 * rows[1]["global_batch"]


def test_inference_tiny(tmp_path: Path) -> None:
    report = run_tiny("inference", tmp_path)
    rows = report["results"]
    for model in ("dcgan_avatars", "cgan_avatars", "stargan_avatars"):
        for batch in (1, 4):
            got = {(r["runtime"], r["precision"]): r for r in rows
                   if r["model"] == model and r["batch"] == batch}
            assert {("torch", "fp32"), ("ort", "fp32")} <= set(got), (model, batch, sorted(got))
            for r in got.values():
                positive(r, "ms_per_image", "ms_per_call", "speedup_vs_torch")
            positive(got[("ort", "fp32")], "psnr_db")
            assert got[("ort", "fp32")]["quality_passed"] is True
    demo = report["demo"]
    assert demo["model"] == "cgan_avatars"
    positive(demo["counts"]["1"], "requests", "p50_ms", "p95_ms", "http_p50_ms", "http_p95_ms")
    for name in ("cgan_ort_vs_torch_batch1", "demo_generate_p50_ms"):
        positive(report["goals"][name], "value", "target")
        assert isinstance(report["goals"][name]["met"], bool)


def test_quality_vs_time_tiny(tmp_path: Path) -> None:
    figure = tmp_path / "quality.png"
    report = run_tiny("quality_vs_time", tmp_path, "--figure", str(figure), timeout=600)
    rows = report["results"]
    assert [r["minutes"] for r in rows] == [0.03, 0.06]
    assert rows[0]["step"] < rows[1]["step"]  # the second budget continued the same run
    for r in rows:
        positive(r, "fid", "fid_floor", "step")
        assert 0.0 <= r["acc_joint"] <= 1.0
    assert figure.is_file() and figure.stat().st_size > 1000


def test_model_costs_tiny(tmp_path: Path) -> None:
    out = tmp_path / "costs.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.model_costs", "--tiny", "--json",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["trunk"]: r for r in json.loads(out.read_text())["results"]}
    for r in rows.values():
        positive(r, "g_params_m", "d_params_m", "g_gflop", "d_gflop")
    # resize-conv upsampling runs as a folded 4x4 transposed conv (NearestConv2x): the
    # FLOPs of the transposed convs it replaces, not the 2.25x of upsample + 3x3 conv
    assert (rows["dcgan + nearest, width 32 (g_upsample=nearest)"]["g_gflop"]
            == pytest.approx(rows["dcgan, width 32 (cgan_avatars_rgb, cgan_avatars_dcgan)"]["g_gflop"]))
    # the palette layer writes 16 logits per pixel instead of 3 colours
    assert (rows["dcgan + palette 16, nearest, width 32 (cgan_avatars)"]["g_gflop"]
            > rows["dcgan, width 32 (cgan_avatars_rgb, cgan_avatars_dcgan)"]["g_gflop"])
    # and the flagship's palette G costs what the transposed-conv palette G costs
    assert (rows["dcgan + palette 16, nearest, width 32 (cgan_avatars)"]["g_gflop"]
            == pytest.approx(rows["dcgan + palette 16, nearest_last, width 32 (cgan_avatars_nearest_last)"]["g_gflop"]))


def test_fid_sensitivity_tiny(tmp_path: Path) -> None:
    report = run_tiny("fid_sensitivity", tmp_path)
    rows = {r["degradation"]: r for r in report["results"]}
    assert {"none (real vs real)", "3x3 binomial blur", "noise 4/255", "2x down and up",
            "16 colours per image"} <= set(rows)
    for r in rows.values():
        assert math.isfinite(r["fid"]) and r["fid"] >= 0 and r["n_b"] == 16
    assert rows["none (real vs real)"]["grain_ratio"] == 1.0
    assert rows["3x3 binomial blur"]["grain_ratio"] < 1 < rows["noise 8/255"]["grain_ratio"]
    assert rows["noise 2/255"]["grain_ratio"] < rows["noise 8/255"]["grain_ratio"]
    assert {"2x down, up as 2x2 blocks", "outlines painted over"} <= set(rows)


def test_fid_sensitivity_only_picks_rows_and_names_them_when_none_matches(
        tmp_path: Path) -> None:
    report = run_tiny("fid_sensitivity", tmp_path, "--only", "outlines", "--only", "blur")
    assert [r["degradation"] for r in report["results"]] == ["3x3 binomial blur",
                                                             "outlines painted over"]
    res = subprocess.run([sys.executable, "-m", "benchmarks.fid_sensitivity", "--tiny",
                          "--only", "sharpen"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0
    assert "--only ['sharpen']: no row matches" in res.stderr and "noise 2/255" in res.stderr


def test_no_outlines_paints_thin_dark_lines_and_keeps_dark_regions() -> None:
    import torch

    from benchmarks.fid_sensitivity import no_outlines

    x = torch.full((1, 3, 12, 12), 200, dtype=torch.uint8)
    x[0, :, :6, 5] = 28  # a 1-pixel outline
    x[0, :, 2, 8:10] = 28  # a 2-pixel dot (thin: painted too)
    x[0, :, 8:12, 0:4] = 28  # a 4x4 dark region (black hair): kept
    x[0, 0, 0:6, 4] = 100  # the line's left neighbours are reddish-grey
    y = no_outlines(x, torch.Generator())
    assert (y[0, :, 8:12, 0:4] == 28).all()
    assert (y[0, :, 2, 8:10] == 200).all()
    line = y[0, :, :6, 5].float()
    assert (line > 28).all()  # painted from its sides: the mean of 200 and the reddish 100
    assert (line[0] < 200).all() and (line[1:] == 200).all()
    assert (y[0, :, 6:, 5:] == 200).all()  # nothing else moved


def test_nearest_down_up_draws_each_2x2_block_in_its_mean() -> None:
    import torch

    from benchmarks.fid_sensitivity import nearest_down_up

    x = torch.tensor([[10, 30, 0, 0], [50, 70, 0, 4], [1, 1, 2, 2], [1, 1, 2, 2]],
                     dtype=torch.uint8).expand(1, 3, 4, 4)
    y = nearest_down_up(x, torch.Generator())
    assert y[0, 0].tolist() == [[40, 40, 1, 1], [40, 40, 1, 1], [1, 1, 2, 2], [1, 1, 2, 2]]


def test_palette_picks_tiny(tmp_path: Path) -> None:
    report = run_tiny("palette_picks", tmp_path)
    rows = {r["pick"]: r for r in report["results"]}
    assert set(rows) == {"soft", "hard", "vote", "vote_lines", "mix_lines"}
    for r in rows.values():
        assert math.isfinite(r["fid"]) and r["fid"] >= 0 and r["n"] == 16
    # an untrained G mixes its colours to a near-flat grey; a pick paints one per pixel
    assert rows["soft"]["grain_ratio"] < rows["hard"]["grain_ratio"]
    assert rows["vote"]["grain_ratio"] < rows["hard"]["grain_ratio"]  # the vote removes specks


def _part_heads() -> list:
    from trainer.data.avatars import PART_CHOICES
    from trainer.evaluate.classifier import AVATAR_PARTS, Head

    return [Head(p, tuple("none" if c is None else str(c) for c in PART_CHOICES[p]), "part")
            for p in AVATAR_PARTS]


def _scored_run(run: Path, pred_fake, pred_real) -> Path:
    """A run folder whose eval/metrics.json holds what trainer.evaluate writes for these
    part predictions ([N, 6] class indices, AVATAR_PARTS order)."""
    from trainer.evaluate.diversity import part_modes

    (run / "eval").mkdir(parents=True)
    modes = part_modes(_part_heads(), pred_fake, pred_real)
    (run / "eval" / "metrics.json").write_text(json.dumps({"modes": modes}))
    return run


def test_part_frequencies_map_the_judges_classes_to_the_renderers_parts(
        tmp_path: Path) -> None:
    import torch

    from benchmarks.fid_sensitivity import part_changes, part_frequencies, run_label
    from trainer.data.avatars import MOUTHS, SKINS

    pred_fake = torch.zeros(8, 6, dtype=torch.long)  # class 0 everywhere: glasses "none"
    pred_fake[:, 1] = 7  # mouth variant08
    pred_fake[:6, 3] = 1  # skin: 6 x the second tone, 2 x the first
    pred_real = torch.arange(8)[:, None].repeat(1, 6) % torch.tensor([42, 30, 15, 4, 5, 6])
    run = _scored_run(tmp_path / "R", pred_fake, pred_real)
    fake, real = part_frequencies(run)
    assert list(fake) == ["hair_style", "mouth", "eyebrows", "skin", "glasses", "background"]
    assert fake["skin"] == [2, 6, 0, 0] and real["skin"] == [2, 2, 2, 2]
    changes = part_changes(4000, fake, ["mouth", "skin", "glasses"], seed=0)
    assert {c["mouth"] for c in changes} == {MOUTHS[7]}  # zero frequency: never drawn
    assert {c["glasses"] for c in changes} == {None}  # the judge's "none" is no glasses
    second = sum(c["skin"] == SKINS[1] for c in changes) / len(changes)
    assert abs(second - 0.75) < 0.03 and {c["skin"] for c in changes} == set(SKINS[:2])
    assert part_changes(5, fake, ["skin"], seed=1) == part_changes(5, fake, ["skin"], seed=1)
    assert run_label(run) == "R" and run_label(run / "eval" / "metrics.json") == "R"


def test_part_rows_put_a_control_before_the_parts_and_the_judges_own_reading_after() -> None:
    from benchmarks.fid_sensitivity import part_rows

    fake, real = {"mouth": [1] * 30, "skin": [0, 0, 0, 1]}, {"mouth": [2] * 30, "skin": [1] * 4}
    rows = part_rows(fake, real, "parts as in R")
    assert list(rows) == ["parts as in R: none (rendered again)", "parts as in R: mouth only",
                          "parts as in R: skin only", "parts as in R: all parts",
                          "parts as in R: all parts as the judge reads real images"]
    assert rows["parts as in R: none (rendered again)"] == ([], {})
    assert rows["parts as in R: skin only"] == (["skin"], fake)
    assert rows["parts as in R: all parts as the judge reads real images"] == (
        ["mouth", "skin"], real)


def test_part_frequencies_name_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    from benchmarks.fid_sensitivity import part_frequencies

    with pytest.raises(SystemExit, match="no such run folder or file"):
        part_frequencies(tmp_path / "typo")
    (tmp_path / "R").mkdir()
    with pytest.raises(SystemExit, match="score the run first"):
        part_frequencies(tmp_path / "R")
    bad = tmp_path / "metrics.json"
    for text, message in [
            ("{not json", "cannot read .*metrics.json as JSON"),
            (json.dumps({"fid": {"fid": 1.0}}), "has no part histograms"),
            (json.dumps([1, 2]), "has no part histograms"),
            (json.dumps({"modes": {"parts": {"skin": {"hist_fake": [1, 2, 3]}}}}),
             r"modes.parts.skin.hist_fake should be 4 counts >= 0"),
            (json.dumps({"modes": {"parts": {"skin": {"hist_fake": [1, -2, 3, 4]}}}}),
             r"modes.parts.skin.hist_fake should be 4 counts >= 0"),
            (json.dumps({"modes": {"parts": {"skin": {"hist_fake": [0, 0, 0, 0]}}}}),
             r"modes.parts.skin.hist_fake is all zero")]:
        bad.write_text(text)
        with pytest.raises(SystemExit, match=message):
            part_frequencies(bad)


def test_ground_truth_draws_each_avatar_with_its_own_change(tmp_path: Path) -> None:
    import io

    import torch

    from benchmarks.common import tiny_avatars
    from trainer.data import load_dataset
    from trainer.data.avatars import MOUTHS, rerender
    from trainer.data.transforms import load_image
    from trainer.evaluate.classifier import avatar_records
    from trainer.evaluate.stargan_metrics import ground_truth

    ds = load_dataset(tiny_avatars(tmp_path / "avatars", 6, 32), size=32)
    records = [avatar_records(ds)[i] for i in (4, 1, 3)]
    same = ground_truth(records, [{}, {}, {}], 32)
    assert torch.equal(same, ds.images[torch.tensor([4, 1, 3])])  # the data's own pixels
    changes = [{"mouth": MOUTHS[11]}, {}, {"mouth": MOUTHS[2], "glasses": None}]
    x = ground_truth(records, changes, 32)
    for row, r, c in zip(x, records, changes, strict=True):
        assert torch.equal(row, torch.from_numpy(load_image(io.BytesIO(rerender(r, **c)), 32)))
    assert torch.equal(x[1], same[1])
    with pytest.raises(ValueError, match="2 changes for 3 avatars"):
        ground_truth(records, [{}, {}], 32)


def test_fid_sensitivity_parts_of_a_run_tiny(tmp_path: Path) -> None:
    import torch

    pred = torch.zeros(16, 6, dtype=torch.long)
    pred[:, 3] = 3  # every face the darkest skin
    run = _scored_run(tmp_path / "R", pred, torch.arange(16)[:, None].repeat(1, 6) % 4)
    report = run_tiny("fid_sensitivity", tmp_path, "--parts-of", str(run),
                      "--only", "none", "--only", "skin")
    assert report["settings"]["parts_of"] == str(run)
    rows = {r["degradation"]: r for r in report["results"]}
    assert list(rows) == ["none (real vs real)", "parts as in R: none (rendered again)",
                          "parts as in R: skin only"]
    for r in rows.values():
        assert math.isfinite(r["fid"]) and r["fid"] >= 0 and r["n_b"] == 16
    # drawn again unchanged, sample B is the data's own pixels: the same FID to the bit
    assert rows["parts as in R: none (rendered again)"]["fid"] == rows["none (real vs real)"]["fid"]
    assert rows["parts as in R: skin only"]["fid"] != rows["none (real vs real)"]["fid"]
