"""The demo's pure part: grids, walks, uploads, domains, captions, files.

The models folder (``Catalog``, ``load_catalog``) is demo.catalog, re-exported here.
Everything here is plain Python on numpy, Pillow and ``export.runtime``: no Gradio, no
torch, so it is unit-tested without a server. ``demo.app`` builds the page on it and
turns ``InputError`` into Gradio's one-line ``gr.Error``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import keyword
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from demo.catalog import IMAGE_SUFFIXES as IMAGE_SUFFIXES  # re-exported: the models folder
from demo.catalog import Catalog as Catalog
from demo.catalog import DemoError as DemoError
from demo.catalog import Example as Example
from demo.catalog import find_examples as find_examples
from demo.catalog import load_catalog as load_catalog
from demo.catalog import models_table as models_table
from export.runtime import RANDOM, InputError, Model, as_input_error
from trainer.noise import slerp

NOISE = "noise"  # mode: same tags, different noise
EVERY = "every "  # mode prefix: same noise, every tag of one group ("every hair")
MAX_COUNT = 64  # images of one "noise" request
MAX_ROWS = 16  # noise rows of one "every <group>" grid
MAX_FRAMES = 32  # frames of one latent walk
MAX_PIXELS = 40_000_000  # uploads with more pixels are refused before decoding
DEFAULT_UPLOAD_MB = 10.0  # the CLI's --max-upload-mb default
PAD = 2  # white pixels between grid cells
KEEP_OUTPUTS_S = 3600  # written PNGs older than this are deleted
CHOICE_NAMES = ("model", "seed", "count", "mode", "psi",  # generate's own parameters
                "seed_a", "seed_b", "frames")  # and walk's
# How image inputs are prepared when a model's metadata has no "preprocess" (files of
# format 1): what training always did. PIL filters by the metadata's names.
DEFAULT_PREPROCESS = {"alpha": "white", "crop": "center", "resize": "bilinear"}
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}


# -- generation -----------------------------------------------------------------------
def tag_choices(model: Model) -> dict[str, list[str]]:
    """Dropdown choices per tag group: "random" then the tags in one-hot order."""
    return {g.name: [RANDOM, *g.tags] for g in model.meta.tag_groups}


def mode_choices(model: Model) -> list[tuple[str, str]]:
    """(label, value) of the grid modes this model offers."""
    return [("same tags, different noise", NOISE)] + [
        (f"same noise, every {g.name} tag", f"{EVERY}{g.name}") for g in model.meta.tag_groups]


def resolve_tags(model: Model, tags: Mapping[str, str | None]) -> dict[str, str]:
    """{group: tag or "random"} for every group of ``model``; unknown tags raise InputError.

    Missing groups are random; keys of groups this model lacks are ignored (the page
    sends every dropdown, including those of other models).
    """
    if not model.meta.tag_groups:
        return {}
    return model.choose_tags(tags, lenient=True)


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        f = float(value if value is not None else lo)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
        raise InputError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return int(f)


def _psi(value: Any) -> float:
    """The truncation psi of a request: a number in (0, 1]; 1 (and no value) = off."""
    try:
        f = float(value if value is not None else 1.0)
    except (TypeError, ValueError):
        f = math.nan
    if not (math.isfinite(f) and 0.0 < f <= 1.0):
        raise InputError(f"truncation psi must be a number in (0, 1] (1 = off), got {value!r}")
    return f


@dataclass
class Grid:
    image: np.ndarray  # uint8 [H, W, 3], cells separated by PAD white pixels
    cells: list[dict[str, str]]  # tags of each cell, row by row
    cols: int
    notes: list[str]


def generate_grid(model: Model, tags: Mapping[str, str | None], seed: int, count: int,
                  mode: str, psi: float = 1.0) -> Grid:
    """One request of the Generate tab; the same arguments give the same pixels.

    ``noise``: ``count`` images, each its own noise (and its own draw of "random"
    groups). ``every G``: ``count`` rows of one noise each, one column per tag of G.
    ``psi``: truncation of the noise (export.runtime sample_z; 1 = off).
    """
    groups = model.meta.tag_groups
    valid = [v for _, v in mode_choices(model)]
    if mode not in valid:
        raise InputError(f"mode {mode!r}: this model offers {', '.join(valid)}")
    choice = resolve_tags(model, tags)
    rng = np.random.default_rng(seed)
    notes: list[str] = []

    def draw(n: int) -> list[dict[str, str]]:
        """n tag dicts with every "random" group drawn per dict (tagvocab Vocab.draw)."""
        return model.meta.tag_vocab.draw(choice, n, rng)

    if mode == NOISE:
        z = model.sample_z(count, rng, psi)  # noise first: a seed's noise never depends on tags
        cells = draw(count) if groups else [{} for _ in range(count)]
        cols = math.ceil(math.sqrt(count))
    else:
        sweep = next(g for g in groups if mode == f"{EVERY}{g.name}")
        rows = min(count, MAX_ROWS)
        if rows < count:
            notes.append(f"{rows} rows (the most for one grid)")
        z = np.repeat(model.sample_z(rows, rng, psi), len(sweep.tags), axis=0)
        cells = [{**row, sweep.name: t} for row in draw(rows) for t in sweep.tags]
        cols = len(sweep.tags)
    images = model.generate(cells if groups else None, z=z)
    return Grid(tile(images, cols), cells, cols, notes)


def walk_strip(model: Model, tags: Mapping[str, str | None], seed_a: int, seed_b: int,
               frames: int, psi: float = 1.0) -> Grid:
    """A latent walk: ``frames`` images from seed A's noise to seed B's (slerp), one row.

    Each end is the first image of its seed's "noise" grid (same noise, and "random"
    groups drawn the same way, from seed A for the whole strip), so only the noise moves.
    """
    choice = resolve_tags(model, tags)
    rng = np.random.default_rng(seed_a)
    z_a = model.sample_z(1, rng, psi)
    cell = model.meta.tag_vocab.draw(choice, 1, rng)[0]
    z = slerp(z_a, model.sample_z(1, seed_b, psi), frames)
    cells = [cell] * frames
    images = model.generate(cells if model.meta.tag_groups else None, z=z)
    return Grid(tile(images, frames), cells, frames, [])


def tile(images: np.ndarray, cols: int, pad: int = PAD) -> np.ndarray:
    """uint8 [N, h, w, 3] -> one uint8 image, ``cols`` per row, white gaps of ``pad``."""
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), 255, np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = im
    return out


# -- style transfer -------------------------------------------------------------------
def read_upload(source: str | Path | bytes, size: int, max_bytes: int,
                name: str = "", preprocess: Mapping[str, Any] | None = None
                ) -> tuple[np.ndarray, list[str]]:
    """uint8 [size, size, 3] from an image file of any size and mode, and what was done.

    RGBA / LA / transparent palette images are flattened onto white (as the training
    avatars), other modes converted to RGB, EXIF rotation applied, the first frame of an
    animation taken, then the model's ``preprocess`` metadata followed as training did
    (trainer.data.load_image): the centred square, offset ``round((W - side) / 2)``,
    resized with its filter (bilinear). InputError for files that
    are too big, too many pixels, or not images.
    """
    data = source if isinstance(source, bytes) else None
    name = name or ("upload" if data is not None else Path(source).name)  # type: ignore[arg-type]
    n_bytes = len(data) if data is not None else os.path.getsize(source)  # type: ignore[arg-type]
    if n_bytes > max_bytes:
        raise InputError(f"{name} is {n_bytes / 2**20:.3g} MB; uploads are limited to "
                         f"{max_bytes / 2**20:.3g} MB")
    notes = []
    try:
        im = Image.open(io.BytesIO(data) if data is not None else source)  # type: ignore[arg-type]
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise InputError(f"{name} is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels); "
                             f"images up to {MAX_PIXELS / 1e6:.0f} megapixels are accepted")
        if getattr(im, "n_frames", 1) > 1:
            notes.append(f"first of {im.n_frames} frames")
        im.load()
        im = ImageOps.exif_transpose(im) or im
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{name} has too many pixels; images up to "
                         f"{MAX_PIXELS / 1e6:.0f} megapixels are accepted") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise InputError(f"{name} is not an image this demo can read; upload a PNG, JPEG, "
                         f"WebP, GIF or BMP file") from None
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
        notes.append("transparency flattened onto white")
    elif im.mode != "RGB":
        notes.append(f"{'grayscale' if im.mode in ('L', '1', 'I', 'I;16', 'F') else im.mode} "
                     f"converted to RGB")
    im = im.convert("RGB")
    prep = {**DEFAULT_PREPROCESS, **(preprocess or {})}
    resample = RESAMPLING.get(str(prep["resize"]))
    if prep["crop"] != "center" or resample is None:
        raise InputError(f"this model asks for preprocessing the demo does not know: {prep}")
    w, h = im.size
    if w != h:
        s = min(w, h)
        left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))  # as torchvision
        im = im.crop((left, top, left + s, top + s))
        notes.append(f"centre {s}x{s} of {w}x{h} cropped")
    if im.size != (size, size):
        notes.append(f"resized from {im.width}x{im.height} to {size}x{size}")
        im = im.resize((size, size), resample)
    return np.asarray(im, dtype=np.uint8), notes


def domain_targets(model: Model, targets: Sequence[str],
                   source: Sequence[str] = ()) -> list[tuple[str, np.ndarray]]:
    """(label, domain vector) per target, applied to the ``source`` domains.

    A member of an exclusive set (a hair colour) is switched on and its siblings off;
    any other domain is flipped (on if the input lacks it, off if it has it), as the
    official StarGAN test grid does (tagvocab ``Domains.grid_targets``). No targets:
    every domain. The label of a domain switched off is "no <domain>".
    """
    domains = model.meta.domain_vocab
    src = model.encode_domains(list(source))
    with as_input_error():
        plan = domains.grid_targets(src, list(targets) or None)
    return [(d if domains.is_exclusive(d) or src[domains.index(d)] == 0 else f"no {d}", v)
            for d, v in plan]


def source_domains(model: Model, names: Sequence[str]) -> list[str]:
    """The model's domains among ``names`` (case ignored), in the model's order."""
    return model.meta.domain_vocab.among(names)


def target_choices(model: Model, source: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, domain) of every change an input with the ``source`` domains can take.

    A member of an exclusive set that the input has (its own hair colour) is no change
    and is left out; any other domain it has is offered as "no X" (domain_targets
    switches it off), so a short-haired face is never offered "Short_Hair".
    """
    domains = model.meta.domain_vocab
    has = set(domains.among(source))
    return [(f"no {d}" if d in has else d, d) for d in domains.names
            if not (d in has and domains.is_exclusive(d))]


# -- files ----------------------------------------------------------------------------
def output_dir() -> Path:
    """Where result PNGs are written (under the system temp dir, which gradio may serve)."""
    d = Path(tempfile.gettempdir()) / "tagface-demo"
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_png(image: np.ndarray, stem: str, text: Mapping[str, str]) -> str:
    """Write a lossless PNG with ``text`` chunks; delete outputs older than KEEP_OUTPUTS_S."""
    folder = output_dir()
    now = time.time()
    for old in folder.glob("*.png"):
        try:
            if now - old.stat().st_mtime > KEEP_OUTPUTS_S:
                old.unlink()
        except OSError:
            pass  # another request removed it first
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    stem = re.sub(r"[^A-Za-z0-9_.=-]+", "-", stem).strip("-")[:150]
    path = folder / f"{stem}.png"
    tmp = folder / f".{stem}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)
    return str(path)


def _upload_source(payload: Any) -> str | bytes:
    """The file (path) or bytes of an Image input that gradio did not preprocess."""
    if isinstance(payload, (str, Path)):
        return str(payload)
    if isinstance(payload, Mapping):
        if payload.get("path"):
            return str(payload["path"])
        url = payload.get("url") or ""
        if url.startswith("data:") and "," in url:
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=False)
            except (binascii.Error, ValueError):
                pass
    raise InputError("upload an image (or pick an example) first")


# -- the page -------------------------------------------------------------------------
def api_names(groups: Sequence[str]) -> dict[str, str]:
    """API parameter name of each tag group's dropdown (the group name when it can be one)."""
    out: dict[str, str] = {}
    for i, g in enumerate(groups):
        word = re.sub(r"\W", "_", g)
        for name in (word, f"{word}_tag", f"tag_{i}"):
            if name.isidentifier() and not keyword.iskeyword(name) \
                    and name not in CHOICE_NAMES and name not in out.values():
                out[g] = name
                break
    return out


def caption(name: str, m: Model, grid: Grid, mode: str, seeds: str, ms: float,
            psi: float = 1.0) -> str:
    """The Markdown caption of a Generate-tab result: where it ran, how long, which tags."""
    n = len(grid.cells)
    head = (f"`{name}` on **{m.provider}**: {n} image{'s' * (n != 1)} in {ms:.0f} ms, "
            f"{seeds}" + (f", truncation psi {psi:g}" if psi < 1 else "")
            + "".join(f", {x}" for x in grid.notes) + ".")
    if not m.meta.tag_groups:
        return head
    if mode == NOISE:
        if all(c == grid.cells[0] for c in grid.cells):
            return head + f" Tags: {_tags_text(grid.cells[0])}."
        shown = "; ".join(f"{i + 1}: {_tags_text(c)}" for i, c in enumerate(grid.cells[:16]))
        return head + f" Tags by cell, row by row: {shown}" + ("; ..." if n > 16 else ".")
    group = mode[len(EVERY):]
    cols = [c[group] for c in grid.cells[:grid.cols]]
    others = sorted({_tags_text({k: v for k, v in c.items() if k != group})
                     for c in grid.cells})
    return head + (f" Columns: {', '.join(cols)} {group}; each row one noise vector "
                   f"({'; '.join(others[:8])}).")



def _tags_text(tags: Mapping[str, str]) -> str:
    return " ".join(f"{v} {k}" for k, v in tags.items()) or "no tags"


def _model_line(m: Model) -> str:
    return f"Runs on **{m.provider}** · {m.meta.image_size} px · step {m.meta.step}"


def _orig_name(payload: Any) -> str:
    if isinstance(payload, Mapping):
        return str(payload.get("orig_name") or "upload")
    return Path(str(payload)).name if isinstance(payload, (str, Path)) else "upload"


def _digest(pixels: np.ndarray) -> str:
    return hashlib.sha1(pixels.tobytes()).hexdigest()[:10]
