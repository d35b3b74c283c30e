"""The demo in a real browser: Debian's chromium driven by the playwright package.

Selects tags, clicks Generate, waits for the grid, switches to Style transfer, picks an
example and uploads an image, and checks the translated output (PNG size and caption).

No browser is downloaded: the test skips unless /usr/bin/chromium exists
(``apt-get install chromium``; .ci/run installs it).
``TAGFACE_SCREENSHOTS=docs`` saves both tabs as docs/demo_generate.png and
docs/demo_transfer.png (an example face translated, where the models have examples with
their domains; each under 300 KB); ``TAGFACE_DEMO_MODELS=DIR`` serves DIR
(e.g. trained models) instead of the tiny untrained test models.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_demo import ROOT, serve, shared_models

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MAX_SCREENSHOT = 300_000  # bytes
WAIT_MS = 60_000  # for an output to appear (a busy 2-core machine is slow)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at "
                       "/usr/bin/chromium (apt-get install chromium); no browser is downloaded"),
]


def save_screenshot(page, name: str) -> None:
    """Full-page PNG into $TAGFACE_SCREENSHOTS (relative to the repo), under 300 KB."""
    folder = os.environ.get("TAGFACE_SCREENSHOTS")
    if not folder:
        return
    out = (ROOT / folder if not Path(folder).is_absolute() else Path(folder)) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    im = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    for colours in (256, 128, 64):  # a page is flat colours: a palette keeps it sharp
        buf = io.BytesIO()
        im.quantize(colours, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
        if buf.tell() < MAX_SCREENSHOT:
            break
    assert buf.tell() < MAX_SCREENSHOT, f"{name}: {buf.tell()} bytes"
    out.write_bytes(buf.getvalue())


def shown_png(page, selector: str, previous: str | None = None) -> tuple[str, np.ndarray]:
    """src and pixels of the image in ``selector`` once it is there (and not ``previous``)."""
    img = page.locator(f"{selector} img")
    img.wait_for(state="visible", timeout=WAIT_MS)
    if previous is not None:
        page.wait_for_function(
            "([sel, old]) => { const i = document.querySelector(sel + ' img');"
            " return i && i.src && i.src !== old; }", arg=[selector, previous], timeout=WAIT_MS)
    src = img.get_attribute("src")
    assert src
    body = page.request.get(src).body()
    assert body[:8] == b"\x89PNG\r\n\x1a\n", "the page shows a PNG, not a lossy format"
    return src, np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def pick(page, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    options = page.get_attribute(f"{dropdown} input", "aria-controls")  # this list only
    page.locator(f"#{options} [role=option][aria-label='{option}']").click()
    assert page.input_value(f"{dropdown} input") == option


def test_generate_then_style_transfer(tmp_path_factory: pytest.TempPathFactory,
                                      tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from demo.app import domain_targets, find_examples, read_upload, source_domains, target_choices
    from export.runtime import load_model

    models = Path(os.environ.get("TAGFACE_DEMO_MODELS") or shared_models(tmp_path_factory))
    gan = next(m for m in map(load_model, sorted(models.glob("*.onnx"))) if m.meta.kind == "gan"
               and m.meta.tag_groups)
    star = next(m for m in map(load_model, sorted(models.glob("*.onnx")))
                if m.meta.kind == "stargan")
    hair, eyes = gan.meta.tag_groups[:2]
    hair_tag = "blue" if "blue" in hair.tags else hair.tags[0]
    eyes_tag = "red" if "red" in eyes.tags else eyes.tags[-1]
    size, target = gan.meta.image_size, star.meta.domains[1]

    upload = tmp_path / "portrait.png"  # not square, with transparency: gets converted
    rgba = np.random.default_rng(0).integers(0, 256, (90, 70, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(upload)

    with serve(models, tmp_path, "--device", "cpu") as server, \
            sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url, timeout=WAIT_MS)
            page.wait_for_selector("#gen-button", timeout=WAIT_MS)
            assert "CPUExecutionProvider" in page.inner_text("#models")

            # Generate: same tags, different noise.
            pick(page, f"#tag-{hair.name}", hair_tag)
            pick(page, f"#tag-{eyes.name}", eyes_tag)
            page.fill("#gen-seed input", "4")
            page.click("#gen-button")
            src, grid = shown_png(page, "#gen-output")
            assert grid.shape == (3 * size + 4, 3 * size + 4, 3)  # 8 images: 3 x 3
            caption = page.inner_text("#gen-caption")
            assert f"{hair_tag} {hair.name} {eyes_tag} {eyes.name}" in caption, caption
            assert "CPUExecutionProvider" in caption

            # Same noise, every hair tag: a new image with one column per hair tag.
            page.get_by_label(f"same noise, every {hair.name} tag").check()
            page.fill("#gen-count input[type=number]", "3")
            page.locator("#gen-count input[type=number]").press("Enter")
            page.click("#gen-button")
            _, sweep = shown_png(page, "#gen-output", previous=src)
            assert sweep.shape == (3 * (size + 2) - 2, len(hair.tags) * (size + 2) - 2, 3)
            save_screenshot(page, "demo_generate.png")

            # Style transfer: an example sets the input and its domains; then an upload.
            page.get_by_role("tab", name="Style transfer").click()
            page.wait_for_selector("#tr-button", timeout=WAIT_MS)
            examples = find_examples(models / "examples")
            known = [i for i, e in enumerate(examples) if source_domains(star, e.source)]
            if known:
                # The example's domains are ticked (its sidecar), and a non-hair target
                # keeps the rest of them: the hair colour goes into the domain vector.
                ex = examples[known[0]]
                has = source_domains(star, ex.source)
                page.locator("#tr-examples button.thumbnail-item").nth(known[0]).click()
                page.locator("#tr-input img").wait_for(state="visible", timeout=WAIT_MS)
                page.wait_for_function(
                    f"document.querySelectorAll('#tr-source input:checked').length == "
                    f"{len(has)}", timeout=WAIT_MS)
                ticked = page.eval_on_selector_all(
                    "#tr-source label", "ls => ls.filter(l => l.querySelector("
                    "'input:checked')).map(l => l.innerText.trim())")
                assert sorted(ticked) == sorted(has), ticked
                offered = dict(target_choices(star, has))  # label -> domain
                page.wait_for_function(  # the targets follow the ticked domains
                    f"document.querySelectorAll('#tr-targets label').length == {len(offered)}",
                    timeout=WAIT_MS)
                labels = page.eval_on_selector_all(
                    "#tr-targets label", "ls => ls.map(l => l.innerText.trim())")
                assert sorted(labels) == sorted(offered), labels
                other = next(lab for lab, d in offered.items()
                             if not any(d in g for g in star.meta.exclusive))
                page.locator("#tr-targets label", has_text=other).click()
                page.click("#tr-button")
                src, strip = shown_png(page, "#tr-output")
                pixels, _ = read_upload(ex.path, star.meta.image_size, 2**24,
                                        preprocess=star.meta.preprocess)
                (label, vector), = domain_targets(star, [offered[other]], has)
                hair = [d for g in star.meta.exclusive for d in g if d in has]
                assert label == other and all(vector[star.meta.domains.index(d)] == 1
                                              for d in hair), (label, vector)
                s = star.meta.image_size
                assert np.abs(strip[:, s + 2:].astype(int)
                              - star.translate(pixels, vector, source=has).astype(int)
                              ).max() <= 1  # the ticked domains reach a difference G
                assert f"Columns: input | {other}" in page.inner_text("#tr-caption")
                save_screenshot(page, "demo_transfer.png")  # an example face, translated
                page.locator("#tr-targets label", has_text=other).click()  # untick
            page.set_input_files("#tr-input input[type=file]", str(upload))
            page.locator("#tr-input img").wait_for(state="visible", timeout=WAIT_MS)
            page.wait_for_function("!document.querySelector('#tr-source input:checked')",
                                   timeout=WAIT_MS)  # an upload's domains are unknown
            page.wait_for_function(  # so every domain is a target again
                f"document.querySelectorAll('#tr-targets label').length == "
                f"{len(star.meta.domains)}", timeout=WAIT_MS)
            page.locator("#tr-targets label", has_text=target).click()
            page.click("#tr-button")
            _, strip = shown_png(page, "#tr-output", previous=src if known else None)
            s = star.meta.image_size
            assert strip.shape == (s, 2 * s + 2, 3)  # input | one translation
            caption = page.inner_text("#tr-caption")
            assert f"Columns: input | {target}" in caption, caption
            assert "transparency flattened onto white" in caption
            assert "centre 70x70 of 70x90 cropped" in caption
            if not known:
                save_screenshot(page, "demo_transfer.png")
        finally:
            browser.close()
    assert "Traceback" not in server.log, server.log
