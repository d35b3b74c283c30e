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
The pure part (models folder, grids, walks, uploads, domains, captions, files) lives in
``demo.core``, which imports no Gradio; this module is the page and its handlers.

    demo = build_app("models")       # module level works too: the models load at once
    demo.launch(css=CSS)             # python -m demo adds the CLI, limits and messages
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from demo.core import (  # noqa: F401  (re-exported: the page's module names them too)
    DEFAULT_UPLOAD_MB,
    EVERY,
    MAX_COUNT,
    MAX_FRAMES,
    MAX_PIXELS,
    MAX_ROWS,
    NOISE,
    PAD,
    Catalog,
    DemoError,
    Example,
    Grid,
    _digest,
    _int,
    _model_line,
    _orig_name,
    _psi,
    _tags_text,
    _upload_source,
    api_names,
    caption,
    domain_targets,
    find_examples,
    generate_grid,
    load_catalog,
    mode_choices,
    models_table,
    read_upload,
    resolve_tags,
    save_png,
    source_domains,
    tag_choices,
    target_choices,
    tile,
    walk_strip,
)
from export.runtime import RANDOM, InputError, Model

CSS = """#gen-output img, #tr-output img {width: 100%; height: 100%; object-fit: contain;}
#gen-output img, #tr-output img, #tr-input img {image-rendering: pixelated;}"""  # launch(css=)


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
        return path, caption(name, m, grid, mode, f"seed {seed_i}", ms, psi_f)

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
        return path, caption(name, m, grid, NOISE, f"seed {a} to seed {b}", ms, psi_f)

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
            out = m.translate(pixels[None], np.stack([v for _, v in plan]),  # [K, S, S, 3]
                              source=list(source or []))
            ms = (time.perf_counter() - t0) * 1000
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None
        labels = ["input", *(label for label, _ in plan)]
        path = save_png(tile(np.concatenate([pixels[None], out]), len(labels)),
                        f"{name}_{_digest(pixels)}_" + "-".join(labels[1:])
                        + ("_from-" + "-".join(source) if source else ""),
                        {"tagface:model": name, "tagface:columns": json.dumps(labels),
                         "tagface:source": json.dumps(list(source or []))})
        done = f"; input: {', '.join(notes)}" if notes else ""
        caption = (f"`{name}` on **{m.provider}**: {len(plan)} translation"
                   f"{'s' * (len(plan) != 1)} in {ms:.0f} ms{done}. Columns: "
                   + " | ".join(labels) + ("" if targets else " (no target ticked: every "
                                           "domain)") + ".")
        if m.meta.takes_source and not source:
            caption += (" Nothing is ticked under \"The input already has\": this model is "
                        "told the change, target minus those domains, so a new hair colour "
                        "reads as added to none; tick the input's own if it has one.")
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
