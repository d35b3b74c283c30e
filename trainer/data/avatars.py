"""The embedded dataset: DiceBear "adventurer" avatars with exact hair and eye colour tags.

Real anime/cartoon/CelebA sets cannot ship with the project, so ``generate_avatars``
draws human-made avatar art (CC BY 4.0, Lisa Wischofsky) with a known hair colour
(12 MLDS names) and eye colour (10 MLDS names), each with one fixed RGB value, and
writes it in the ADL layout (images/ + tags.csv) plus a CelebA-style list_attr.txt
(StarGAN domains) and meta.jsonl (every render option, so any avatar can be drawn
again with one attribute changed: ``rerender(record, hair_color="blonde")``).

Everything else varies at random and is recorded: hair style, eyes, eyebrows, mouth,
skin, clear glasses, earrings, details, background. Parts that hide a tag are never
drawn: closed or pinpoint eyes, sunglasses, bald or tuft-only hair (see docs/data.md).
The same seed gives the same bytes; image i depends only on (seed, i).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from trainer.data.cache import cpu_count, pool_context
from trainer.data.formats import EYE_COLOUR_ATTRS, HAIR_COLOUR_ATTRS
from trainer.data.vocab import MLDS_EYES, MLDS_HAIR, mlds_vocab

STYLE = "adventurer"
ATTRIBUTION = ("Avatar art: \u201cAdventurer\u201d by Lisa Wischofsky "
               "(https://www.figma.com/community/file/1184595184137881796), licensed under "
               "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/), drawn with DiceBear "
               "(https://www.dicebear.com, MIT). Colours and parts were changed (tagface).")

# One RGB per tag name, shared by hair and eyes; chosen far apart (min distance in docs).
COLOURS = {
    "orange": "ff8c1a", "white": "f4f4f4", "aqua": "26d9d9", "gray": "8c8c8c",
    "green": "2e9e3a", "red": "d62828", "purple": "7b3db8", "pink": "ff8fc8",
    "blue": "2b59e0", "black": "1c1c1c", "brown": "7a4a21", "blonde": "f2d04b",
    "yellow": "e6e600",
}
HAIR_RGB = {name: COLOURS[name] for name in MLDS_HAIR}
EYE_RGB = {name: COLOURS[name] for name in MLDS_EYES}

# Variants whose tag colour is visible (measured in tests/test_avatars.py):
# eyes 06-10, 14, 17, 19-22 are closed, winking or pinpoint; short12/13 are a tuft,
# short19 is bald; glasses variant01 are opaque sunglasses.
HAIR_STYLES = tuple([f"long{i:02d}" for i in range(1, 27)]
                    + [f"short{i:02d}" for i in range(1, 19) if i not in (12, 13)])
EYE_STYLES = tuple(f"variant{i:02d}" for i in (1, 2, 3, 4, 5, 11, 12, 13, 15, 16, 18,
                                               23, 24, 25, 26))
EYEBROWS = tuple(f"variant{i:02d}" for i in range(1, 16))
MOUTHS = tuple(f"variant{i:02d}" for i in range(1, 31))
GLASSES = ("variant02", "variant03", "variant04", "variant05")  # clear frames
EARRINGS = tuple(f"variant{i:02d}" for i in range(1, 7))
EARRING_RGB = ("d9b13b", "c0c0c0")  # gold, silver
DETAILS = ("birthmark", "blush", "freckles", "mustache")
SKINS = ("f2d3b1", "ecad80", "9e5622", "763900")  # the style's own skin tones
BACKGROUNDS = ("d6dde6", "e6dccb", "d5e3d0", "e8d5dd", "dcd6e8", "d2e4e6")  # muted pastels
P_GLASSES, P_EARRINGS, P_DETAILS = 0.2, 0.15, 0.1

# list_attr.txt columns (CelebA names where CelebA has the attribute).
AVATAR_ATTRS = (*HAIR_COLOUR_ATTRS, *EYE_COLOUR_ATTRS, "Eyeglasses", "Short_Hair",
                "Wearing_Earrings")
PART_CHOICES: dict[str, tuple[str | None, ...]] = {
    "hair_style": HAIR_STYLES, "eyes_style": EYE_STYLES, "eyebrows": EYEBROWS,
    "mouth": MOUTHS, "skin": SKINS, "background": BACKGROUNDS,
    "glasses": (None, *GLASSES), "earrings": (None, *EARRINGS),
    "earrings_color": (None, *EARRING_RGB), "details": (None, *DETAILS),
}


def hair_attr(tag: str) -> str:
    """list_attr column of a hair colour tag: blonde -> Blond_Hair (CelebA), red -> Red_Hair."""
    return "Blond_Hair" if tag == "blonde" else f"{tag.capitalize()}_Hair"


def eye_attr(tag: str) -> str:
    return f"{tag.capitalize()}_Eyes"


# -- one avatar ------------------------------------------------------------------
@cache
def _style() -> Any:
    from dicebear import Style
    text = files("dicebear_styles").joinpath(f"{STYLE}.json").read_text("utf-8")
    return Style(json.loads(text))


def _resvg(svg: str, size: int) -> bytes:
    import resvg_py
    return bytes(resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size,
                                       skip_system_fonts=True))


def _cairosvg(svg: str, size: int) -> bytes:
    import cairosvg
    return cairosvg.svg2png(bytestring=svg.encode(), output_width=size, output_height=size)


RASTERIZERS: dict[str, Callable[[str, int], bytes]] = {"resvg": _resvg, "cairosvg": _cairosvg}


def avatar_svg(options: Mapping[str, Any]) -> str:
    """The SVG text DiceBear draws for ``options``."""
    from dicebear import Avatar
    return Avatar(_style(), dict(options)).to_string()


def render_avatar(options: Mapping[str, Any], rasterizer: str = "resvg") -> bytes:
    """PNG bytes of the avatar described by DiceBear ``options`` (a record's "options")."""
    if rasterizer not in RASTERIZERS:
        raise ValueError(f"unknown rasterizer {rasterizer!r}; choose {', '.join(RASTERIZERS)}")
    return RASTERIZERS[rasterizer](avatar_svg(options), int(options["size"]))


def dicebear_options(tags: Mapping[str, str], parts: Mapping[str, str | None], size: int,
                     seed: str) -> dict[str, Any]:
    """Every DiceBear option pinned, so the picture depends on nothing else."""
    o: dict[str, Any] = {
        "seed": seed, "size": size,
        "hairVariant": [parts["hair_style"]], "hairColor": [HAIR_RGB[tags["hair"]]],
        "eyesVariant": [parts["eyes_style"]], "eyesColor": [EYE_RGB[tags["eyes"]]],
        "eyebrowsVariant": [parts["eyebrows"]], "mouthVariant": [parts["mouth"]],
        "skinColor": [parts["skin"]], "backgroundColor": [parts["background"]],
        "glassesProbability": 100 if parts["glasses"] else 0,
        "earringsProbability": 100 if parts["earrings"] else 0,
        "detailsProbability": 100 if parts["details"] else 0,
    }
    if parts["glasses"]:
        o["glassesVariant"] = [parts["glasses"]]
    if parts["earrings"]:
        o["earringsVariant"] = [parts["earrings"]]
        o["earringsColor"] = [parts["earrings_color"]]
    if parts["details"]:
        o["detailsVariant"] = [parts["details"]]
    return o


def sample_record(seed: int, index: int, size: int, rasterizer: str = "resvg") -> dict[str, Any]:
    """The meta.jsonl record of avatar ``index``: tags, parts and DiceBear options."""
    rng = np.random.default_rng([seed, index])
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    tags = {"hair": pick(MLDS_HAIR), "eyes": pick(MLDS_EYES)}
    has_earrings = rng.random() < P_EARRINGS
    parts = {
        "hair_style": pick(HAIR_STYLES), "eyes_style": pick(EYE_STYLES),
        "eyebrows": pick(EYEBROWS), "mouth": pick(MOUTHS), "skin": pick(SKINS),
        "background": pick(BACKGROUNDS),
        "glasses": pick(GLASSES) if rng.random() < P_GLASSES else None,
        "earrings": pick(EARRINGS) if has_earrings else None,
        "earrings_color": pick(EARRING_RGB) if has_earrings else None,
        "details": pick(DETAILS) if rng.random() < P_DETAILS else None,
    }
    return {"id": index, "file": f"images/{index}.png", "tags": tags, "parts": parts,
            "rasterizer": rasterizer,
            "options": dicebear_options(tags, parts, size, f"tagface-{seed}-{index}")}


def with_changes(record: Mapping[str, Any], **changes: str | None) -> dict[str, Any]:
    """A copy of ``record`` with tags or parts changed: hair_color=, eye_color=, or any
    part (hair_style=, glasses=None, ...). Options are rebuilt to match."""
    tags, parts = dict(record["tags"]), dict(record["parts"])
    for key, value in changes.items():
        if key in ("hair_color", "eye_color"):
            group, allowed = ("hair", MLDS_HAIR) if key == "hair_color" else ("eyes", MLDS_EYES)
            if value not in allowed:
                raise ValueError(f"{key}={value!r}: expected one of {', '.join(allowed)}")
            tags[group] = value
        elif key in PART_CHOICES:
            if value not in PART_CHOICES[key]:
                raise ValueError(f"{key}={value!r}: expected one of {PART_CHOICES[key]}")
            parts[key] = value
        else:
            raise ValueError(f"cannot change {key!r}; changeable: hair_color, eye_color, "
                             f"{', '.join(PART_CHOICES)}")
    if parts["earrings"] and not parts["earrings_color"]:
        parts["earrings_color"] = EARRING_RGB[0]
    opts = record["options"]
    return {**record, "tags": tags, "parts": parts,
            "options": dicebear_options(tags, parts, opts["size"], opts["seed"])}


def rerender(record: Mapping[str, Any], **changes: str | None) -> bytes:
    """PNG bytes of ``record``'s avatar with attributes changed, e.g. the StarGAN ground
    truth ``rerender(record, hair_color="blonde")``. No changes: the original bytes."""
    return render_avatar(with_changes(record, **changes)["options"], record["rasterizer"])


def avatar_attributes(record: Mapping[str, Any]) -> dict[str, int]:
    """The list_attr.txt row of a record: 1 or -1 per AVATAR_ATTRS column."""
    tags, parts = record["tags"], record["parts"]
    on = {hair_attr(tags["hair"]), eye_attr(tags["eyes"])}
    if parts["glasses"]:
        on.add("Eyeglasses")
    if parts["hair_style"].startswith("short"):
        on.add("Short_Hair")
    if parts["earrings"]:
        on.add("Wearing_Earrings")
    return {a: 1 if a in on else -1 for a in AVATAR_ATTRS}


def load_meta(folder: str | Path) -> list[dict[str, Any]]:
    """The records of an avatar folder's meta.jsonl, in id order."""
    path = Path(folder) / "meta.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- a whole dataset -----------------------------------------------------------------
def _render_one(job: tuple[str, int, int, int, str]) -> dict[str, Any]:
    out, seed, index, size, rasterizer = job
    record = sample_record(seed, index, size, rasterizer)
    Path(out, record["file"]).write_bytes(render_avatar(record["options"], rasterizer))
    return record


def _readme(count: int, size: int, seed: int, rasterizer: str) -> str:
    colours = "\n".join(f"| {n} | #{COLOURS[n]} | {'hair' if n in HAIR_RGB else ''}"
                        f"{' eyes' if n in EYE_RGB else ''} |" for n in COLOURS)
    return f"""# Tagged avatars ({count} images, {size} px)

Generated by `python -m trainer.data avatars --count {count} --size {size} --seed {seed}`
(rasterizer: {rasterizer}). Same seed, same bytes.

{ATTRIBUTION}

- `images/{{id}}.png`, `tags.csv` (`id,blonde hair aqua eyes`): the ADL extra_data layout.
- `list_attr.txt`: CelebA list_attr_celeba.txt layout; StarGAN domains. Columns:
  {", ".join(AVATAR_ATTRS)}. X_Hair = hair tag x (Blond_Hair = blonde), X_Eyes = eye tag x,
  Eyeglasses = clear glasses drawn, Short_Hair = a short* hair style, Wearing_Earrings.
- `meta.jsonl`: per image its tags, parts and full DiceBear options
  (`trainer.data.avatars.rerender(record, hair_color="blonde")`).

| tag | RGB | used for |
|---|---|---|
{colours}
"""


def _prepare(out: Path, overwrite: bool) -> None:
    """Create ``out``; with ``overwrite``, clear an earlier avatar folder (and nothing else)."""
    ours = {"images", "tags.csv", "list_attr.txt", "meta.jsonl", "README.md"}
    if out.is_dir() and any(out.iterdir()):
        only_ours = {p.name for p in out.iterdir()} <= ours
        if not (overwrite and only_ours):
            hint = " or pass --overwrite" if only_ours else ""
            raise FileExistsError(f"{out} is not empty; choose a new --out{hint}")
        shutil.rmtree(out / "images", ignore_errors=True)
        for name in ours - {"images"}:
            (out / name).unlink(missing_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)


def generate_avatars(out: str | Path, count: int, size: int = 64, seed: int = 0,
                     workers: int = 0, rasterizer: str = "resvg", progress: bool = True,
                     overwrite: bool = False) -> float:
    """Render ``count`` avatars into ``out`` (parallel over ``workers`` processes, 0 = all
    cores). Returns the wall time in seconds."""
    if count <= 0 or size <= 0:
        raise ValueError(f"count={count}, size={size}: both must be > 0")
    if rasterizer not in RASTERIZERS:
        raise ValueError(f"unknown rasterizer {rasterizer!r}; choose {', '.join(RASTERIZERS)}")
    out = Path(out)
    start = time.perf_counter()
    _prepare(out, overwrite)
    jobs = [(str(out), seed, i, size, rasterizer) for i in range(count)]
    workers = min(workers or cpu_count(), count)
    _style()  # parse + validate the style once (~1 s); forked workers inherit it
    records = []
    with tqdm(total=count, desc="rendering avatars", unit="img", disable=not progress) as bar, \
            pool_context().Pool(workers) if workers > 1 else nullcontext() as pool:
        results = pool.imap(_render_one, jobs, chunksize=16) if pool else map(_render_one, jobs)
        for record in results:
            records.append(record)
            bar.update(1)
    vocab = mlds_vocab()
    (out / "tags.csv").write_text("".join(f"{r['id']},{vocab.format(r['tags'])}\n"
                                          for r in records))
    rows = []
    for r in records:
        values = avatar_attributes(r).values()
        rows.append(f"{r['id']}.png " + " ".join(f"{v:2d}" for v in values) + "\n")
    (out / "list_attr.txt").write_text(f"{count}\n{' '.join(AVATAR_ATTRS)}\n" + "".join(rows))
    (out / "README.md").write_text(_readme(count, size, seed, rasterizer))
    (out / "meta.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n"
                                            for r in records))
    return time.perf_counter() - start
