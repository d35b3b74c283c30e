"""The demo's models folder: every ``*.onnx`` opened with export.runtime, plus examples/.

Plain Python on ``export.runtime`` (no Gradio, no torch); re-exported by demo.core.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from demo.examples import ATTRIBUTES as EXAMPLE_ATTRIBUTES
from export.runtime import InputError, Model, load_model

log = logging.getLogger("tagface.demo")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


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


def models_table(cat: Catalog) -> str:
    """Markdown: each model, what it takes and which ONNX Runtime provider runs it."""
    rows = ["| model | kind | runs on | step |", "|---|---|---|---|"]
    for name, m in cat.models.items():
        meta = m.meta
        if meta.kind == "stargan":
            what = (f"StarGAN {meta.image_size} px: {', '.join(meta.domains)}"
                    + ("; told target minus the input's domains" if meta.takes_source else ""))
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
