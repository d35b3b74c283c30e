"""The Gradio app: every ``.onnx`` file of a models folder, one ONNX Runtime session each.

Tab "Generate" (GAN models): one dropdown per tag group read from the model's
metadata ("random" allowed), a seed, a count, a truncation psi and two experiments:
"same tags, different noise" and "same noise, every <group> tag"; and a latent walk
from the seed's noise to another seed's. Tab "Style transfer" (StarGAN models): an
upload or an example from ``DIR/examples/`` (its domains ticked from the sidecar), the
domains the input already has, the changes it can take; input and translations side
by side. Outputs are PNG files written here (exact pixels, the request in PNG text
chunks), returned once per call.

Named API endpoints for gradio_client (docs/demo.md): ``/generate``, ``/walk`` and
``/translate``. They take the components' raw values (``preprocess=False``) and check
them here, so every bad value is one ``gr.Error`` line, never a gradio traceback.
Only ``export.runtime`` (numpy + onnxruntime) runs the models; torch is never imported.

    demo = build_app("models")       # module level works too: the models load at once
    demo.launch(css=CSS)             # python -m demo adds the CLI, limits and messages
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import keyword
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from demo.examples import ATTRIBUTES as EXAMPLE_ATTRIBUTES
from export.runtime import RANDOM, InputError, Model, load_model, slerp

log = logging.getLogger("tagface.demo")

NOISE = "noise"  # mode: same tags, different noise
EVERY = "every "  # mode prefix: same noise, every tag of one group ("every hair")
MAX_COUNT = 64  # images of one "noise" request
MAX_ROWS = 16  # noise rows of one "every <group>" grid
MAX_FRAMES = 32  # frames of one latent walk
MAX_PIXELS = 40_000_000  # uploads with more pixels are refused before decoding
DEFAULT_UPLOAD_MB = 10.0  # the CLI's --max-upload-mb default
PAD = 2  # white pixels between grid cells
CSS = """#gen-output img, #tr-output img {width: 100%; height: 100%; object-fit: contain;}
#gen-output img, #tr-output img, #tr-input img {image-rendering: pixelated;}"""  # launch(css=)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
KEEP_OUTPUTS_S = 3600  # written PNGs older than this are deleted
CHOICE_NAMES = ("model", "seed", "count", "mode", "psi",  # generate's own parameters
                "seed_a", "seed_b", "frames")  # and walk's
# How image inputs are prepared when a model's metadata has no "preprocess" (files of
# format 1): what training always did. PIL filters by the metadata's names.
DEFAULT_PREPROCESS = {"alpha": "white", "crop": "center", "resize": "bilinear"}
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}


class DemoError(ValueError):
    """A models folder the demo cannot serve; the message says what to do."""


# -- the models folder ----------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    path: Path
    source: tuple[str, ...] = ()  # domains the pictured face has (DIR/examples/<stem>.json)


@dataclass
class Catalog:
    """What a models folder holds, loaded: one ORT session per model."""

    folder: Path
    generators: dict[str, Model] = field(default_factory=dict)  # file stem -> GAN model
    translators: dict[str, Model] = field(default_factory=dict)  # file stem -> StarGAN model
    examples: list[Example] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file: reason", shown on the page

    @property
    def models(self) -> dict[str, Model]:
        return {**self.generators, **self.translators}


def load_catalog(models_dir: str | Path, device: str = "auto") -> Catalog:
    """Open every ``*.onnx`` of ``models_dir`` and list ``examples/``; DemoError if none loads."""
    folder = Path(models_dir)
    if not folder.is_dir():
        raise DemoError(f"--models {models_dir}: no such folder")
    files = sorted(folder.glob("*.onnx"))
    if not files:
        raise DemoError(f"{folder}: no .onnx files; export one with "
                        f"`python -m export --run RUN --out {folder}`")
    cat = Catalog(folder)
    for f in files:
        try:
            model = load_model(f, device)
        except InputError as e:
            if device == "cuda":
                raise DemoError(str(e)) from None
            cat.skipped.append(f"{f.name}: {e}")
            continue
        except Exception as e:  # a file ONNX Runtime rejects in a way the runtime did not map
            cat.skipped.append(f"{f.name}: {type(e).__name__}: {e}")
            continue
        (cat.translators if model.meta.kind == "stargan" else cat.generators)[f.stem] = model
    if not cat.models:
        raise DemoError(f"{folder}: none of the .onnx files could be loaded:\n  "
                        + "\n  ".join(cat.skipped))
    cat.examples = find_examples(folder / "examples")
    return cat


def find_examples(folder: Path) -> list[Example]:
    """Images of ``folder``, each with the domains it has: from ``attributes.json``
    (``{"1.png": ["Blond_Hair", ...]}``, written by ``python -m demo.examples``) or an
    image's own ``<stem>.json`` (``{"source": ["Black_Hair", ...]}``)."""
    if not folder.is_dir():
        return []
    table: dict[str, list[str]] = {}
    listing = folder / EXAMPLE_ATTRIBUTES
    if listing.is_file():
        try:
            table = {str(k): [str(a) for a in v] for k, v in json.loads(listing.read_text()).items()}
        except (ValueError, AttributeError, TypeError) as e:
            log.warning("%s: ignored (%s)", listing.name, e)
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        source: tuple[str, ...] = tuple(table.get(p.name, ()))
        side = p.with_suffix(".json")
        if side.is_file():
            try:
                source = tuple(str(s) for s in json.loads(side.read_text()).get("source", []))
            except (ValueError, AttributeError, TypeError) as e:
                log.warning("%s: ignored (%s)", side.name, e)
        out.append(Example(p, source))
    return out


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
    out = {}
    for g in model.meta.tag_groups:
        value = next((tags[k] for k in (g.name, *g.aliases) if tags.get(k)), RANDOM)
        v = str(value).strip().lower()
        if v == RANDOM:
            out[g.name] = RANDOM
            continue
        match = [t for t in g.tags if t.lower() == v]
        if not match:
            raise InputError(f"unknown {g.name} tag {value!r}; valid {g.name} tags are "
                             f"{', '.join(g.tags)} (or {RANDOM})")
        out[g.name] = match[0]
    return out


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
        """n tag dicts with every "random" group drawn per dict."""
        drawn = {g.name: (rng.integers(len(g.tags), size=n) if choice[g.name] == RANDOM
                          else None) for g in groups}
        return [{g.name: choice[g.name] if drawn[g.name] is None
                 else g.tags[int(drawn[g.name][i])] for g in groups} for i in range(n)]

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


def _draw_tags(model: Model, choice: Mapping[str, str], rng: np.random.Generator
               ) -> dict[str, str]:
    """One tag per group: the chosen one, or a draw from ``rng`` for "random"."""
    return {g.name: g.tags[int(rng.integers(len(g.tags), size=1)[0])] if choice[g.name] == RANDOM
            else choice[g.name] for g in model.meta.tag_groups}


def walk_strip(model: Model, tags: Mapping[str, str | None], seed_a: int, seed_b: int,
               frames: int, psi: float = 1.0) -> Grid:
    """A latent walk: ``frames`` images from seed A's noise to seed B's (slerp), one row.

    Each end is the first image of its seed's "noise" grid (same noise, and "random"
    groups drawn the same way, from seed A for the whole strip), so only the noise moves.
    """
    choice = resolve_tags(model, tags)
    rng = np.random.default_rng(seed_a)
    z_a = model.sample_z(1, rng, psi)
    cell = _draw_tags(model, choice, rng)
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
    official StarGAN test grid does. No targets: every domain.
    """
    names = model.meta.domains
    src = model.encode_domains(list(source))
    out = []
    for target in targets or names:
        d = next((n for n in names if n.lower() == str(target).strip().lower()), None)
        if d is None:
            raise InputError(f"unknown domain {target!r}; this model's domains are "
                             f"{', '.join(names)}")
        if any(d in group for group in model.meta.exclusive):
            out.append((d, model.encode_domains([d], source=src)))
        else:
            on = src[names.index(d)] == 0
            out.append((d if on else f"no {d}", model.encode_domains({d: float(on)}, source=src)))
    return out


def source_domains(model: Model, names: Sequence[str]) -> list[str]:
    """The model's domains among ``names`` (case ignored), in the model's order."""
    want = {str(n).strip().lower() for n in names}
    return [d for d in model.meta.domains if d.lower() in want]


def target_choices(model: Model, source: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, domain) of every change an input with the ``source`` domains can take.

    A member of an exclusive set that the input has (its own hair colour) is no change
    and is left out; any other domain it has is offered as "no X" (domain_targets
    switches it off), so a short-haired face is never offered "Short_Hair".
    """
    has = set(source_domains(model, source))
    out = []
    for d in model.meta.domains:
        if d in has and any(d in group for group in model.meta.exclusive):
            continue
        out.append((f"no {d}" if d in has else d, d))
    return out


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


def models_table(cat: Catalog) -> str:
    """Markdown: each model, what it takes and which ONNX Runtime provider runs it."""
    rows = ["| model | kind | runs on | step |", "|---|---|---|---|"]
    for name, m in cat.models.items():
        meta = m.meta
        if meta.kind == "stargan":
            what = f"StarGAN {meta.image_size} px: {', '.join(meta.domains)}"
        else:
            groups = ", ".join(f"{g.name} ({len(g.tags)})" for g in meta.tag_groups)
            what = f"GAN {meta.image_size} px" + (f", tags {groups}" if groups else
                                                   ", unconditional")
        rows.append(f"| `{name}` | {what} | **{m.provider}** | {meta.step} |")
    text = "\n".join(rows)
    reasons = sorted({f"{m.provider}: {m.provider_reason}" for m in cat.models.values()
                      if m.provider_reason})
    if reasons:
        text += "\n\nWhy: " + "; ".join(reasons) + "."
    if cat.skipped:
        text += "\n\nNot loaded: " + "; ".join(f"`{s}`" for s in cat.skipped)
    return text


class DemoApp:
    """The event handlers of one page, bound to a loaded Catalog."""

    def __init__(self, catalog: Catalog, max_upload_mb: float = DEFAULT_UPLOAD_MB):
        self.catalog = catalog
        self.max_bytes = int(max_upload_mb * 2**20)
        groups: list[str] = []
        for m in catalog.generators.values():
            groups += [g.name for g in m.meta.tag_groups if g.name not in groups]
        self.groups = groups  # union of the GAN models' tag groups, one dropdown each
        self.params = api_names(groups)

    def _model(self, name: str | None, pool: Mapping[str, Model],
               what: str) -> tuple[str, Model]:
        """(name, model) of ``name`` in ``pool``; no name: the first."""
        if not pool:
            raise InputError(f"no {what} model in {self.catalog.folder.name}/")
        name = name or next(iter(pool))
        if name not in pool:
            raise InputError(f"unknown {what} model {name!r}; choose one of {', '.join(pool)}")
        return name, pool[name]

    # -- endpoints --------------------------------------------------------------------
    def generate(self, model: str, seed: float = 0, count: float = 8, mode: str = NOISE,
                 psi: float = 1.0, **tags: str) -> tuple[str, str]:
        """A grid PNG of a GAN model. Tags: one keyword per tag group (e.g. hair="blue",
        eyes="random"); mode "noise" (same tags, different noise) or "every <group>"
        (same noise, every tag of the group); psi: truncation in (0, 1], 1 = off.
        Returns (grid PNG, a Markdown caption)."""
        mode = mode or NOISE
        try:
            name, m = self._model(model, self.catalog.generators, "GAN")
            seed_i = _int(seed, "seed", 0, 2**63 - 1)
            count_i = _int(count, "count", 1, MAX_COUNT)
            psi_f = _psi(psi)
            request = resolve_tags(m, {g: tags.get(p) for g, p in self.params.items()})
            t0 = time.perf_counter()
            grid = generate_grid(m, request, seed_i, count_i, str(mode), psi_f)
            ms = (time.perf_counter() - t0) * 1000
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None
        trunc = f"_psi{psi_f:g}" if psi_f < 1 else ""
        stem = (f"{name}_{_tags_text(request)}_{mode}_seed{seed_i}_x{count_i}{trunc}"
                .replace(" ", "-"))
        path = save_png(grid.image, stem, {
            "tagface:model": name, "tagface:mode": mode, "tagface:seed": str(seed_i),
            "tagface:count": str(count_i), "tagface:psi": f"{psi_f:g}",
            "tagface:tags": json.dumps(grid.cells)})
        return path, self._caption(name, m, grid, mode, f"seed {seed_i}", ms, psi_f)

    def walk(self, model: str, seed_a: float = 0, seed_b: float = 1, frames: float = 8,
             psi: float = 1.0, **tags: str) -> tuple[str, str]:
        """A latent walk of a GAN model: one row of ``frames`` images whose noise moves
        from seed A's to seed B's (spherical interpolation), tags fixed ("random" groups
        drawn once, from seed A). Returns (strip PNG, a Markdown caption)."""
        try:
            name, m = self._model(model, self.catalog.generators, "GAN")
            a = _int(seed_a, "seed A", 0, 2**63 - 1)
            b = _int(seed_b, "seed B", 0, 2**63 - 1)
            n = _int(frames, "frames", 2, MAX_FRAMES)
            psi_f = _psi(psi)
            request = resolve_tags(m, {g: tags.get(p) for g, p in self.params.items()})
            t0 = time.perf_counter()
            grid = walk_strip(m, request, a, b, n, psi_f)
            ms = (time.perf_counter() - t0) * 1000
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None
        trunc = f"_psi{psi_f:g}" if psi_f < 1 else ""
        stem = f"{name}_{_tags_text(request)}_walk_seed{a}-{b}_x{n}{trunc}".replace(" ", "-")
        path = save_png(grid.image, stem, {
            "tagface:model": name, "tagface:mode": "walk", "tagface:seeds": f"{a},{b}",
            "tagface:frames": str(n), "tagface:psi": f"{psi_f:g}",
            "tagface:tags": json.dumps(grid.cells[0])})
        return path, self._caption(name, m, grid, NOISE, f"seed {a} to seed {b}", ms, psi_f)

    def _caption(self, name: str, m: Model, grid: Grid, mode: str, seeds: str,
                 ms: float, psi: float = 1.0) -> str:
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

    def translate(self, model: str, image: Any, targets: Sequence[str] | None = None,
                  source: Sequence[str] | None = None) -> tuple[str, str]:
        """A StarGAN strip PNG: the input (cropped and resized to the model's size), then
        one translation per target domain (all domains if none). ``source``: domains the
        input already has. Returns (strip PNG, a Markdown caption)."""
        try:
            name, m = self._model(model, self.catalog.translators, "StarGAN")
            upload = _upload_source(image)
            pixels, notes = read_upload(upload, m.meta.image_size, self.max_bytes,
                                        _orig_name(image), m.meta.preprocess)
            plan = domain_targets(m, list(targets or []), list(source or []))
            t0 = time.perf_counter()
            out = m.translate(pixels[None], np.stack([v for _, v in plan]))  # [K, S, S, 3]
            ms = (time.perf_counter() - t0) * 1000
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None
        labels = ["input", *(label for label, _ in plan)]
        path = save_png(tile(np.concatenate([pixels[None], out]), len(labels)),
                        f"{name}_{_digest(pixels)}_" + "-".join(labels[1:]),
                        {"tagface:model": name, "tagface:columns": json.dumps(labels),
                         "tagface:source": json.dumps(list(source or []))})
        done = f"; input: {', '.join(notes)}" if notes else ""
        caption = (f"`{name}` on **{m.provider}**: {len(plan)} translation"
                   f"{'s' * (len(plan) != 1)} in {ms:.0f} ms{done}. Columns: "
                   + " | ".join(labels) + ("" if targets else " (no target ticked: every "
                                           "domain)") + ".")
        return path, caption

    # -- page updates (not API endpoints) ----------------------------------------------
    def on_example(self, model: str, evt: gr.SelectData) -> tuple[str, list[str]]:
        """The clicked example image and the domains of the model that its sidecar lists
        (names matched without case)."""
        ex = self.catalog.examples[evt.index]  # type: ignore[index]
        shown = evt.value.get("image") if isinstance(evt.value, Mapping) else None
        cached = shown.get("path") if isinstance(shown, Mapping) else None  # gradio's copy
        m = self.catalog.translators.get(model) or next(iter(self.catalog.translators.values()))
        return str(cached or ex.path), source_domains(m, ex.source)

    def on_source(self, model: str, source: Sequence[str] | None,
                  targets: Sequence[str] | None) -> Any:
        """Target checkboxes for the input's domains: see target_choices."""
        m = self.catalog.translators.get(model)
        if m is None:
            return gr.update()
        choices = target_choices(m, list(source or []))
        kept = [t for t in targets or [] if t in {v for _, v in choices}]
        return gr.update(choices=choices, value=kept)

    def on_generator(self, model: str) -> list[Any]:
        """Dropdowns, modes and info line for the chosen GAN model."""
        m = self.catalog.generators.get(model)
        if m is None:
            return [gr.update() for _ in self.groups] + [gr.update(), ""]
        choices = tag_choices(m)
        dd = [gr.update(choices=choices[g], value=RANDOM, visible=True) if g in choices
              else gr.update(visible=False) for g in self.groups]
        return dd + [gr.update(choices=mode_choices(m), value=NOISE), _model_line(m)]

    def on_translator(self, model: str) -> list[Any]:
        """Domain checkboxes and info line for the chosen StarGAN model."""
        m = self.catalog.translators.get(model)
        if m is None:
            return [gr.update(), gr.update(), ""]
        d = list(m.meta.domains)
        return [gr.update(choices=d, value=[]), gr.update(choices=target_choices(m), value=[]),
                _model_line(m)]


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


def build_app(models_dir: str | Path, *, device: str = "auto",
              max_upload_mb: float = DEFAULT_UPLOAD_MB) -> gr.Blocks:
    """The page for ``models_dir``: every model loaded once, here. DemoError if none loads."""
    cat = load_catalog(models_dir, device)
    app = DemoApp(cat, max_upload_mb)
    with gr.Blocks(title="tagface demo", analytics_enabled=False) as demo:
        gr.Markdown("# tagface\nGANs trained with tagface, exported to ONNX, running on "
                    "ONNX Runtime in this process.")
        gr.Markdown(models_table(cat), elem_id="models")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                _generate_tab(app)
            with gr.Tab("Style transfer", id="transfer", elem_id="tab-transfer"):
                _transfer_tab(app, max_upload_mb)
    demo.tagface_app = app  # type: ignore[attr-defined]  # for tests and the CLI
    return demo


def _generate_tab(app: DemoApp) -> None:
    gens = app.catalog.generators
    if not gens:
        gr.Markdown(f"No GAN model in `{app.catalog.folder.name}/`: export one with "
                    f"`python -m export --run RUN --out {app.catalog.folder.name}`.")
        return
    first_name, first = next(iter(gens.items()))
    choices = tag_choices(first)
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            model = gr.Dropdown(list(gens), value=first_name, label="Model",
                                elem_id="gen-model", visible=len(gens) > 1)
            info = gr.Markdown(_model_line(first))
            dropdowns = {g: gr.Dropdown(choices.get(g, [RANDOM]), value=RANDOM,
                                        label=g.capitalize(), visible=g in choices,
                                        allow_custom_value=True, elem_id=f"tag-{app.params[g]}")
                         for g in app.groups}
            mode = gr.Radio(mode_choices(first), value=NOISE, label="Grid",
                            elem_id="gen-mode")
            with gr.Row():
                seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="gen-seed")
                count = gr.Slider(1, MAX_COUNT, value=8, step=1, label="Count",
                                  info=f"images; rows (up to {MAX_ROWS}) of an 'every' grid",
                                  elem_id="gen-count")
            psi = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="truncation psi",
                            info="1 = off; lower trades variety for fidelity (noise "
                                 "coordinates beyond the psi quantile are redrawn)",
                            elem_id="gen-psi")
            with gr.Row():
                dice = gr.Button("New seed", size="sm")
                go = gr.Button("Generate", variant="primary", elem_id="gen-button")
            with gr.Accordion("Latent walk: from one seed's noise to another's", open=False,
                              elem_id="walk"):
                with gr.Row():
                    seed_b = gr.Number(1, label="to seed", precision=0, minimum=0,
                                       elem_id="walk-seed-b")
                    frames = gr.Slider(2, MAX_FRAMES, value=8, step=1, label="Frames",
                                       elem_id="walk-frames")
                walk = gr.Button("Walk from Seed to this seed", elem_id="walk-button")
        with gr.Column(scale=2):
            grid = gr.Image(label="Grid (PNG)", type="filepath", format="png", height=520,
                            interactive=False, elem_id="gen-output",
                            buttons=["download", "fullscreen"])
            caption = gr.Markdown(label="Caption", elem_id="gen-caption")
    tag_inputs = {app.params[g]: dd for g, dd in dropdowns.items()}
    # preprocess=False: the raw values reach the app, whose own checks answer in one line
    # (gradio's would print a traceback and let seed 1.5 through, rounded).
    go.click(app.generate, inputs=[model, seed, count, mode, psi], inputs_kwargs=tag_inputs,
             outputs=[grid, caption], api_name="generate", preprocess=False)
    walk.click(app.walk, inputs=[model, seed, seed_b, frames, psi], inputs_kwargs=tag_inputs,
               outputs=[grid, caption], api_name="walk", preprocess=False)
    dice.click(lambda: int(np.random.default_rng().integers(2**31)), outputs=seed,
               api_visibility="private", queue=False)
    model.change(app.on_generator, inputs=model, outputs=[*dropdowns.values(), mode, info],
                 api_visibility="private", queue=False)


def _transfer_tab(app: DemoApp, max_upload_mb: float) -> None:
    trs = app.catalog.translators
    if not trs:
        gr.Markdown(f"No StarGAN model in `{app.catalog.folder.name}/`: export one with "
                    f"`python -m export --run RUN --out {app.catalog.folder.name}`.")
        return
    first_name, first = next(iter(trs.items()))
    domains = list(first.meta.domains)
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            model = gr.Dropdown(list(trs), value=first_name, label="Model",
                                elem_id="tr-model", visible=len(trs) > 1)
            info = gr.Markdown(_model_line(first))
            image = gr.Image(label=f"Input image (any size or mode, up to "
                                   f"{max_upload_mb:g} MB)", type="filepath", image_mode=None,
                             sources=["upload", "clipboard"], elem_id="tr-input")
            source = gr.CheckboxGroup(domains, label="The input already has",
                                      elem_id="tr-source")
            targets = gr.CheckboxGroup(target_choices(first), label="Translate to (one column "
                                       "each; none ticked = every domain)",
                                       elem_id="tr-targets")
            go = gr.Button("Translate", variant="primary", elem_id="tr-button")
            examples = app.catalog.examples
            if examples:
                gallery = gr.Gallery([(str(e.path), ", ".join(e.source) or e.path.stem)
                                      for e in examples], label="Examples: click one",
                                     columns=6, height=240, allow_preview=False,
                                     interactive=False, elem_id="tr-examples")
                gallery.select(app.on_example, inputs=model, outputs=[image, source],
                               api_visibility="private", queue=False)
        with gr.Column(scale=2):
            strip = gr.Image(label="Input and translations (PNG)", type="filepath", height=300,
                             format="png", interactive=False, elem_id="tr-output",
                             buttons=["download", "fullscreen"])
            caption = gr.Markdown(label="Caption", elem_id="tr-caption")
    go.click(app.translate, inputs=[model, image, targets, source], outputs=[strip, caption],
             api_name="translate", preprocess=False)
    # An uploaded face's domains are unknown: untick what an example had set.
    image.upload(lambda: [], outputs=source, api_visibility="private", queue=False)
    # What the input has decides which changes are offered (and how they are labelled).
    source.change(app.on_source, inputs=[model, source, targets], outputs=targets,
                  api_visibility="private", queue=False)
    model.change(app.on_translator, inputs=model, outputs=[source, targets, info],
                 api_visibility="private", queue=False)


def __getattr__(name: str) -> gr.Blocks:
    """``demo.app.demo``: the page for $TAGFACE_MODELS (default ``models``), built on first
    use, so that ``gradio demo/app.py`` (reload mode) finds a module-level app."""
    if name == "demo":
        if "_demo" not in globals():
            globals()["_demo"] = build_app(os.environ.get("TAGFACE_MODELS", "models"))
        return globals()["_demo"]
    raise AttributeError(name)
