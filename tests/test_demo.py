"""The Gradio demo (demo/): app functions on tiny exported models, the running server
through gradio_client (both named endpoints), the CLI's messages, and no torch in the
demo process.

The models are untrained and tiny (32 px), exported through export.onnx_export once per
session into a folder that tests/test_browser.py shares (``build_models``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32  # model resolution of the tiny test models
DOMAINS = ("Black_Hair", "Blond_Hair", "Red_Hair", "Eyeglasses")
HAIR = ("Black_Hair", "Blond_Hair", "Red_Hair")  # mutually exclusive
START_TIMEOUT = 120  # seconds for a server to come up (a busy 2-core machine is slow)


# -- tiny models, shared with test_browser.py --------------------------------------------
def build_models(folder: Path) -> Path:
    """cgan.onnx, stargan.onnx (exported by export.onnx_export), uncond.onnx, and
    examples/; built once per folder."""
    if (folder / ".complete").exists():
        return folder
    import torch

    from export.onnx_export import build_metadata, export_generator
    from trainer.config import load_config
    from trainer.data.vocab import Domains, mlds_vocab
    from trainer.models import build_generator

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tiny = [f"data.size={SIZE}", "model.g_ch=8", "model.d_ch=8", "model.z_dim=8"]
    cfg = load_config(None, [*tiny, "model.cond=projection", "model.tag_embed=8"])
    vocab = mlds_vocab()
    export_generator(build_generator(cfg, vocab.n_tags), cfg, vocab, folder / "cgan.onnx",
                     step=7, config_hash="0" * 64, batches=(1, 2))
    cfg = load_config(None, [*tiny, "recipe=stargan", "model.arch=stargan",
                             "model.repeat_num=1", "model.d_repeat_num=2"])
    domains = Domains(DOMAINS, (HAIR,))
    export_generator(build_generator(cfg, len(DOMAINS)), cfg, domains, folder / "stargan.onnx",
                     step=9, config_hash="1" * 64, batches=(1, 2))
    # An unconditional GAN through the quick TorchScript exporter, with the real metadata.
    import onnx

    cfg = load_config(None, tiny)
    g = build_generator(cfg, 0).eval()
    path = folder / "uncond.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(g, (torch.randn(2, 8),), str(path), input_names=["z"],
                          output_names=["image"], dynamo=False,
                          dynamic_axes={"z": {0: "b"}, "image": {0: "b"}})
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, build_metadata(cfg, None, step=3,
                                                      config_hash="2" * 64))
    onnx.save(proto, str(path))
    write_examples(folder / "examples")
    (folder / ".complete").write_text("ok\n")
    return folder


def write_examples(folder: Path) -> None:
    """Two example inputs of awkward size and mode; one says which domains it has."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (48, 40, 4), dtype=np.uint8)
    rgba[:8, :, 3] = 0  # a transparent band
    Image.fromarray(rgba, "RGBA").save(folder / "face_a.png")
    (folder / "face_a.json").write_text(json.dumps({"source": ["Black_Hair"]}))
    gray = (np.add.outer(np.arange(70), np.arange(70)) % 256).astype(np.uint8)
    Image.fromarray(gray, "L").save(folder / "face_b.jpg", quality=95)
    # As python -m demo.examples writes it; names the model lacks (eye colours) are ignored.
    (folder / "attributes.json").write_text(json.dumps(
        {"face_b.jpg": ["Blond_Hair", "Green_Eyes", "Eyeglasses"]}))


def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny models; $TAGFACE_TEST_MODELS_CACHE keeps them across runs."""
    keep = os.environ.get("TAGFACE_TEST_MODELS_CACHE")
    return build_models(Path(keep) if keep else tmp_path_factory.getbasetemp() / "demo-models")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_models(tmp_path_factory)


@pytest.fixture(autouse=True)
def _temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Result PNGs of in-process calls go to this test's folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


# -- running servers ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)  # stdout and stderr so far

    @property
    def log(self) -> str:
        return "".join(self.lines)


def demo_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment of a demo process: gradio's files under ``tmp``, no analytics."""
    (tmp / "gradio").mkdir(parents=True, exist_ok=True)
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    return {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio"), "TMPDIR": str(tmp / "tmp"),
            "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1", **extra}


@contextmanager
def serve(models: Path, tmp: Path, *args: str, **env: str) -> Iterator[Server]:
    """``python -m demo --models MODELS --port <free> ARGS`` until the block ends."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo", "--models", str(models), "--port", str(port), *args],
        cwd=ROOT, env=demo_env(tmp, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    server = Server(f"http://127.0.0.1:{port}/", port, proc)
    ready: queue.Queue[bool] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.lines.append(line)
            if line.startswith("tagface demo: "):
                ready.put(True)
        ready.put(False)

    threading.Thread(target=read, daemon=True).start()
    try:
        try:
            ok = ready.get(timeout=START_TIMEOUT)
        except queue.Empty:
            ok = False
        assert ok, f"demo did not start:\n{server.log}"
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_demo(tmp: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo", *args], cwd=ROOT, env=demo_env(tmp),
                          capture_output=True, text=True, timeout=timeout)


# -- in-process: the app functions ---------------------------------------------------------
def read_png(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def cell(grid: np.ndarray, i: int, cols: int, size: int = SIZE) -> np.ndarray:
    from demo.app import PAD

    r, c = divmod(i, cols)
    return grid[r * (size + PAD):r * (size + PAD) + size, c * (size + PAD):c * (size + PAD) + size]


@pytest.fixture(scope="module")
def app(models_dir: Path):
    from demo.app import DemoApp, load_catalog

    return DemoApp(load_catalog(models_dir, device="cpu"), max_upload_mb=1)


def test_catalog(models_dir: Path, app, tmp_path: Path) -> None:
    from demo.app import DemoError, load_catalog, models_table

    cat = app.catalog
    assert set(cat.generators) == {"cgan", "uncond"} and set(cat.translators) == {"stargan"}
    assert [(e.path.name, e.source) for e in cat.examples] == [
        ("face_a.png", ("Black_Hair",)), ("face_b.jpg", ("Blond_Hair", "Green_Eyes",
                                                         "Eyeglasses"))]
    assert app.groups == ["hair", "eyes"] and app.params == {"hair": "hair", "eyes": "eyes"}
    table = models_table(cat)
    assert "CPUExecutionProvider" in table and "`stargan`" in table

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "cgan.onnx").write_bytes((models_dir / "cgan.onnx").read_bytes())
    (mixed / "junk.onnx").write_text("not a model")
    cat = load_catalog(mixed, device="cpu")
    assert list(cat.generators) == ["cgan"] and not cat.translators
    assert len(cat.skipped) == 1 and cat.skipped[0].startswith("junk.onnx: ")
    assert "junk.onnx" in models_table(cat)
    with pytest.raises(DemoError, match="no such folder"):
        load_catalog(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DemoError, match="no .onnx files"):
        load_catalog(tmp_path / "empty")


def test_generate_same_tags_different_noise(app) -> None:
    m = app.catalog.generators["cgan"]
    path, caption = app.generate("cgan", seed=5, count=5, mode="noise",
                                 hair="blue", eyes="random")
    assert Path(path).name.startswith("cgan_blue-hair-random-eyes_noise")
    grid = read_png(path)
    assert grid.shape == (2 * SIZE + 2, 3 * SIZE + 4, 3)  # 5 cells: 3 columns, 2 rows
    with Image.open(path) as im:
        cells = json.loads(im.text["tagface:tags"])
    assert [c["hair"] for c in cells] == ["blue"] * 5 and len({c["eyes"] for c in cells}) > 1
    z = m.sample_z(5, np.random.default_rng(5))  # noise comes first from the seed
    for i, tags in enumerate(cells):
        assert np.array_equal(cell(grid, i, 3), m.generate(tags, z=z[i:i + 1])[0])
    assert "CPUExecutionProvider" in caption and "blue hair" in caption
    assert np.array_equal(read_png(app.generate("cgan", 5, 5, "noise", hair="blue")[0]), grid)
    assert not np.array_equal(read_png(app.generate("cgan", 6, 5, "noise", hair="blue")[0]),
                              grid)


def test_generate_same_noise_every_hair(app) -> None:
    from demo.app import MAX_ROWS

    m = app.catalog.generators["cgan"]
    hair = m.meta.tag_groups[0].tags
    path, caption = app.generate("cgan", seed=1, count=2, mode="every hair", eyes="red")
    grid = read_png(path)
    assert grid.shape == (2 * SIZE + 2, len(hair) * (SIZE + 2) - 2, 3)
    z = m.sample_z(2, np.random.default_rng(1))
    for row in range(2):
        for col, tag in enumerate(hair):
            want = m.generate({"hair": tag, "eyes": "red"}, z=z[row:row + 1])[0]
            assert np.array_equal(cell(grid, row * len(hair) + col, len(hair)), want)
    assert "Columns: orange, white" in caption
    path, caption = app.generate("cgan", seed=1, count=40, mode="every eyes")
    assert read_png(path).shape[0] == MAX_ROWS * (SIZE + 2) - 2
    assert f"{MAX_ROWS} rows" in caption


def test_generate_unconditional(app) -> None:
    from demo.app import mode_choices

    m = app.catalog.generators["uncond"]
    assert mode_choices(m) == [("same tags, different noise", "noise")]
    grid = read_png(app.generate("uncond", seed=0, count=4, mode="noise", hair="blue")[0])
    z = m.sample_z(4, np.random.default_rng(0))
    assert np.array_equal(cell(grid, 3, 2), m.generate(z=z[3:4])[0])


def test_switching_models_updates_the_controls(app) -> None:
    updates = app.on_generator("uncond")
    assert [u["visible"] for u in updates[:2]] == [False, False]  # no hair, no eyes
    assert updates[2]["choices"] == [("same tags, different noise", "noise")]
    hair, eyes, mode, info = app.on_generator("cgan")
    assert hair["choices"][:3] == ["random", "orange", "white"] and eyes["visible"]
    assert [v for _, v in mode["choices"]] == ["noise", "every hair", "every eyes"]
    assert "CPUExecutionProvider" in info
    source, targets, info = app.on_translator("stargan")
    assert source["choices"] == list(DOMAINS)
    assert targets["choices"] == [(d, d) for d in DOMAINS]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hair": "plaid"}, "unknown hair tag 'plaid'; valid hair tags are orange, white"),
    ({"mode": "every nose"}, "mode 'every nose': this model offers noise, every hair"),
    ({"count": 0}, "count must be a whole number from 1 to 64"),
    ({"count": 2.5}, "count must be a whole number"),
    ({"seed": -1}, "seed must be a whole number from 0"),
    ({"seed": 1.5}, "seed must be a whole number from 0"),
    ({"psi": 0}, "truncation psi must be a number in (0, 1] (1 = off), got 0"),
    ({"psi": "high"}, "truncation psi must be a number in (0, 1]"),
    ({"model": "nope"}, "unknown GAN model 'nope'; choose one of cgan, uncond"),
])
def test_generate_errors(app, kwargs: dict, message: str) -> None:
    import gradio as gr

    args = {"model": "cgan", "seed": 0, "count": 2, "mode": "noise", **kwargs}
    with pytest.raises(gr.Error, match=re.escape(message)):
        app.generate(**args)


def test_generate_with_truncation(app) -> None:
    from trainer.noise import truncation_threshold

    m = app.catalog.generators["cgan"]
    path, caption = app.generate("cgan", seed=5, count=4, mode="noise", psi=0.5,
                                 hair="blue", eyes="red")
    z = m.sample_z(4, np.random.default_rng(5), psi=0.5)
    assert np.abs(z).max() <= truncation_threshold(0.5)
    grid = read_png(path)
    for i in range(4):
        assert np.array_equal(cell(grid, i, 2), m.generate("blue hair red eyes", z=z[i:i + 1])[0])
    assert "truncation psi 0.5" in caption
    off = read_png(app.generate("cgan", seed=5, count=4, mode="noise", psi=1.0, hair="blue",
                                eyes="red")[0])
    assert not np.array_equal(off, grid)
    assert np.array_equal(off, read_png(app.generate("cgan", 5, 4, "noise", hair="blue",
                                                     eyes="red")[0])), "psi 1 is off"


def test_latent_walk(app) -> None:
    path, caption = app.walk("cgan", seed_a=3, seed_b=9, frames=5, hair="green",
                             eyes="random")
    strip = read_png(path)
    assert strip.shape == (SIZE, 5 * (SIZE + 2) - 2, 3)
    frames = [cell(strip, i, 5) for i in range(5)]
    # The ends are the first image of each seed's grid (the eyes drawn from seed A).
    a = read_png(app.generate("cgan", seed=3, count=1, hair="green", eyes="random")[0])
    assert np.array_equal(frames[0], a)
    with Image.open(path) as im:
        eyes = json.loads(im.text["tagface:tags"])["eyes"]
    b = read_png(app.generate("cgan", seed=9, count=1, hair="green", eyes=eyes)[0])
    assert np.array_equal(frames[-1], b)
    assert len({f.tobytes() for f in frames}) == 5, "every frame is its own noise"
    assert "seed 3 to seed 9" in caption and f"green hair {eyes} eyes" in caption
    path, _ = app.walk("cgan", 3, 9, 5, 0.6, hair="green", eyes="random")
    assert not np.array_equal(read_png(path), strip)
    import gradio as gr

    for kwargs, message in [({"frames": 1}, "frames must be a whole number from 2 to 32"),
                            ({"seed_b": 2.5}, "seed B must be a whole number"),
                            ({"psi": 2}, "truncation psi must be a number in")]:
        with pytest.raises(gr.Error, match=re.escape(message)):
            app.walk("cgan", **{"seed_a": 0, "seed_b": 1, "frames": 3, **kwargs})


def test_examples_carry_their_domains(avatar_dir: Path, app, tmp_path: Path) -> None:
    """python -m demo.examples copies the last images of list_attr.txt with their
    attributes; the page ticks them and offers only real changes."""
    from demo.app import find_examples, source_domains, target_choices
    from demo.examples import main as examples_main

    assert examples_main(["--data", str(avatar_dir), "--out", str(tmp_path / "ex"),
                          "--last", "3"]) == 0
    rows = (avatar_dir / "list_attr.txt").read_text().splitlines()
    names = rows[1].split()
    want = {r.split()[0]: [n for n, v in zip(names, r.split()[1:], strict=True) if v == "1"]
            for r in rows[2:]}
    last = sorted(want, key=lambda f: int(Path(f).stem))[-3:]
    found = find_examples(tmp_path / "ex")
    assert [e.path.name for e in found] == last
    assert all(list(e.source) == want[e.path.name] for e in found)
    assert all(any(a.endswith("_Hair") and a != "Short_Hair" for a in e.source) for e in found)

    m = app.catalog.translators["stargan"]
    assert source_domains(m, ["blond_hair", "Green_Eyes", "Eyeglasses"]) == [
        "Blond_Hair", "Eyeglasses"]
    # Its own hair colour is no change; glasses it wears are offered as "no Eyeglasses".
    assert target_choices(m, ["Blond_Hair", "Eyeglasses"]) == [
        ("Black_Hair", "Black_Hair"), ("Red_Hair", "Red_Hair"),
        ("no Eyeglasses", "Eyeglasses")]
    update = app.on_source("stargan", ["Blond_Hair"], ["Blond_Hair", "Eyeglasses"])
    assert update["value"] == ["Eyeglasses"]
    assert ("Eyeglasses", "Eyeglasses") in update["choices"]


def test_read_upload_follows_the_training_preprocessing(tmp_path: Path) -> None:
    """The demo prepares an upload exactly as training prepared its images
    (trainer.data.load_image), as the model's preprocess metadata says."""
    from demo.app import read_upload
    from export.runtime import InputError
    from trainer.data.transforms import load_image

    rgba = np.random.default_rng(3).integers(0, 256, (91, 70, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "odd.png")  # crop offset 10.5: rounding
    prep = {"alpha": "white", "crop": "center", "resize": "bilinear", "value_range": [-1, 1]}
    mine, _ = read_upload(tmp_path / "odd.png", SIZE, 2**20, preprocess=prep)
    assert np.array_equal(mine, load_image(tmp_path / "odd.png", SIZE).transpose(1, 2, 0))
    with pytest.raises(InputError, match="preprocessing the demo does not know"):
        read_upload(tmp_path / "odd.png", SIZE, 2**20, preprocess={**prep, "resize": "area"})


def test_read_upload_converts_any_image(tmp_path: Path) -> None:
    from demo.app import read_upload

    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[..., 0] = 200  # red, fully transparent except the centre
    rgba[20:40, 30:50, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img, notes = read_upload(tmp_path / "a.png", SIZE, 2**20)
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (255, 255, 255) and tuple(img[16, 16]) == (200, 0, 0)
    assert notes == ["transparency flattened onto white", "centre 60x60 of 80x60 cropped",
                     "resized from 60x60 to 32x32"]
    Image.new("L", (SIZE, SIZE), 77).save(tmp_path / "g.bmp")
    img, notes = read_upload(tmp_path / "g.bmp", SIZE, 2**20)
    assert notes == ["grayscale converted to RGB"] and (img == 77).all()
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    img, notes = read_upload(tmp_path / "c.jpg", SIZE, 2**20)
    assert notes[0] == "CMYK converted to RGB" and img.shape == (SIZE, SIZE, 3)
    frames = [Image.new("RGB", (SIZE, SIZE), c) for c in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert "first of 3 frames" in read_upload(tmp_path / "anim.gif", SIZE, 2**20)[1]
    same, notes = read_upload((tmp_path / "g.bmp").read_bytes(), SIZE, 2**20)
    assert notes == ["grayscale converted to RGB"]


def test_read_upload_refuses_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import demo.core as demo_app
    from export.runtime import InputError

    (tmp_path / "notes.txt").write_text("hello, not an image")
    with pytest.raises(InputError, match="notes.txt is not an image this demo can read"):
        demo_app.read_upload(tmp_path / "notes.txt", SIZE, 2**20)
    Image.new("RGB", (10, 10)).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:40])
    with pytest.raises(InputError, match="cut.png is not an image"):
        demo_app.read_upload(tmp_path / "cut.png", SIZE, 2**20)
    noise = np.random.default_rng(0).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "wide.png")  # ~60 KB
    with pytest.raises(InputError, match=r"wide.png is 0.0\d+ MB; uploads are limited to "
                                         r"0.0477 MB"):
        demo_app.read_upload(tmp_path / "wide.png", SIZE, 50_000)
    monkeypatch.setattr(demo_app, "MAX_PIXELS", 10_000)
    with pytest.raises(InputError, match="wide.png is 200x100 pixels"):
        demo_app.read_upload(tmp_path / "wide.png", SIZE, 2**20)


def test_translate(app, models_dir: Path) -> None:
    from demo.app import domain_targets, read_upload

    m = app.catalog.translators["stargan"]
    example = models_dir / "examples" / "face_a.png"
    path, caption = app.translate("stargan", {"path": str(example), "orig_name": "face_a.png"},
                                  ["Blond_Hair", "eyeglasses"], ["Black_Hair"])
    strip = read_png(path)
    assert strip.shape == (SIZE, 3 * (SIZE + 2) - 2, 3)
    pixels, _ = read_upload(example, SIZE, 2**20)
    assert np.array_equal(cell(strip, 0, 3), pixels)
    plan = domain_targets(m, ["Blond_Hair", "eyeglasses"], ["Black_Hair"])
    assert [label for label, _ in plan] == ["Blond_Hair", "Eyeglasses"]
    assert plan[0][1].tolist() == [0, 1, 0, 0] and plan[1][1].tolist() == [1, 0, 0, 1]
    for i, (_, vec) in enumerate(plan):
        assert np.array_equal(cell(strip, i + 1, 3), m.translate(pixels, vec))
    assert "Columns: input | Blond_Hair | Eyeglasses" in caption
    assert "Nothing is ticked" not in app.translate("stargan", str(example), [], [])[1]
    assert "transparency flattened onto white" in caption
    # Ticking a domain the input has switches it off; no target: every domain.
    assert [x for x, _ in domain_targets(m, ["Eyeglasses"], ["Eyeglasses"])] == ["no Eyeglasses"]
    path, caption = app.translate("", str(example), [], [])
    assert read_png(path).shape[1] == 5 * (SIZE + 2) - 2 and "every domain" in caption


def test_translate_gives_a_difference_model_the_ticked_source(models_dir: Path,
                                                              tmp_path: Path) -> None:
    """A StarGAN exported with model.g_condition=difference also takes the input's own
    domains: the tab passes the ones ticked under "The input already has"."""
    import torch

    from demo.app import DemoApp, domain_targets, load_catalog, models_table, read_upload
    from export.onnx_export import export_generator
    from trainer.config import load_config
    from trainer.data.vocab import Domains
    from trainer.models import build_generator

    folder = tmp_path / "models"
    folder.mkdir()
    torch.manual_seed(1)
    cfg = load_config(None, [f"data.size={SIZE}", "model.g_ch=8", "recipe=stargan",
                             "model.arch=stargan", "model.repeat_num=1",
                             "model.norm_stats=instance", "model.g_condition=difference"])
    export_generator(build_generator(cfg, len(DOMAINS)), cfg, Domains(DOMAINS, (HAIR,)),
                     folder / "diff.onnx", step=5, config_hash="3" * 64, batches=(1, 2))
    app = DemoApp(load_catalog(folder, device="cpu"), max_upload_mb=1)
    m = app.catalog.translators["diff"]
    assert m.meta.inputs == ("image", "domains", "source")
    assert "told target minus the input's domains" in models_table(app.catalog)
    example = models_dir / "examples" / "face_a.png"
    pixels, _ = read_upload(example, SIZE, 2**20)
    path, _ = app.translate("diff", str(example), ["Blond_Hair"], ["Black_Hair"])
    strip = read_png(path)
    (_, vec), = domain_targets(m, ["Blond_Hair"], ["Black_Hair"])
    want = m.translate(pixels, vec, source=["Black_Hair"])
    assert np.array_equal(cell(strip, 1, 2), want)
    assert not np.array_equal(want, m.translate(pixels, vec))  # the source matters
    assert "Nothing is ticked" not in app.translate("diff", str(example), ["Blond_Hair"],
                                                    ["Black_Hair"])[1]
    unticked, caption = app.translate("diff", str(example), ["Blond_Hair"], [])
    assert Path(unticked).name != Path(path).name  # other pixels, another file
    assert "Nothing is ticked under \"The input already has\"" in caption, caption


@pytest.mark.parametrize(("image", "targets", "message"), [
    (None, [], "upload an image"),
    ("notes.txt", [], "notes.txt is not an image this demo can read"),
    ("face_b.jpg", ["Green_Hair"], "unknown domain 'Green_Hair'; this model's domains are"),
])
def test_translate_errors(app, models_dir: Path, tmp_path: Path, image: str | None,
                          targets: list[str], message: str) -> None:
    import gradio as gr

    (tmp_path / "notes.txt").write_text("hello")
    payload = None
    if image:
        p = models_dir / "examples" / image if image.startswith("face") else tmp_path / image
        payload = {"path": str(p), "orig_name": image}
    with pytest.raises(gr.Error, match=message):
        app.translate("stargan", payload, targets, [])


def test_build_app_names_the_endpoints(models_dir: Path) -> None:
    from demo.app import build_app

    demo = build_app(models_dir, device="cpu")
    api = demo.get_api_info()["named_endpoints"]
    assert set(api) == {"/generate", "/walk", "/translate"}
    names = [p["parameter_name"] for p in api["/generate"]["parameters"]]
    assert names == ["model", "seed", "count", "mode", "psi", "hair", "eyes"]
    names = [p["parameter_name"] for p in api["/walk"]["parameters"]]
    assert names == ["model", "seed_a", "seed_b", "frames", "psi", "hair", "eyes"]
    assert len(api["/generate"]["returns"]) == 2, "the grid PNG once, and the caption"
    names = [p["parameter_name"] for p in api["/translate"]["parameters"]]
    assert names == ["model", "image", "targets", "source"]


def test_demo_process_never_imports_torch(models_dir: Path, tmp_path: Path) -> None:
    code = ("import sys, demo.app as a\n"
            "d = a.build_app(sys.argv[1])\n"
            "d.tagface_app.generate('cgan', 0, 2, 'noise')\n"
            "d.tagface_app.translate('stargan', sys.argv[1] + '/examples/face_a.png')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n")
    out = subprocess.run([sys.executable, "-c", code, str(models_dir)], cwd=ROOT,
                         env=demo_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    # The pure part (grids, walks, uploads, captions) needs neither gradio nor torch.
    code = ("import sys, demo.core as c\n"
            "cat = c.load_catalog(sys.argv[1], 'cpu')\n"
            "m = cat.generators['cgan']\n"
            "g = c.generate_grid(m, {'hair': 'blue'}, 0, 4, 'noise', 0.7)\n"
            "print(c.caption('cgan', m, g, 'noise', 'seed 0', 1.0, 0.7))\n"
            "print(sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'gradio'}))\n")
    out = subprocess.run([sys.executable, "-c", code, str(models_dir)], cwd=ROOT,
                         env=demo_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "truncation psi 0.7" in lines[0] and "blue hair" in lines[0]
    assert lines[-1] == "[]"


# -- the running server -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(models_dir, tmp_path_factory.mktemp("server"), "--max-upload-mb", "0.05",
               "--device", "cpu") as s:
        yield s


def test_server_binds_loopback_and_lists_providers(server: Server) -> None:
    import httpx

    assert server.url.startswith("http://127.0.0.1:")
    assert "cgan: GAN 32px" in server.log and "on CPUExecutionProvider" in server.log
    page = httpx.get(server.url, timeout=30)
    assert page.status_code == 200
    config = httpx.get(server.url + "config", timeout=30).json()
    text = json.dumps(config)
    assert "CPUExecutionProvider" in text and "Style transfer" in text


def test_client_generate_and_translate(server: Server, app, models_dir: Path,
                                       tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    from demo.app import generate_grid

    client = Client(server.url, download_files=str(tmp_path / "dl"), verbose=False)
    t0 = time.perf_counter()
    grid, caption = client.predict(model="cgan", seed=3, count=6, mode="noise",
                                   hair="green", eyes="blue", api_name="/generate")
    first = time.perf_counter() - t0
    want = generate_grid(app.catalog.generators["cgan"], {"hair": "green", "eyes": "blue"},
                         3, 6, "noise").image
    assert np.array_equal(read_png(grid), want)
    assert len(list((tmp_path / "dl").rglob("*.png"))) == 1, "one file to download per call"
    assert "green hair blue eyes" in caption
    times = []
    for seed in range(5):
        t0 = time.perf_counter()
        client.predict(model="cgan", seed=seed, count=8, api_name="/generate")
        times.append(time.perf_counter() - t0)

    example = models_dir / "examples" / "face_b.jpg"
    strip, caption = client.predict(model="stargan", image=handle_file(str(example)),
                                    targets=["Red_Hair"], source=[], api_name="/translate")
    want_strip, _ = app.translate("stargan", str(example), ["Red_Hair"], [])
    assert np.array_equal(read_png(strip), read_png(want_strip))
    assert "grayscale converted to RGB" in caption
    print(f"\nround trip /generate: first {first * 1000:.0f} ms, then median "
          f"{sorted(times)[2] * 1000:.0f} ms (8 images of {SIZE} px)")


def test_client_gets_clear_errors(server: Server, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server.url, download_files=str(tmp_path / "dl"), verbose=False)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(Exception, match="notes.txt is not an image this demo can read"):
        client.predict(model="stargan", image=handle_file(str(tmp_path / "notes.txt")),
                       api_name="/translate")
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "big.png")  # ~120 KB > --max-upload-mb 0.05
    with pytest.raises(Exception, match="exceeds the maximum file size"):
        client.predict(model="stargan", image=handle_file(str(tmp_path / "big.png")),
                       api_name="/translate")
    with pytest.raises(Exception, match="unknown eyes tag 'violet'"):
        client.predict(model="cgan", eyes="violet", api_name="/generate")
    # Values gradio itself would have checked (with a traceback in the console, in its
    # own words, and rounding seed 1.5): the app's one-line messages instead.
    for kwargs, message in [
            ({"count": 0}, "count must be a whole number from 1 to 64, got 0"),
            ({"seed": 1.5}, "seed must be a whole number from 0 to 9223372036854775807, "
                            "got 1.5"),
            ({"seed": -1}, "seed must be a whole number from 0"),
            ({"model": "nope"}, "unknown GAN model 'nope'; choose one of cgan, uncond"),
            ({"mode": "every nose"}, "mode 'every nose': this model offers noise"),
            ({"psi": 0}, r"truncation psi must be a number in \(0, 1\]")]:
        with pytest.raises(AppError, match=message) as err:
            client.predict(**{"model": "cgan", **kwargs}, api_name="/generate")
        assert "\n" not in str(err.value)
    with pytest.raises(AppError, match="frames must be a whole number from 2 to 32"):
        client.predict(model="cgan", frames=0, api_name="/walk")
    strip, caption = client.predict(model="cgan", seed_a=1, seed_b=2, frames=3, psi=0.8,
                                    api_name="/walk")
    assert read_png(strip).shape == (SIZE, 3 * (SIZE + 2) - 2, 3)
    assert "truncation psi 0.8" in caption
    time.sleep(0.5)  # let the server's log lines arrive
    assert "Traceback" not in server.log and "Error" not in server.log, server.log


def test_cli_refuses_bad_folders_and_busy_ports(server: Server, models_dir: Path,
                                                tmp_path: Path) -> None:
    out = run_demo(tmp_path, "--models", str(tmp_path / "missing"))
    assert out.returncode == 2 and "no such folder" in out.stderr
    out = run_demo(tmp_path, "--models", str(models_dir), "--port", str(server.port))
    assert out.returncode == 2
    assert f"cannot serve on 127.0.0.1:{server.port}: the port is in use" in out.stderr


def test_share_failure_is_reported_and_local_server_runs(models_dir: Path,
                                                         tmp_path: Path) -> None:
    import httpx

    # Every outside connection goes to a closed local port: the share tunnel must fail
    # whether or not this machine has internet.
    dead = f"http://127.0.0.1:{free_port()}"
    with serve(models_dir, tmp_path, "--share", HTTPS_PROXY=dead, HTTP_PROXY=dead,
               ALL_PROXY=dead, https_proxy=dead, http_proxy=dead, all_proxy=dead,
               no_proxy="127.0.0.1,localhost") as s:
        deadline = time.monotonic() + 60
        while "--share" not in s.log and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ("warning: --share: could not create a public gradio.live link" in s.log
                ), s.log
        assert f"still running locally at {s.url}" in s.log
        assert httpx.get(s.url, timeout=30).status_code == 200
