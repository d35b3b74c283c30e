"""Attribute-labelled dataset formats: CelebA-style attribute tables and the Google Cartoon Set.

Registered in ``trainer.data.formats.FORMATS`` when that module is imported (it imports
this one), after the tag formats and before the catch-all ``folder``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trainer.data.formats import (
    EYE_COLOUR_ATTRS,
    HAIR_COLOUR_ATTRS,
    DataError,
    Listing,
    _read_attr_table,
    register,
)
from trainer.data.vocab import Domains, TagGroup, Vocab

CELEBA_DEFAULT_ATTRS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")
CELEBA_CROP = 178  # official StarGAN: CenterCrop(178) of the 178x218 aligned faces
CARTOONSET_DEFAULT_ATTRS = ("hair_color", "eye_color", "face_color", "glasses")
CARTOONSET_GROUP_NAMES = {"hair_color": "hair", "eye_color": "eyes", "face_color": "face"}


# -- attribute formats -------------------------------------------------------------
def attr_domains(attrs: Sequence[str]) -> Domains:
    """Domains for the given attributes; selected hair (eye) colours exclude each other."""
    exclusive = [tuple(a for a in attrs if a in group)
                 for group in (HAIR_COLOUR_ATTRS, EYE_COLOUR_ATTRS)]
    return Domains(tuple(attrs), tuple(g for g in exclusive if len(g) > 1))


def _celeba_files(root: Path) -> tuple[Path, Path, int | None]:
    """(attribute file, image folder, crop) of a CelebA-style folder."""
    candidates = ((root / "list_attr_celeba.txt", CELEBA_CROP),
                  (root / "Anno" / "list_attr_celeba.txt", CELEBA_CROP),
                  (root / "list_attr.txt", None))  # avatars: already square faces
    found = next((c for c in candidates if c[0].is_file()), None)
    if found is None:
        raise DataError(f"{root}: no list_attr_celeba.txt, Anno/list_attr_celeba.txt or "
                        f"list_attr.txt")
    attr, crop = found
    dirs = [root / "images", root / "img_align_celeba", root / "Img" / "img_align_celeba"]
    image_dir = next((d for d in dirs if d.is_dir()), None)
    if image_dir is None:
        raise DataError(f"{root}: no image folder; looked for "
                        f"{', '.join(str(d.relative_to(root)) + '/' for d in dirs)}")
    return attr, image_dir, crop


@register("celeba", "list_attr_celeba.txt or list_attr.txt",
          lambda root: any((root / n).is_file() for n in
                           ("list_attr_celeba.txt", "Anno/list_attr_celeba.txt", "list_attr.txt")))
def read_celeba(root: Path, attrs: tuple[str, ...], mlds_strict: bool) -> Listing:
    """CelebA (or any list_attr.txt): the selected attributes as 0/1 StarGAN domains."""
    path, image_dir, crop = _celeba_files(root)
    names, rows = _read_attr_table(path)
    attrs = attrs or CELEBA_DEFAULT_ATTRS
    missing = [a for a in attrs if a not in names]
    if missing:
        raise DataError(f"{path}:2: no attribute {missing[0]!r}; attributes are "
                        f"{', '.join(names)}")
    cols = [names.index(a) for a in attrs]
    files = [image_dir / file for _, file, _ in rows]
    values = np.array([v for _, _, v in rows], dtype=np.float32).reshape(-1, len(names))
    labels = (values[:, cols] > 0).astype(np.float32)
    return Listing(root, "celeba", files, labels, attr_domains(attrs), crop=crop)


def _cartoonset_csvs(root: Path) -> list[Path]:
    """Per-image CSVs that sit beside a PNG of the same name (root or one level down)."""
    out = []
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        out += sorted(p for p in folder.glob("*.csv") if p.with_suffix(".png").is_file())
    return out


def parse_cartoonset_csv(path: Path) -> dict[str, tuple[int, int]]:
    """``"hair_color", 3, 10`` lines -> {name: (value, number of variants)}."""
    out = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        for lineno, row in enumerate(csv.reader(f, skipinitialspace=True), 1):
            if not row:
                continue
            try:
                name, value, n = row[0], int(row[1]), int(row[2])
            except (IndexError, ValueError):
                raise DataError(f"{path}:{lineno}: expected '\"name\", value, variants', "
                                f"got {','.join(row)!r}") from None
            if len(row) != 3 or not 0 <= value < n:
                raise DataError(f"{path}:{lineno}: expected '\"name\", value, variants' with "
                                f"0 <= value < variants, got {','.join(row)!r}")
            out[name] = (value, n)
    return out


@register("cartoonset", "csXXX.png beside csXXX.csv", lambda root: bool(_cartoonset_csvs(root)))
def read_cartoonset(root: Path, attrs: tuple[str, ...], mlds_strict: bool) -> Listing:
    """Google Cartoon Set. ``attrs`` picks CSV attributes (default hair_color, eye_color,
    face_color, glasses); each becomes a tag group whose tags are the variant indices."""
    attrs = attrs or CARTOONSET_DEFAULT_ATTRS
    sizes: dict[str, int] = {}
    files, idx = [], []
    for path in _cartoonset_csvs(root):
        values = parse_cartoonset_csv(path)
        row = []
        for a in attrs:
            if a not in values:
                raise DataError(f"{path}: no attribute {a!r}; attributes are "
                                f"{', '.join(values)}")
            value, n = values[a]
            if sizes.setdefault(a, n) != n:
                raise DataError(f"{path}: {a!r} has {n} variants, earlier files say {sizes[a]}")
            row.append(value)
        files.append(path.with_suffix(".png"))
        idx.append(row)
    vocab = Vocab(tuple(
        TagGroup(CARTOONSET_GROUP_NAMES.get(a, a), tuple(str(i) for i in range(sizes.get(a, 1))),
                 ("eye",) if a == "eye_color" else ())
        for a in attrs))
    labels = vocab.encode_indices(np.array(idx, dtype=np.int64).reshape(-1, len(attrs)))
    return Listing(root, "cartoonset", files, labels, vocab)
