"""Every dataset format on tiny fixture folders written here, and every error path."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.data import (
    DataError,
    DataWarning,
    Domains,
    Vocab,
    detect_format,
    load_dataset,
    load_image,
    read_listing,
    to_model_input,
)
from trainer.data.avatars import AVATAR_ATTRS


def colour(i: int) -> tuple[int, int, int]:
    """A distinct solid colour per image, so rows can be traced back to files."""
    return (20 * i) % 256, 255 - (20 * i) % 256, 100


def solid(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)
    return path


def first_pixels(ds) -> list[tuple[int, ...]]:
    return [tuple(ds.images[i, :, 0, 0].tolist()) for i in range(len(ds))]


def load(path: Path, tmp_path: Path, **kw):
    return load_dataset(path, cache_dir=tmp_path / "cache", size=8, **kw)


# -- MLDS -------------------------------------------------------------------------
MLDS_LINES = [
    "0,blonde hair:10\tlong hair:5\tblue eyes:3",  # kept
    "1,blonde hair:2\tred hair:10\tblue eyes:3",  # two hair colours: strict drops
    "2,long hair:5\tblue eyes:3",  # no hair colour: dropped
    "3,silver hair:4\tred eyes:2",  # unknown colour: dropped
    "4,",  # no tags: dropped
    "5,aqua hair:1\tgreen eyes:1\t",  # trailing tab
]


@pytest.fixture
def mlds(tmp_path) -> Path:
    root = tmp_path / "mlds"
    for i in range(6):
        solid(root / "faces" / f"{i}.png", colour(i))
    (root / "tags_clean.csv").write_text("\n".join(MLDS_LINES) + "\n")
    return root


def test_mlds_strict(mlds, tmp_path):
    assert detect_format(mlds) == "mlds"
    ds = load(mlds, tmp_path)
    assert ds.format == "mlds" and len(ds) == 2 and ds.vocab == Vocab.from_dict(ds.vocab.to_dict())
    assert [ds.vocab.decode(v) for v in ds.labels] == [{"hair": "blonde", "eyes": "blue"},
                                                      {"hair": "aqua", "eyes": "green"}]
    assert first_pixels(ds) == [colour(0), colour(5)]
    assert "kept 2 of 6" in read_listing(mlds).notes[0]


def test_mlds_loose_takes_most_counted(mlds, tmp_path):
    ds = load(mlds, tmp_path, mlds_strict=False)
    assert [ds.vocab.decode(v)["hair"] for v in ds.labels] == ["blonde", "red", "aqua"]


@pytest.mark.parametrize("line, message", [
    ("6,blonde hair\tblue eyes:3", r"tags_clean.csv:7: expected 'tag:count', got 'blonde hair'"),
    ("6,blonde hair:x\tblue eyes:3", r"tags_clean.csv:7: count of 'blonde hair' is not an integer"),
    ("6 blonde hair:1", r"tags_clean.csv:7: expected 'id,tag:count"),
])
def test_mlds_malformed_line(mlds, line, message):
    with (mlds / "tags_clean.csv").open("a") as f:
        f.write(line + "\n")
    with pytest.raises(DataError, match=message):
        read_listing(mlds)


# -- ADL extra_data ------------------------------------------------------------------
@pytest.fixture
def adl(tmp_path) -> Path:
    root = tmp_path / "extra_data"
    tags = ["blonde hair aqua eyes", "blue hair red eyes", "black hair black eyes"]
    for i in range(3):
        solid(root / "images" / f"{i}.jpg", colour(i))
    (root / "tags.csv").write_text("".join(f"{i},{t}\n" for i, t in enumerate(tags)))
    return root


def test_adl(adl, tmp_path):
    assert detect_format(adl) == "adl"
    ds = load(adl, tmp_path)
    assert ds.format == "adl" and ds.labels.shape == (3, 22) and ds.images.shape == (3, 3, 8, 8)
    assert ds.vocab.format(ds.vocab.decode(ds.labels[1])) == "blue hair red eyes"
    for got, want in zip(first_pixels(ds), map(colour, range(3)), strict=True):
        assert np.abs(np.subtract(got, want)).max() <= 3  # JPEG


@pytest.mark.parametrize("line, message", [
    ("3,teal hair red eyes", r"tags.csv:4: unknown hair tag 'teal'.*valid hair tags are"),
    ("3,blue hair", r"tags.csv:4: .*gives no eyes tag"),
    ("3 blue hair red eyes", r"tags.csv:4: expected 'id,<tags>'"),
])
def test_adl_malformed_line(adl, line, message):
    with (adl / "tags.csv").open("a") as f:
        f.write(line + "\n")
    with pytest.raises(DataError, match=message):
        read_listing(adl)


def test_tag_formats_reject_attrs(adl):
    with pytest.raises(DataError, match="the adl format has tags, not attributes"):
        read_listing(adl, attrs=["Male"])


# -- ADL 2019 Cartoon Set subset ---------------------------------------------------------
CARTOON_NAMES = ("hair_orange hair_white hair_aqua hair_gray hair_green hair_red "
                 "eye_black eye_orange eye_pink eye_yellow face_light face_medium face_dark "
                 "with_glasses without_glasses")


def cartoon_row(file: str, hair: int, eye: int, face: int, glasses: int) -> str:
    bits = [0] * 15
    bits[hair], bits[6 + eye], bits[10 + face], bits[13 + glasses] = 1, 1, 1, 1
    return f"{file} " + " ".join(map(str, bits))


@pytest.fixture
def cartoon(tmp_path) -> Path:
    root = tmp_path / "selected_cartoonset100k"
    rows = [cartoon_row("cs1.png", 2, 1, 0, 1), cartoon_row("cs2.png", 5, 3, 2, 0)]
    for i in (1, 2):
        solid(root / "images" / f"cs{i}.png", colour(i))
    (root / "cartoon_attr.txt").write_text(f"2\n{CARTOON_NAMES}\n" + "\n".join(rows) + "\n")
    return root


def test_cartoon(cartoon, tmp_path):
    assert detect_format(cartoon) == "cartoon"
    ds = load(cartoon, tmp_path)
    v = ds.vocab
    assert v.group_names == ["hair", "eyes", "face", "glasses"] and v.group_sizes == [6, 4, 3, 2]
    assert v.decode(ds.labels[0]) == {"hair": "aqua", "eyes": "orange", "face": "light",
                                      "glasses": "without"}
    assert v.parse("red hair yellow eyes dark face with glasses") == v.decode(ds.labels[1])
    assert first_pixels(ds) == [colour(1), colour(2)]


@pytest.mark.parametrize("text, message", [
    (f"1\n{CARTOON_NAMES}\ncs1.png " + "0 " * 15 + "\n", r"cartoon_attr.txt:3: the hair columns must be one-hot"),
    (f"1\n{CARTOON_NAMES}\ncs1.png 1 0\n", r"cartoon_attr.txt:3: expected a file name and 15 values, got 2"),
    (f"3\n{CARTOON_NAMES}\n{cartoon_row('cs1.png', 0, 0, 0, 0)}\n", r"cartoon_attr.txt:1: says 3 image\(s\) but the file lists 1"),
    (f"x\n{CARTOON_NAMES}\n", r"cartoon_attr.txt:1: expected the number of images"),
    (f"0\n{CARTOON_NAMES.replace('face_dark', 'nose_big')}\n", r"cartoon_attr.txt:2: cannot tell the group of column 'nose_big'"),
    (f"1\n{CARTOON_NAMES}\ncs1.png " + "1 " * 14 + "x\n", r"cartoon_attr.txt:3: values must be 1, 0 or -1"),
])
def test_cartoon_errors(cartoon, text, message):
    (cartoon / "cartoon_attr.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_listing(cartoon)


# -- CelebA ---------------------------------------------------------------------------
CELEBA_NAMES = "5_o_Clock_Shadow Black_Hair Blond_Hair Brown_Hair Gray_Hair Male Young"


@pytest.fixture
def celeba(tmp_path) -> Path:
    root = tmp_path / "celeba"
    for i in range(3):  # 178x218 like img_align_celeba: red bands above and below the crop
        img = np.zeros((218, 178, 3), np.uint8)
        img[:] = (255, 0, 0)
        img[20:198] = colour(i)
        (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "img_align_celeba" / f"{i + 1:06d}.png")
    rows = ["000001.png -1  1 -1 -1 -1  1  1", "000002.png  1 -1  1 -1 -1 -1  1",
            "000003.png -1 -1 -1  1 -1  1 -1"]
    (root / "list_attr_celeba.txt").write_text(f"3\n{CELEBA_NAMES} \n" + "\n".join(rows) + "\n")
    return root


def test_celeba_default_attrs_and_crop(celeba, tmp_path):
    assert detect_format(celeba) == "celeba"
    ds = load(celeba, tmp_path)
    assert ds.vocab == Domains(("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"),
                               (("Black_Hair", "Blond_Hair", "Brown_Hair"),))
    assert ds.labels.tolist() == [[1, 0, 0, 1, 1], [0, 1, 0, 0, 1], [0, 0, 1, 1, 0]]
    assert read_listing(celeba).crop == 178
    # the red bands are cropped away: every pixel is the face colour
    for i in range(3):
        assert (ds.images[i].permute(1, 2, 0).reshape(-1, 3) == torch.tensor(colour(i))).all()


def test_celeba_selected_attrs(celeba, tmp_path):
    ds = load(celeba, tmp_path, attrs=["Gray_Hair", "Male", "Black_Hair"])
    assert ds.vocab.names == ("Gray_Hair", "Male", "Black_Hair")
    assert ds.vocab.exclusive == (("Gray_Hair", "Black_Hair"),)
    assert ds.labels[:, 1].tolist() == [1, 0, 1]


@pytest.mark.parametrize("rows, attrs, message", [
    ("000001.png -1 1 -1 -1 -1 1 2", (), r"list_attr_celeba.txt:3: values must be 1, 0 or -1"),
    ("000001.png -1 1", (), r"list_attr_celeba.txt:3: expected a file name and 7 values, got 2"),
    ("000001.png -1 1 -1 -1 -1 1 1", ("Smiling",), r"list_attr_celeba.txt:2: no attribute 'Smiling'; attributes are 5_o_Clock"),
])
def test_celeba_errors(celeba, rows, attrs, message):
    (celeba / "list_attr_celeba.txt").write_text(f"1\n{CELEBA_NAMES}\n{rows}\n")
    with pytest.raises(DataError, match=message):
        read_listing(celeba, attrs=attrs)


def test_celeba_without_image_folder(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    (root / "list_attr_celeba.txt").write_text(f"0\n{CELEBA_NAMES}\n")
    with pytest.raises(DataError, match="no image folder; looked for images/, img_align_celeba/"):
        read_listing(root)


# -- Google Cartoon Set ------------------------------------------------------------------
def cartoonset_csv(hair: int, eye: int, face: int = 0, glasses: int = 11) -> str:
    return (f'"eye_angle", 0, 3\n"hair_color", {hair}, 10\n"eye_color", {eye}, 5\n'
            f'"face_color", {face}, 11\n"glasses", {glasses}, 12\n')


@pytest.fixture
def cartoonset(tmp_path) -> Path:
    root = tmp_path / "cartoonset10k"
    for i, (hair, eye) in enumerate([(3, 1), (9, 4)]):
        solid(root / f"cs{i}.png", colour(i))
        (root / f"cs{i}.csv").write_text(cartoonset_csv(hair, eye))
    return root


def test_cartoonset(cartoonset, tmp_path):
    assert detect_format(cartoonset) == "cartoonset"
    ds = load(cartoonset, tmp_path)
    v = ds.vocab
    assert v.group_names == ["hair", "eyes", "face", "glasses"]
    assert v.group_sizes == [10, 5, 11, 12]
    assert v.decode(ds.labels[0]) == {"hair": "3", "eyes": "1", "face": "0", "glasses": "11"}
    assert v.parse("9 hair 4 eyes 0 face 11 glasses") == v.decode(ds.labels[1])
    ds = load(cartoonset, tmp_path, attrs=["eye_angle"])
    assert ds.vocab.group_names == ["eye_angle"] and ds.labels.shape == (2, 3)


@pytest.mark.parametrize("text, message", [
    ('"hair_color", 3\n', r"cs1.csv:1: expected '\"name\", value, variants'"),
    ('"eye_angle", 0, 3\n"hair_color", 10, 10\n', r"cs1.csv:2: .*0 <= value < variants"),
    (cartoonset_csv(1, 1).replace(", 10", ", 9"), r"cs1.csv: 'hair_color' has 9 variants, earlier files say 10"),
    ('"eye_angle", 0, 3\n', r"cs1.csv: no attribute 'hair_color'"),
])
def test_cartoonset_errors(cartoonset, text, message):
    (cartoonset / "cs1.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_listing(cartoonset)


# -- plain folder, detection -----------------------------------------------------------------
def test_folder(tmp_path):
    root = tmp_path / "anime"
    solid(root / "b" / "1.jpg", colour(1))
    solid(root / "a.png", colour(0), size=(20, 12))  # not square: centre-cropped
    (root / "notes.txt").write_text("not an image")
    assert detect_format(root) == "folder"
    ds = load(root, tmp_path)
    assert ds.vocab is None and ds.labels.shape == (2, 0) and ds.images.shape == (2, 3, 8, 8)
    assert [p.name for p in ds.files] == ["a.png", "1.jpg"]
    with pytest.raises(DataError, match="the folder format has no labels"):
        read_listing(root, attrs=["Male"])


def test_unknown_folder_lists_what_was_looked_for(tmp_path):
    (tmp_path / "README.md").write_text("hello")
    with pytest.raises(DataError) as e:
        detect_format(tmp_path)
    for looked_for in ("tags_clean.csv", "tags.csv", "cartoon_attr.txt", "list_attr_celeba.txt",
                       "meta.jsonl", "csXXX.csv", ".png"):
        assert looked_for in str(e.value)
    with pytest.raises(DataError, match="no such dataset folder"):
        detect_format(tmp_path / "missing")
    with pytest.raises(DataError, match="unknown dataset format 'pascal'; formats are auto, avatars"):
        read_listing(tmp_path, format="pascal")


def test_forced_format_names_the_missing_file(adl):
    with pytest.raises(DataError, match=r"tags_clean.csv: file not found|faces: image folder"):
        read_listing(adl, format="mlds")


# -- the avatar folder ---------------------------------------------------------------------
def test_avatars_tags_and_domains(avatar_dir, tmp_path):
    assert detect_format(avatar_dir) == "avatars"
    tags = load_dataset(avatar_dir, size=32, cache_dir=tmp_path / "cache")
    assert tags.format == "avatars" and tags.vocab.n_tags == 22 and tags.labels.shape == (96, 22)
    attrs = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Short_Hair"]
    dom = load_dataset(avatar_dir, size=32, cache_dir=tmp_path / "cache", attrs=attrs)
    assert isinstance(dom.vocab, Domains) and dom.vocab.names == tuple(attrs)
    assert dom.vocab.exclusive == (("Black_Hair", "Blond_Hair", "Brown_Hair"),)
    assert dom.cache_file == tags.cache_file  # same pixels, one cache entry
    hair = [tags.vocab.decode(v)["hair"] for v in tags.labels]
    assert dom.labels[:, 1].tolist() == [float(h == "blonde") for h in hair]
    assert load_dataset(avatar_dir, format="adl", size=32, cache_dir=tmp_path / "c").labels.equal(
        tags.labels)
    every = read_listing(avatar_dir, attrs=AVATAR_ATTRS)
    assert (every.labels[:, :12].sum(1) == 1).all() and (every.labels[:, 12:22].sum(1) == 1).all()
    with pytest.raises(DataError, match="list_attr.txt:2: no attribute 'Male'"):
        read_listing(avatar_dir, format="celeba")


def test_any_of_keeps_images_with_one_of_the_attributes(avatar_dir, tmp_path):
    attrs = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Short_Hair"]
    every = load_dataset(avatar_dir, size=32, cache_dir=tmp_path / "cache", attrs=attrs)
    hair = load_dataset(avatar_dir, size=32, cache_dir=tmp_path / "cache", attrs=attrs,
                        any_of=["Black_Hair", "Blond_Hair"])
    keep = (every.labels[:, 0] + every.labels[:, 1]) > 0
    assert 0 < len(hair) < len(every) and len(hair) == int(keep.sum())
    assert hair.labels.equal(every.labels[keep]) and hair.images.equal(every.images[keep])
    assert any("data.any_of: kept" in n for n in read_listing(avatar_dir, attrs=attrs)
               .with_any_of(["Black_Hair"]).notes)
    with pytest.raises(DataError, match=r"data.any_of: Red_Hair not in data.attrs \(Black_Hair"):
        load_dataset(avatar_dir, size=32, cache_dir=tmp_path / "cache", attrs=attrs,
                     any_of=["Red_Hair"])
    with pytest.raises(DataError, match="it needs data.attrs"):
        load_dataset(avatar_dir, size=32, cache_dir=tmp_path / "cache", any_of=["Black_Hair"])


# -- bad images ------------------------------------------------------------------------------
@pytest.fixture
def damaged(adl) -> Path:
    """ADL folder of 6 images where 1 is truncated, 3 is not an image and 4 is missing."""
    for i in range(3, 6):
        solid(adl / "images" / f"{i}.png", colour(i))
    data = (adl / "images" / "1.jpg").read_bytes()
    (adl / "images" / "1.jpg").write_bytes(data[:len(data) // 2])
    (adl / "images" / "3.png").write_text("not a png")
    (adl / "images" / "4.png").unlink()
    with (adl / "tags.csv").open("a") as f:
        f.write("3,red hair red eyes\n4,red hair blue eyes\n5,pink hair pink eyes\n")
    return adl


def test_unreadable_images_skipped_with_one_warning(damaged, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(damaged, tmp_path)
    msgs = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(msgs) == 1, msgs
    assert "skipped 3 of 6 images" in msgs[0]
    assert all(f"images/{n}" in msgs[0] for n in ("1.jpg", "3.png", "4.png"))
    assert len(ds) == 3 and [p.name for p in ds.files] == ["0.jpg", "2.jpg", "5.png"]
    decoded = [ds.vocab.format(ds.vocab.decode(v)) for v in ds.labels]
    assert decoded == ["blonde hair aqua eyes", "black hair black eyes", "pink hair pink eyes"]
    assert first_pixels(ds)[2] == colour(5)  # labels stay aligned with their images
    with pytest.warns(DataWarning, match="skipped 3 of 6"):  # again when the cache is reused
        load(damaged, tmp_path)


def test_no_readable_image_is_an_error(adl, tmp_path):
    for p in (adl / "images").iterdir():
        p.write_text("garbage")
    with pytest.raises(DataError, match="none of the 3 images could be read"):
        load(adl, tmp_path)


def test_limit(adl, tmp_path):
    ds = load(adl, tmp_path, limit=2)
    assert len(ds) == 2 and ds.labels.shape == (2, 22)


def test_size_must_be_positive(adl, tmp_path):
    with pytest.raises(DataError, match="size=0"):
        load_dataset(adl, size=0, cache_dir=tmp_path)


# -- transforms ------------------------------------------------------------------------------
def test_load_image_composites_alpha_on_white_and_resizes(tmp_path):
    img = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    img.paste((0, 0, 255, 255), (10, 0, 30, 20))  # opaque blue centre square
    img.save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png", 4)
    assert out.shape == (3, 4, 4) and out.dtype == np.uint8
    assert (out[:, 1:3, 1:3] == np.array([0, 0, 255])[:, None, None]).all()
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img.save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png", 8) == 255).all()


def test_to_model_input_range_and_flips():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.int64).remainder(256).to(torch.uint8)
    x = x.reshape(2, 3, 4, 4)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0, 255
    y = to_model_input(x, flip=False)
    assert y.dtype == torch.float32 and y.min() == -1 and y.max() == 1
    assert torch.allclose((y + 1) * 127.5, x.float())
    flips = [to_model_input(x, True, torch.Generator().manual_seed(s)) for s in range(16)]
    for f in flips:
        for i in range(2):
            assert f[i].equal(y[i]) or f[i].equal(y[i].flip(-1))
    assert any(not f[0].equal(y[0]) for f in flips) and any(f[0].equal(y[0]) for f in flips)
    again = to_model_input(x, True, torch.Generator().manual_seed(3))
    assert again.equal(flips[3])
    with pytest.raises(ValueError, match="expected a uint8 batch"):
        to_model_input(y, flip=False)
