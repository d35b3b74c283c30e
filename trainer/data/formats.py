"""One reader per on-disk dataset format, and auto-detection.

A reader turns a dataset folder into a ``Listing``: image paths in label order,
the label matrix and its vocabulary. Readers only read text files; images are
decoded later, once, by ``trainer.data.cache``. Formats (see docs/data.md):

========== =================================================================
avatars    images/ + tags.csv + list_attr.txt + meta.jsonl (``trainer.data avatars``)
mlds       faces/ + tags_clean.csv (``id,tag:count<TAB>tag:count...``)
adl        images/ + tags.csv (``id,blonde hair aqua eyes``), ADL extra_data
cartoon    images/ + cartoon_attr.txt, the ADL 2019 Cartoon Set subset
celeba     list_attr_celeba.txt + img_align_celeba/ (or images/)
cartoonset Google Cartoon Set: csXXX.png beside csXXX.csv (``"hair_color", 3, 10``)
folder     any folder of images, unconditional
========== =================================================================

A new format is a reader decorated with ``@register(name, looks_for, detect)``: it
becomes a ``data.format`` choice and joins auto-detection (in registration order).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from trainer.data.vocab import Domains, TagGroup, Vocab, VocabError, mlds_vocab

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# StarGAN attributes (list_attr.txt columns). Hair colours exclude each other,
# as in the official StarGAN; CelebA has the first four, the avatars all twelve.
HAIR_COLOUR_ATTRS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Orange_Hair",
                     "White_Hair", "Aqua_Hair", "Green_Hair", "Red_Hair", "Purple_Hair",
                     "Pink_Hair", "Blue_Hair")
EYE_COLOUR_ATTRS = ("Black_Eyes", "Orange_Eyes", "Pink_Eyes", "Yellow_Eyes", "Aqua_Eyes",
                    "Purple_Eyes", "Green_Eyes", "Brown_Eyes", "Red_Eyes", "Blue_Eyes")


class DataError(ValueError):
    """A dataset folder or file that cannot be used; the message names the file (and line)."""


class DataWarning(UserWarning):
    """Images that were skipped (unreadable, truncated, missing); training goes on."""


@dataclass(frozen=True)
class Listing:
    """What a reader found: images in label order, labels and their vocabulary."""

    root: Path
    format: str
    files: list[Path]  # image paths, row i labelled by labels[i]
    labels: np.ndarray  # float32 [N, K]: concatenated one-hots (Vocab) or 0/1 (Domains)
    vocab: Vocab | Domains | None
    crop: int | None = None  # centre square side before resizing; None = largest square
    notes: list[str] = field(default_factory=list)  # what was filtered, for `info`

    def __post_init__(self) -> None:
        if self.labels.ndim != 2 or len(self.labels) != len(self.files):
            raise ValueError(f"{len(self.files)} files but labels of shape {self.labels.shape}")

    def head(self, n: int) -> Listing:
        """The first n images (all if n <= 0)."""
        if n <= 0 or n >= len(self.files):
            return self
        return replace(self, files=self.files[:n], labels=self.labels[:n])

    def with_any_of(self, names: Sequence[str]) -> Listing:
        """Only the images that have at least one of the attributes ``names`` (all if empty)."""
        if not names:
            return self
        if not isinstance(self.vocab, Domains):
            raise DataError(f"data.any_of={list(names)} filters by attribute: it needs "
                            f"data.attrs (a dataset with list_attr.txt)")
        unknown = [n for n in names if n not in self.vocab.names]
        if unknown:
            raise DataError(f"data.any_of: {', '.join(unknown)} not in data.attrs "
                            f"({', '.join(self.vocab.names)})")
        cols = [self.vocab.names.index(n) for n in names]
        keep = np.flatnonzero(self.labels[:, cols].max(axis=1) > 0.5)
        if not len(keep):
            raise DataError(f"{self.root}: no image has any of {', '.join(names)} (data.any_of)")
        note = (f"data.any_of: kept {len(keep)} of {len(self.files)} images with "
                f"{' or '.join(names)}")
        return replace(self, files=[self.files[i] for i in keep], labels=self.labels[keep],
                       notes=[*self.notes, note])


Reader = Callable[[Path, tuple[str, ...], bool], Listing]


@dataclass(frozen=True)
class Format:
    name: str
    looks_for: str  # what detection looks for, for the "unknown folder" message
    detect: Callable[[Path], bool]
    read: Reader


FORMATS: dict[str, Format] = {}  # detection order is insertion order


def register(name: str, looks_for: str, detect: Callable[[Path], bool]) -> Callable[[Reader], Reader]:
    def wrap(read: Reader) -> Reader:
        FORMATS[name] = Format(name, looks_for, detect, read)
        return read
    return wrap


def detect_format(root: str | Path) -> str:
    """Name of the first format whose files are in ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    for fmt in FORMATS.values():
        if fmt.detect(root):
            return fmt.name
    looked = "; ".join(f"{f.looks_for} ({f.name})" for f in FORMATS.values())
    raise DataError(f"{root}: no known dataset format; looked for {looked}")


def read_listing(root: str | Path, format: str = "auto", attrs: Sequence[str] = (),
                 mlds_strict: bool = True) -> Listing:
    """Read the labels of the dataset in ``root`` (format auto-detected unless given)."""
    root = Path(root)
    name = detect_format(root) if format == "auto" else format
    if name not in FORMATS:
        raise DataError(f"unknown dataset format {format!r}; formats are auto, "
                        f"{', '.join(FORMATS)}")
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    listing = FORMATS[name].read(root, tuple(attrs), mlds_strict)
    if not listing.files:
        raise DataError(f"{root}: the {name} reader found no images")
    return listing


# -- helpers -------------------------------------------------------------------
def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        # utf-8-sig: a byte-order mark (Excel, Notepad) would otherwise join the first id
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _stems(folder: Path) -> dict[str, Path]:
    """Image files of a folder by stem (``0`` -> folder/0.jpg)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    with os.scandir(folder) as it:
        return {Path(e.name).stem: Path(e.path) for e in it
                if e.name.lower().endswith(IMAGE_EXTS)}


def _image_for(stems: dict[str, Path], folder: Path, ident: str) -> Path:
    # A missing image is not an error here: decoding counts it with unreadable ones.
    return stems.get(ident, folder / f"{ident}.png")


def _no_attrs(name: str, attrs: tuple[str, ...]) -> None:
    if attrs:
        raise DataError(f"the {name} format has tags, not attributes; attrs={list(attrs)} "
                        f"needs the avatars, celeba or cartoonset format")


def _has(*names: str) -> Callable[[Path], bool]:
    return lambda root: all((root / n).exists() for n in names)


def _read_attr_table(path: Path) -> tuple[list[str], list[tuple[int, str, list[int]]]]:
    """CelebA-style table: count, names, then ``file v1 v2 ...``; values 1, 0 or -1."""
    lines = _lines(path)
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a names line, got "
                        f"{len(lines)} line(s)")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}:1: expected the number of images, got {lines[0]!r}") from None
    names = lines[1].split()
    if not names or len(set(names)) != len(names):
        raise DataError(f"{path}:2: expected distinct attribute names, got {lines[1]!r}")
    rows = []
    for lineno, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(f"{path}:{lineno}: expected a file name and {len(names)} values, "
                            f"got {len(parts) - 1} value(s)")
        try:
            values = [int(v) for v in parts[1:]]
        except ValueError:
            values = []
        if len(values) != len(names) or any(v not in (-1, 0, 1) for v in values):
            raise DataError(f"{path}:{lineno}: values must be 1, 0 or -1, got "
                            f"{' '.join(parts[1:])!r}")
        rows.append((lineno, parts[0], values))
    if len(rows) != count:
        raise DataError(f"{path}:1: says {count} image(s) but the file lists {len(rows)}")
    return names, rows


# -- tag formats -----------------------------------------------------------------
def read_tags_csv(path: Path, image_dir: Path, vocab: Vocab) -> tuple[list[Path], np.ndarray]:
    """ADL ``tags.csv``: ``id,blonde hair aqua eyes`` per line."""
    lines = _lines(path)
    stems = _stems(image_dir)
    files, idx = [], []
    seen: dict[str, tuple[int, tuple[int, ...]]] = {}  # id -> (first line, tag indices)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        ident, sep, text = line.partition(",")
        if not sep or not ident.strip():
            raise DataError(f"{path}:{lineno}: expected 'id,<tags>', got {line!r}")
        try:
            row = tuple(vocab.indices(vocab.parse(text)))
        except VocabError as e:
            raise DataError(f"{path}:{lineno}: {e}") from None
        ident = ident.strip()
        if ident in seen:
            first, tags = seen[ident]
            if tags != row:
                raise DataError(f"{path}:{lineno}: id {ident!r} again, with other tags than on "
                                f"line {first}; expected each id once")
            continue  # the same line twice: one image, counted once
        seen[ident] = (lineno, row)
        idx.append(list(row))
        files.append(_image_for(stems, image_dir, ident))
    labels = vocab.encode_indices(np.array(idx, dtype=np.int64).reshape(-1, len(vocab.groups)))
    return files, labels


@register("avatars", "images/ + tags.csv + list_attr.txt + meta.jsonl",
          _has("images", "tags.csv", "list_attr.txt", "meta.jsonl"))
def read_avatars(root: Path, attrs: tuple[str, ...], mlds_strict: bool) -> Listing:
    """Tags (hair, eyes) by default; with ``attrs``, StarGAN domains from list_attr.txt."""
    if attrs:
        listing = FORMATS["celeba"].read(root, attrs, mlds_strict)  # a list_attr.txt table
        return replace(listing, format="avatars")
    files, labels = read_tags_csv(root / "tags.csv", root / "images", mlds_vocab())
    return Listing(root, "avatars", files, labels, mlds_vocab())


def parse_mlds_tags(path: Path, lineno: int, text: str) -> dict[str, int]:
    """``tag:count<TAB>tag:count...`` -> {tag: count}."""
    out: dict[str, int] = {}
    for item in text.split("\t"):
        item = item.strip()
        if not item:
            continue
        tag, sep, count = item.rpartition(":")
        if not sep or not tag.strip():
            raise DataError(f"{path}:{lineno}: expected 'tag:count', got {item!r}")
        try:
            n = int(count)
        except ValueError:
            raise DataError(f"{path}:{lineno}: count of {tag.strip()!r} is not an integer: "
                            f"{count!r}") from None
        if n < 0:
            raise DataError(f"{path}:{lineno}: count of {tag.strip()!r} is {n}; expected a "
                            f"count >= 0")
        out[tag.strip()] = n
    return out


@register("mlds", "faces/ + tags_clean.csv", _has("faces", "tags_clean.csv"))
def read_mlds(root: Path, attrs: tuple[str, ...], mlds_strict: bool) -> Listing:
    """MLDS anime faces. Strict: exactly one known hair and one known eye colour tag;
    otherwise the most counted known tag of each group. Images lacking either are dropped."""
    _no_attrs("mlds", attrs)
    vocab = mlds_vocab()
    path, image_dir = root / "tags_clean.csv", root / "faces"
    lines = _lines(path)
    stems = _stems(image_dir)
    files, idx, total = [], [], 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        total += 1
        ident, sep, text = line.partition(",")
        if not sep or not ident.strip():
            raise DataError(f"{path}:{lineno}: expected 'id,tag:count<TAB>...', got {line!r}")
        tags = parse_mlds_tags(path, lineno, text)
        row = []
        for g in vocab.groups:
            found = [(count, -i, t) for i, (tag, count) in enumerate(tags.items())
                     for t in g.tags if tag == f"{t} {g.name}"]
            if not found or (mlds_strict and len(found) > 1):
                break
            row.append(g.tags.index(max(found)[2]))
        else:
            idx.append(row)
            files.append(_image_for(stems, image_dir, ident.strip()))
    rule = "exactly one" if mlds_strict else "at least one"
    note = (f"kept {len(files)} of {total} images with {rule} known hair and eye colour tag"
            f"{'' if mlds_strict else ' (most counted wins)'}")
    labels = vocab.encode_indices(np.array(idx, dtype=np.int64).reshape(-1, 2))
    return Listing(root, "mlds", files, labels, vocab, notes=[note])


@register("adl", "images/ + tags.csv", _has("images", "tags.csv"))
def read_adl(root: Path, attrs: tuple[str, ...], mlds_strict: bool) -> Listing:
    """ADL extra_data: images/{id}.jpg + tags.csv."""
    _no_attrs("adl", attrs)
    files, labels = read_tags_csv(root / "tags.csv", root / "images", mlds_vocab())
    return Listing(root, "adl", files, labels, mlds_vocab())


GROUP_WORDS = {"hair": "hair", "eye": "eyes", "eyes": "eyes", "face": "face",
               "glasses": "glasses"}


def _cartoon_column(path: Path, name: str) -> tuple[str, str]:
    """``hair_orange`` -> (hair, orange); ``with_glasses`` -> (glasses, with)."""
    head, _, tail = name.partition("_")
    if head in GROUP_WORDS and tail:
        return GROUP_WORDS[head], tail
    head, _, tail = name.rpartition("_")
    if tail in GROUP_WORDS and head:
        return GROUP_WORDS[tail], head
    raise DataError(f"{path}:2: cannot tell the group of column {name!r}; expected names "
                    f"like hair_orange, eye_blue, face_dark, with_glasses")


@register("cartoon", "cartoon_attr.txt", _has("cartoon_attr.txt"))
def read_cartoon(root: Path, attrs: tuple[str, ...], mlds_strict: bool) -> Listing:
    """ADL 2019 Cartoon Set subset: one-hot groups hair 6, eyes 4, face 3, glasses 2."""
    _no_attrs("cartoon", attrs)
    path = root / "cartoon_attr.txt"
    names, rows = _read_attr_table(path)
    groups: dict[str, list[str]] = {}
    columns: dict[str, list[int]] = {}
    for col, name in enumerate(names):
        group, tag = _cartoon_column(path, name)
        groups.setdefault(group, []).append(tag)
        columns.setdefault(group, []).append(col)
    vocab = Vocab(tuple(TagGroup(g, tuple(t), ("eye",) if g == "eyes" else ())
                        for g, t in groups.items()))
    order = [c for cols in columns.values() for c in cols]  # columns in vocab order
    image_dir = root / "images" if (root / "images").is_dir() else root
    files, labels = [], []
    for lineno, file, values in rows:
        for g, cols in columns.items():
            if sorted(values[c] for c in cols) != [0] * (len(cols) - 1) + [1]:
                raise DataError(f"{path}:{lineno}: the {g} columns must be one-hot (one 1, "
                                f"the rest 0), got {[values[c] for c in cols]}")
        files.append(image_dir / file)
        labels.append([values[c] for c in order])
    return Listing(root, "cartoon", files, np.array(labels, np.float32).reshape(-1, len(names)),
                   vocab)


# CelebA and the Google Cartoon Set live in trainer/data/attr_formats.py; importing it
# here registers them after the tag formats and before the catch-all folder format.
from trainer.data import attr_formats  # noqa: E402, F401


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def _any_image(root: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTS for p in root.rglob("*"))


@register("folder", f"image files ({', '.join(IMAGE_EXTS)}) in any sub-folder", _any_image)
def read_folder(root: Path, attrs: tuple[str, ...], mlds_strict: bool) -> Listing:
    """Every image under ``root``, sorted by path, without labels (unconditional GANs)."""
    if attrs:
        raise DataError(f"the folder format has no labels; attrs={list(attrs)} cannot be used")
    files = _images_under(root)
    return Listing(root, "folder", files, np.zeros((len(files), 0), np.float32), None)
