"""Style-transfer examples for the demo: images copied from a dataset, with the domains each has.

    python -m demo.examples --data data/avatars --out models/examples --last 4

copies the ``--last`` images of the dataset's ``list_attr.txt`` (CelebA layout: a count
line, a header of attribute names, then ``FILE v1 v2 ...`` with 1 / -1 per attribute;
files in natural order, so the highest ids) into ``--out`` and writes
``--out/attributes.json``: ``{"FILE": ["Blond_Hair", "Short_Hair", ...]}``, the
attributes that are 1. The demo ticks those under "The input already has" when an
example is clicked, so a translation keeps what the picture has (its hair colour for a
non-hair target). numpy-free and torch-free: the demo's environment runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ATTRIBUTES = "attributes.json"  # the sidecar demo.app.find_examples reads
IMAGE_DIRS = ("images", "img_align_celeba", ".")  # where list_attr.txt's files are


class ExamplesError(ValueError):
    """A dataset folder without the files this needs; the message says which."""


def read_attributes(path: str | Path) -> dict[str, list[str]]:
    """{file: [attributes that are 1]} of a CelebA-layout attribute table, in file order."""
    lines = [x for x in Path(path).read_text().splitlines() if x.strip()]
    if len(lines) < 2:
        raise ExamplesError(f"{path}: expected a count line, a header and rows")
    names = lines[1].split()
    out: dict[str, list[str]] = {}
    for i, line in enumerate(lines[2:], start=3):
        file, *values = line.split()
        if len(values) != len(names):
            raise ExamplesError(f"{path}:{i}: {len(values)} values for {len(names)} "
                                f"attributes")
        out[file] = [n for n, v in zip(names, values, strict=True) if v == "1"]
    return out


def _natural(name: str) -> list[object]:
    """Sort key of ``sort -V``: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def copy_examples(data: str | Path, out: str | Path, last: int = 4) -> dict[str, list[str]]:
    """Copy the ``last`` images of ``data``'s list_attr.txt into ``out`` with attributes.json."""
    data, out = Path(data), Path(out)
    table_path = data / "list_attr.txt"
    if not table_path.is_file():
        raise ExamplesError(f"{data}: no list_attr.txt (the avatar and CelebA layouts have one)")
    table = read_attributes(table_path)
    chosen = sorted(table, key=_natural)[-last:] if last > 0 else []
    out.mkdir(parents=True, exist_ok=True)
    picked: dict[str, list[str]] = {}
    for file in chosen:
        src = next((data / d / file for d in IMAGE_DIRS if (data / d / file).is_file()), None)
        if src is None:
            raise ExamplesError(f"{data}: {file} is listed in list_attr.txt but not found "
                                f"under {', '.join(IMAGE_DIRS)}")
        shutil.copyfile(src, out / Path(file).name)
        picked[Path(file).name] = table[file]
    side = out / ATTRIBUTES
    known = json.loads(side.read_text()) if side.is_file() else {}
    side.write_text(json.dumps({**known, **picked}, indent=1) + "\n")
    return picked


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.examples", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder with list_attr.txt")
    p.add_argument("--out", required=True, help="the demo's examples folder (MODELS/examples)")
    p.add_argument("--last", type=int, default=4, help="how many of the highest ids (default 4)")
    args = p.parse_args(argv)
    try:
        picked = copy_examples(args.data, args.out, args.last)
    except (ExamplesError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for file, attrs in picked.items():
        print(f"{Path(args.out) / file}: {', '.join(attrs) or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
