"""The embedded avatar dataset: layout, exact tags, re-rendering, determinism, CLI."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data import mlds_vocab, read_listing
from trainer.data.__main__ import main
from trainer.data.avatars import (
    ATTRIBUTION,
    AVATAR_ATTRS,
    EYE_RGB,
    EYE_STYLES,
    GLASSES,
    HAIR_RGB,
    HAIR_STYLES,
    avatar_attributes,
    generate_avatars,
    load_meta,
    render_avatar,
    rerender,
    sample_record,
    with_changes,
)
from trainer.data.vocab import MLDS_EYES, MLDS_HAIR


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)


def near(img: np.ndarray, hex_rgb: str, tol: int = 40) -> int:
    """Pixels within ``tol`` (sum of abs differences) of a colour."""
    rgb = np.array([int(hex_rgb[i:i + 2], 16) for i in (0, 2, 4)])
    return int((np.abs(img - rgb).sum(-1) < tol).sum())


def probe(size: int = 64, **parts) -> dict:
    """A plain record (no glasses/earrings/details) with some parts set."""
    r = sample_record(0, 0, size)
    return with_changes(r, glasses=None, earrings=None, details=None, **parts)


def test_layout(avatar_dir: Path):
    images = sorted((avatar_dir / "images").iterdir())
    assert len(images) == 96 and Image.open(images[0]).size == (32, 32)
    records = load_meta(avatar_dir)
    assert [r["id"] for r in records] == list(range(96))
    vocab = mlds_vocab()
    lines = (avatar_dir / "tags.csv").read_text().splitlines()
    assert lines == [f"{r['id']},{vocab.format(r['tags'])}" for r in records]
    attr = (avatar_dir / "list_attr.txt").read_text().splitlines()
    assert attr[0] == "96" and attr[1].split() == list(AVATAR_ATTRS)
    assert attr[2].split()[0] == "0.png"
    listing = read_listing(avatar_dir, attrs=AVATAR_ATTRS)
    want = [[v > 0 for v in avatar_attributes(r).values()] for r in records]
    assert listing.labels.astype(bool).tolist() == want
    readme = (avatar_dir / "README.md").read_text()
    assert ATTRIBUTION in readme and "CC BY 4.0" in readme and "Lisa Wischofsky" in readme


def test_attribute_mapping():
    r = with_changes(sample_record(0, 1, 32), hair_color="blonde", eye_color="aqua",
                     hair_style="short03", glasses="variant02", earrings=None)
    on = {k for k, v in avatar_attributes(r).items() if v == 1}
    assert on == {"Blond_Hair", "Aqua_Eyes", "Short_Hair", "Eyeglasses"}
    r = with_changes(r, hair_color="black", hair_style="long01", glasses=None,
                     earrings="variant01")
    on = {k for k, v in avatar_attributes(r).items() if v == 1}
    assert on == {"Black_Hair", "Aqua_Eyes", "Wearing_Earrings"}


def test_every_record_rerenders_to_the_same_bytes(avatar_dir: Path):
    for r in load_meta(avatar_dir)[:12]:
        assert render_avatar(r["options"], r["rasterizer"]) == (avatar_dir / r["file"]).read_bytes()
        assert rerender(r) == (avatar_dir / r["file"]).read_bytes()


def test_rerender_changes_only_the_hair_colour():
    r = probe(hair_style="long05", hair_color="blue")
    before, after = pixels(rerender(r)), pixels(rerender(r, hair_color="orange"))
    assert near(before, HAIR_RGB["blue"]) > 300 and near(after, HAIR_RGB["blue"]) == 0
    assert near(after, HAIR_RGB["orange"]) == near(before, HAIR_RGB["blue"])
    changed = (before != after).any(-1)
    assert changed.sum() < (np.abs(before - np.array([43, 89, 224])).sum(-1) < 200).sum() + 100
    new = with_changes(r, hair_color="orange", eye_color="red")
    assert new["tags"] == {"hair": "orange", "eyes": "red"} and r["tags"]["hair"] == "blue"
    assert new["options"]["hairColor"] == [HAIR_RGB["orange"]]
    assert new["options"]["eyesColor"] == [EYE_RGB["red"]]


@pytest.mark.parametrize("changes, message", [
    ({"hair_color": "teal"}, "hair_color='teal': expected one of orange"),
    ({"eye_color": "blonde"}, "eye_color='blonde'"),
    ({"glasses": "variant01"}, "glasses='variant01'"),  # sunglasses are never drawn
    ({"hat": "top"}, "cannot change 'hat'; changeable: hair_color"),
])
def test_with_changes_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        with_changes(sample_record(0, 0, 32), **changes)


def test_same_seed_same_bytes(tmp_path: Path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_avatars(a, 6, 24, seed=3, workers=1, progress=False)
    generate_avatars(b, 6, 24, seed=3, workers=2, progress=False)
    generate_avatars(c, 4, 24, seed=4, workers=1, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 6 + 4
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "images/0.png").read_bytes() != (c / "images/0.png").read_bytes()


def test_image_depends_only_on_seed_and_index(tmp_path: Path, avatar_dir: Path):
    generate_avatars(tmp_path / "few", 3, 32, seed=0, workers=1, progress=False)
    for i in range(3):
        assert (tmp_path / "few" / f"images/{i}.png").read_bytes() == \
            (avatar_dir / f"images/{i}.png").read_bytes()


def test_sampling_is_uniform_and_never_hides_a_tag():
    records = [sample_record(0, i, 32) for i in range(1200)]
    hair = [r["tags"]["hair"] for r in records]
    eyes = [r["tags"]["eyes"] for r in records]
    assert set(hair) == set(MLDS_HAIR) and set(eyes) == set(MLDS_EYES)
    assert min(hair.count(t) for t in MLDS_HAIR) > 1200 / 12 * 0.6
    assert min(eyes.count(t) for t in MLDS_EYES) > 1200 / 10 * 0.6
    parts = [r["parts"] for r in records]
    assert {p["eyes_style"] for p in parts} == set(EYE_STYLES)
    assert {p["hair_style"] for p in parts} == set(HAIR_STYLES)
    assert {p["glasses"] for p in parts} == {None, *GLASSES}
    assert not {"short12", "short13", "short19"} & set(HAIR_STYLES)
    assert 0.1 < sum(p["glasses"] is not None for p in parts) / 1200 < 0.3


def test_tag_colours_are_far_apart():
    def dist(a: str, b: str) -> float:
        return float(np.linalg.norm([int(a[i:i + 2], 16) - int(b[i:i + 2], 16) for i in (0, 2, 4)]))
    for table in (HAIR_RGB, EYE_RGB):
        assert min(dist(a, b) for a, b in itertools.combinations(table.values(), 2)) > 80


def colour_pixels(options: dict, key: str, other: str) -> int:
    """Pixels that change when the colour option ``key`` changes: how visible it is."""
    return int((pixels(render_avatar(options)) != pixels(render_avatar({**options, key: [other]})))
               .any(-1).sum())


def test_only_eye_styles_that_show_the_eye_colour():
    """At 64 px the kept eye styles show >= 23 iris pixels, the excluded ones <= 20
    (closed, winking, pinpoint), sunglasses 0."""
    base = probe(eye_color="green")["options"]
    for i in range(1, 27):
        style = f"variant{i:02d}"
        n = colour_pixels({**base, "eyesVariant": [style]}, "eyesColor", EYE_RGB["red"])
        assert (n >= 23) if style in EYE_STYLES else (n <= 20), (style, n)
    shades = {**base, "glassesProbability": 100, "glassesVariant": ["variant01"]}
    assert colour_pixels(shades, "eyesColor", EYE_RGB["red"]) == 0
    for glasses in GLASSES:
        clear = {**base, "glassesProbability": 100, "glassesVariant": [glasses]}
        assert colour_pixels(clear, "eyesColor", EYE_RGB["red"]) >= 23


def test_only_hair_styles_that_show_the_hair_colour():
    """At 64 px the kept hair styles show >= 250 hair pixels; tufts short12/13 < 200, bald 0."""
    base = probe(hair_color="purple")["options"]
    for style in [f"long{i:02d}" for i in range(1, 27)] + [f"short{i:02d}" for i in range(1, 20)]:
        n = colour_pixels({**base, "hairVariant": [style]}, "hairColor", HAIR_RGB["orange"])
        assert (n >= 250) if style in HAIR_STYLES else (n < 200), (style, n)


def test_cairosvg_rasterizer_also_works():
    r = probe(size=32)
    png = render_avatar(r["options"], "cairosvg")
    assert png == render_avatar(r["options"], "cairosvg") and pixels(png).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="unknown rasterizer 'skia'"):
        render_avatar(r["options"], "skia")


def test_cli_avatars_and_overwrite(tmp_path: Path, capsys):
    out = tmp_path / "cli"
    argv = ["avatars", "--out", str(out), "--count", "4", "--size", "16", "--workers", "1"]
    assert main(argv) == 0
    assert "rendered 4 avatars at 16 px" in capsys.readouterr().out
    assert len(json.loads((out / "meta.jsonl").read_text().splitlines()[3])["tags"]) == 2
    assert main(argv) == 2
    assert "not empty; choose a new --out or pass --overwrite" in capsys.readouterr().err
    assert main([*argv[:4], "2", *argv[5:], "--overwrite"]) == 0
    assert len(list((out / "images").iterdir())) == 2
    (out / "mine.txt").write_text("keep me")
    assert main([*argv, "--overwrite"]) == 2 and (out / "mine.txt").exists()


def test_cli_preview(avatar_dir: Path, tmp_path: Path):
    assert main(["preview", str(avatar_dir), "--out", str(tmp_path / "g.png"), "--n", "8"]) == 0
    assert Image.open(tmp_path / "g.png").size[0] > 200


def test_cli_info(avatar_dir: Path, capsys):
    """The real entry point once (a subprocess); the error path in-process."""
    res = subprocess.run([sys.executable, "-m", "trainer.data", "info", str(avatar_dir)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "format avatars, 96 images that decode, 22 label columns" in res.stdout
    assert "hair (12): orange" in res.stdout and "eyes (10): black" in res.stdout
    assert main(["info", str(avatar_dir), "--attrs", "Blond_Hair", "Eyeglasses"]) == 0
    assert "domains (2): Blond_Hair" in capsys.readouterr().out
    assert main(["info", str(avatar_dir), "--format", "mlds"]) == 2
    assert "tags_clean.csv: file not found" in capsys.readouterr().err
