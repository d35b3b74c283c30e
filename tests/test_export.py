"""ONNX export and the torch-free runtime, on hand-built run folders (no training needed).

``make_run`` writes a run folder as the training loop does (config.yaml, vocab.json,
checkpoints/step_N/g_ema.safetensors + meta.json, checkpoints/latest) from a randomly
initialised generator, so these tests exercise the real build_generator and
load_generator without training.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from export import onnx_export, runtime
from export.__main__ import main as export_main
from export.onnx_export import (
    FP16_TOL,
    FP32_TOL,
    PICK_FLIP_LIMIT,
    ExportError,
    export_generator,
    export_run,
    parity_ok,
)
from export.runtime import InputError, load_model
from trainer import __version__
from trainer.config import config_sha256, load_config, to_yaml
from trainer.data.vocab import Domains, Vocab, mlds_vocab, save_vocab
from trainer.models import build_generator
from trainer.runs import checkpoint_name, load_generator

REPO = Path(__file__).resolve().parents[1]
DOMAINS = Domains(("black_hair", "blonde_hair", "brown_hair", "male", "young"),
                  (("black_hair", "blonde_hair", "brown_hair"),))
SMALL = ["data.size=32", "model.g_ch=8", "model.tag_embed=16", "model.z_dim=16"]
SMALL_STARGAN = ["recipe=stargan", "model.arch=stargan", "data.size=32", "model.g_ch=8",
                 "model.repeat_num=1", "model.d_repeat_num=5"]
KINDS: dict[str, tuple[list[str], Vocab | Domains | None]] = {
    "dcgan": ([*SMALL, "model.cond=none"], None),
    "cgan": ([*SMALL, "model.cond=dense"], mlds_vocab()),
    "acgan": ([*SMALL, "model.arch=ml2020", "model.cond=acgan"], mlds_vocab()),
    "resnet": ([*SMALL, "model.arch=resnet", "model.cond=projection", "model.hier_z=true"],
               mlds_vocab()),
    "cgan_nearest": ([*SMALL, "model.cond=projection", "model.g_upsample=nearest"],
                     mlds_vocab()),
    "cgan_skip": ([*SMALL, "model.cond=projection", "model.g_skip=true"], mlds_vocab()),
    "cgan_palette": ([*SMALL, "model.cond=projection", "model.g_palette=6",
                      "model.g_upsample=nearest_last"], mlds_vocab()),
    "cgan_palette_vote": ([*SMALL, "model.cond=projection", "model.g_palette=6",
                           "model.g_upsample=nearest", "model.g_palette_pick=vote"], mlds_vocab()),
    "cgan_palette_mix": ([*SMALL, "model.cond=projection", "model.g_palette=6",
                          "model.g_upsample=nearest", "model.g_palette_pick=mix_lines"],
                         mlds_vocab()),
    "cgan_palette_bilinear": ([*SMALL, "model.cond=projection", "model.g_palette=6",
                               "model.g_upsample=bilinear_last"], mlds_vocab()),
    "stargan": ([*SMALL_STARGAN, "model.norm_stats=running"], DOMAINS),
    "stargan_instance": ([*SMALL_STARGAN, "model.norm_stats=instance"], DOMAINS),
    "stargan_attention": ([*SMALL_STARGAN, "model.norm_stats=instance",
                           "model.g_output=attention"], DOMAINS),
    "stargan_nearest": ([*SMALL_STARGAN, "model.norm_stats=instance", "model.g_output=attention",
                         "model.g_upsample=nearest"], DOMAINS),
    "stargan_difference": ([*SMALL_STARGAN, "model.norm_stats=instance",
                            "model.g_output=attention", "model.g_condition=difference"], DOMAINS),
}
BATCHES = (1, 3, 7)


def make_run(root: Path, overrides: list[str], vocab: Vocab | Domains | None, step: int = 12,
             seed: int = 0) -> Path:
    """A run folder as trainer.loop writes it, holding a randomly initialised EMA generator.

    Running statistics are randomised so that eval mode and the StarGAN norm_stats
    choice really matter.
    """
    cfg = load_config(None, overrides)
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(to_yaml(cfg))
    if vocab is not None:
        save_vocab(vocab, root / "vocab.json")
    n_cond = 0 if vocab is None else (
        vocab.n_domains if isinstance(vocab, Domains) else vocab.n_tags)
    torch.manual_seed(seed)
    g = build_generator(cfg, n_cond)
    for m in g.modules():
        if getattr(m, "running_mean", None) is not None:
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = root / "checkpoints" / checkpoint_name(step)
    ckpt.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in g.state_dict().items()},
              str(ckpt / "g_ema.safetensors"))
    (ckpt / "meta.json").write_text(json.dumps({"step": step,
                                                "config_sha256": config_sha256(cfg)}))
    (root / "checkpoints" / "latest").write_text(ckpt.name + "\n")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    return {k: make_run(base / k, o, v, seed=i) for i, (k, (o, v)) in enumerate(KINDS.items())}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("models")
    return {k: export_run(run, out, batches=(1, 7)) for k, run in runs.items()}


@functools.cache
def _generator(run: Path) -> torch.nn.Module:
    return load_generator(run).model


def torch_reference(run: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    g = _generator(run)
    with torch.no_grad():
        return g(*(torch.from_numpy(v) for v in feeds.values())).numpy()


# -- export round trips -------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(kind, exported, runs):
    res = exported[kind]
    assert res.path.name == f"{kind}.onnx"
    assert sorted(p.name for p in res.path.parent.iterdir()) == sorted(
        f"{k}{ext}" for k in KINDS for ext in (".onnx", ".md")), \
        "one self-contained file per model and its card, nothing else"
    assert res.card == res.path.with_suffix(".md")
    onnx.checker.check_model(str(res.path), full_check=True)
    assert max(res.diffs.values()) < FP32_TOL and set(res.diffs) == {1, 7}
    proto = onnx.load(str(res.path))
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL
                   for t in proto.graph.initializer)
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in proto.graph.input}
    out = [o.name for o in proto.graph.output]
    if kind.startswith("stargan"):
        want = {"image": ["batch", 3, 32, 32], "domains": ["batch", 5]}
        if kind == "stargan_difference":  # G is told domains - source: it takes both
            want["source"] = ["batch", 5]
        assert shapes == want and list(shapes) == list(want) and out == ["translated"]
    else:
        expected = {"z": ["batch", 16]} if kind == "dcgan" else {"z": ["batch", 16],
                                                                 "tags": ["batch", 22]}
        assert shapes == expected and out == ["image"]
    assert "max abs diff" in res.report()


@pytest.mark.parametrize("kind", KINDS)
def test_dynamic_batch(kind, exported, runs):
    session = runtime.make_session(exported[kind].path, [runtime.CPU])
    rng = np.random.default_rng(5)
    for b in BATCHES:
        feeds = {i.name: rng.standard_normal([b, *i.shape[1:]]).astype(np.float32)
                 for i in session.get_inputs()}
        out = session.run(None, feeds)[0]
        ref = torch_reference(runs[kind], feeds)
        assert out.shape == ref.shape == (b, 3, 32, 32)
        assert np.abs(out - ref).max() < FP32_TOL


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_round_trip(kind, exported, runs):
    cfg = load_config(str(runs[kind] / "config.yaml"))
    meta = load_model(exported[kind].path).meta
    vocab = KINDS[kind][1]
    assert meta.image_size == 32 and meta.value_range == (-1.0, 1.0)
    assert meta.step == 12 and meta.config_sha256 == config_sha256(cfg)
    assert meta.tagface_version == __version__ and meta.precision == "fp32"
    session = runtime.make_session(exported[kind].path, [runtime.CPU])
    assert session.get_modelmeta().version == 12, "model_version is the step"
    if isinstance(vocab, Domains):
        assert meta.kind == "stargan" and meta.z_dim == 0 and meta.tag_groups == ()
        assert not {"z_dim", "z_distribution"} & set(meta.props), "StarGAN takes no noise"
        assert meta.domains == vocab.names and meta.exclusive == vocab.exclusive
        assert meta.norm_stats == cfg.model.norm_stats
        assert meta.g_condition == cfg.model.g_condition == meta.props["g_condition"]
        assert meta.takes_source == (kind == "stargan_difference")
        assert meta.preprocess == {"alpha": "white", "crop": "center", "resize": "bilinear",
                                   "value_range": [-1, 1]}
    else:
        assert meta.kind == "gan" and meta.z_dim == 16 and meta.domains == ()
        assert meta.props["z_distribution"] == "standard_normal" and not meta.preprocess
        groups = vocab.groups if vocab is not None else ()
        assert [(g.name, g.tags, g.aliases) for g in meta.tag_groups] == \
            [(g.name, g.tags, g.aliases) for g in groups]
        assert meta.props["cond"] == cfg.model.cond
    assert all(isinstance(v, str) for v in meta.props.values())
    assert "tagface" in onnx.load(str(exported[kind].path)).doc_string


def test_stargan_norm_stats_are_the_configured_ones(exported, runs):
    ops = {k: {n.op_type for n in onnx.load(str(exported[k].path)).graph.node}
           for k in ("stargan", "stargan_instance")}
    assert "BatchNormalization" in ops["stargan"] and "InstanceNormalization" not in ops["stargan"]
    assert "InstanceNormalization" in ops["stargan_instance"]
    loaded = load_generator(runs["stargan"])  # running statistics
    loaded.config.model.norm_stats = "instance"
    with pytest.raises(ExportError, match="uses running InstanceNorm statistics"):
        export_generator(loaded.model, loaded.config, loaded.vocab,
                         runs["stargan"] / "x.onnx", step=1, config_hash="")


def test_fp16(runs, exported, tmp_path):
    res = export_run(runs["cgan"], tmp_path, name="half", fp16=True, batches=(1, 3))
    assert res.metadata["precision"] == "fp16" and res.tolerance == FP16_TOL
    assert max(res.diffs.values()) < FP16_TOL
    assert res.path.stat().st_size < 0.6 * exported["cgan"].path.stat().st_size
    onnx.checker.check_model(str(res.path), full_check=True)
    m = load_model(res.path)
    assert m.meta.precision == "fp16" and set(m.input_types.values()) == {np.float32}
    assert m.generate("blue hair red eyes", n=2, seed=0).shape == (2, 32, 32, 3)


@pytest.mark.parametrize("kind", ["resnet", "cgan_nearest", "cgan_palette", "cgan_palette_vote",
                                  "cgan_palette_bilinear", "cgan_skip"])
def test_fp16_upsampling_trunks(kind, runs, tmp_path):
    """Nearest and bilinear upsampling export without ONNX Resize, so the fp16 converter
    keeps parity."""
    res = export_run(runs[kind], tmp_path, name="half", fp16=True, batches=(1, 3))
    assert max(res.diffs.values()) < FP16_TOL
    ops = {n.op_type for n in onnx.load(str(res.path)).graph.node}
    assert "Resize" not in ops


def test_picked_colours_may_flip_only_at_near_ties(runs, exported):
    """A vote/hard palette graph: fp32 matches PyTorch pixel for pixel; the parity rule
    allows a few pixels to pick another colour (float16 near ties), not more."""
    res = exported["cgan_palette_vote"]
    assert res.metadata["palette_pick"] == "vote" and set(res.flipped.values()) == {0.0}
    res = exported["cgan_palette_mix"]
    assert res.metadata["palette_pick"] == "mix_lines" and set(res.flipped.values()) == {0.0}
    assert "palette_pick" not in exported["cgan"].metadata
    assert parity_ok({1: 1e-5}, FP32_TOL, {1: PICK_FLIP_LIMIT / 2})
    assert not parity_ok({1: 1e-5}, FP32_TOL, {1: 2 * PICK_FLIP_LIMIT})
    assert not parity_ok({1: float("nan")}, FP32_TOL, {1: 0.0})


def test_cli(runs, tmp_path):
    res = subprocess.run([sys.executable, "-m", "export", "--run", str(runs["dcgan"]),
                          "--out", str(tmp_path), "--name", "cli", "--batch", "5"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "cli.onnx").is_file() and (tmp_path / "cli.md").is_file()
    assert f"model card: {tmp_path / 'cli.md'}" in res.stdout
    assert "batch 1 max abs diff" in res.stdout and "batch 5 max abs diff" in res.stdout
    assert "Traceback" not in res.stderr


# -- error paths ----------------------------------------------------------------------
def test_parity_failure_writes_nothing(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(onnx_export, "FP32_TOL", -1.0)  # every difference is too large
    assert export_main(["--run", str(runs["dcgan"]), "--out", str(tmp_path)]) == 1
    assert "ONNX Runtime differs from PyTorch" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_run_without_checkpoint(runs, tmp_path, capsys):
    run = make_run(tmp_path / "fresh", KINDS["cgan"][0], mlds_vocab())
    (run / "checkpoints" / "latest").unlink()
    with pytest.raises(ExportError, match="no generator checkpoint"):
        export_run(run, tmp_path / "out")
    assert export_main(["--run", str(run), "--out", str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(ExportError, match="no such run folder"):
        export_run(tmp_path / "missing", tmp_path / "out")


def test_checkpoint_without_generator(runs, tmp_path):
    run = make_run(tmp_path / "r", KINDS["cgan"][0], mlds_vocab())
    ckpt = run / "checkpoints" / checkpoint_name(12)
    (ckpt / "g_ema.safetensors").unlink()
    with pytest.raises(ExportError, match="no g_ema.safetensors"):
        export_run(run, tmp_path / "out")
    with pytest.raises(ExportError, match="no such checkpoint"):
        export_run(run, tmp_path / "out", checkpoint="step_99")
    with pytest.raises(ExportError, match="not a complete tagface checkpoint"):
        export_run(run, tmp_path / "out", checkpoint=run)


@pytest.mark.parametrize("source", ["stargan", "dcgan"])
def test_checkpoint_of_wrong_kind(source, runs, tmp_path):
    """StarGAN weights (other names) or unconditional weights (other shapes) in a cGAN run."""
    run = make_run(tmp_path / "r", KINDS["cgan"][0], mlds_vocab())
    other = runs[source] / "checkpoints" / checkpoint_name(12)
    with pytest.raises(ExportError, match="do not fit"):
        export_run(run, tmp_path / "out", checkpoint=other / "g_ema.safetensors")


def test_vocab_of_wrong_kind(tmp_path):
    run = make_run(tmp_path / "r", KINDS["stargan"][0], DOMAINS)
    save_vocab(mlds_vocab(), run / "vocab.json")
    with pytest.raises(ExportError, match="StarGAN run needs vocab.json"):
        export_run(run, tmp_path / "out")


def test_not_a_tagface_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        load_model(bad)
    with pytest.raises(InputError, match="no such model file"):
        load_model(tmp_path / "missing.onnx")


# -- runtime --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cgan(exported) -> runtime.Model:
    return load_model(exported["cgan"].path)


def test_encode_tags(cgan):
    v = mlds_vocab()
    expected = v.encode({"hair": "blue", "eyes": "red"})
    assert np.array_equal(cgan.encode_tags({"hair": "blue", "eyes": "red"}), expected)
    assert np.array_equal(cgan.encode_tags("blue hair red eyes"), expected)
    assert np.array_equal(cgan.encode_tags("Blue Hair, red eye"), expected)  # alias, case
    assert np.array_equal(cgan.encode_tags({"eye": "red", "hair": "blue"}), expected)
    r = cgan.encode_tags({"hair": "blue", "eyes": "random"}, n=64, seed=3)
    assert r.shape == (64, 22) and (r.sum(1) == 2).all() and (r[:, 8] == 1).all()
    assert len({v.decode(row)["eyes"] for row in r}) > 5
    assert np.array_equal(r, cgan.encode_tags("blue hair random eyes", n=64, seed=3))
    assert cgan.encode_tags("random", n=4, seed=0).sum() == 8
    assert cgan.decode_tags(expected) == {"hair": "blue", "eyes": "red"}


@pytest.mark.parametrize("tags, message", [
    ({"hair": "bleu", "eyes": "red"}, r"unknown hair tag 'bleu'; valid hair tags are orange, "),
    ({"hat": "blue", "eyes": "red"}, "unknown tag group 'hat'; groups are hair, eyes"),
    ({"hair": "blue"}, "gives no eyes tag"),
    ("blue hair red", r"unknown word\(s\) 'red'.*valid tags are hair: orange"),
    ("bleu hair red eyes", "unknown hair tag 'bleu'"),
    ("hair blue eyes", "has no tag before it"),
    ("blue hair red eyes green hair", "gives hair twice"),
])
def test_tag_errors_list_valid_tags(cgan, tags, message):
    with pytest.raises(InputError, match=message):
        cgan.encode_tags(tags)


def test_generate(cgan, exported, runs):
    imgs = cgan.generate("blue hair red eyes", n=3, seed=7)
    assert imgs.shape == (3, 32, 32, 3) and imgs.dtype == np.uint8
    assert np.array_equal(imgs, cgan.generate({"hair": "blue", "eyes": "red"}, n=3, seed=7))
    assert not np.array_equal(imgs, cgan.generate("blue hair red eyes", n=3, seed=8))
    # Same seed: same noise whatever the tags, so only the tags change the picture.
    z = cgan.sample_z(3, seed=7)
    assert np.array_equal(imgs, cgan.generate("blue hair red eyes", z=z))
    per_image = cgan.generate(["blue hair red eyes", "red hair blue eyes"], seed=1)
    assert per_image.shape[0] == 2
    tags = cgan.encode_tags("green hair aqua eyes")
    ref = torch_reference(runs["cgan"], {"z": z, "tags": np.repeat(tags[None], 3, 0)})
    expected = runtime.to_uint8(ref)
    assert np.abs(cgan.generate(tags, z=z).astype(int) - expected).max() <= 1
    with pytest.raises(InputError, match="use translate"):
        load_model(exported["stargan"].path).generate()
    dcgan = load_model(exported["dcgan"].path)
    assert dcgan.generate(n=2, seed=0).shape == (2, 32, 32, 3)
    with pytest.raises(InputError, match="not tag-conditioned"):
        dcgan.generate("blue hair red eyes")


def test_domains_and_translate(exported, runs):
    m = load_model(exported["stargan"].path)
    assert m.encode_domains(["blonde_hair", "young"]).tolist() == [0, 1, 0, 0, 1]
    src = ["black_hair", "male"]
    assert m.encode_domains(["brown_hair"], source=src).tolist() == [0, 0, 1, 1, 0]
    assert m.encode_domains({"male": 0}, source=np.ones(5, np.float32)).tolist() == \
        [1, 1, 1, 0, 1]
    assert m.encode_domains("Blonde_Hair,young").tolist() == [0, 1, 0, 0, 1]
    with pytest.raises(InputError, match="domains are black_hair, blonde_hair, brown_hair"):
        m.encode_domains(["bald"])
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = m.translate(img, ["blonde_hair"], source=src)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    d = m.encode_domains(["blonde_hair"], source=src)[None]
    x = img.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1
    ref = runtime.to_uint8(torch_reference(runs["stargan"], {"image": x, "domains": d}))[0]
    assert np.abs(out.astype(int) - ref).max() <= 1
    assert m.translate(img[..., 0], "male").shape == (32, 32, 3)  # grayscale
    rgba = np.concatenate([img, np.full((32, 32, 1), 255, np.uint8)], -1)
    assert np.array_equal(m.translate(rgba, "male"), m.translate(img, "male"))
    assert m.translate(np.stack([img] * 2), "male").shape == (2, 32, 32, 3)
    assert m.translate(img, np.eye(5, dtype=np.float32)).shape == (5, 32, 32, 3)
    with pytest.raises(InputError, match="takes 32x32"):
        m.translate(img[:16], "male")


def test_translate_feeds_the_source_to_a_difference_model(exported, runs):
    """g_condition=difference: translate() gives the graph the input's own domains as
    ``source`` (all off when none is given), so the same target with another source is
    another change; a metadata g_condition that the runtime does not know is refused."""
    m = load_model(exported["stargan_difference"].path)
    assert m.meta.inputs == ("image", "domains", "source")
    assert "told target minus source" in m.summary()
    assert "told target minus" not in load_model(exported["stargan"].path).summary()
    img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = img.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1
    src = ["black_hair", "male"]
    for source in (src, None):
        d = m.encode_domains(["blonde_hair"], source=source)[None]
        s = m.encode_domains([], source=source)[None]
        ref = runtime.to_uint8(torch_reference(runs["stargan_difference"],
                                                {"image": x, "domains": d, "source": s}))[0]
        out = m.translate(img, ["blonde_hair"], source=source)
        assert np.abs(out.astype(int) - ref).max() <= 1
    own = m.encode_domains(src)
    grid = np.stack([own, m.encode_domains(["blonde_hair"], source=src)])
    both = m.translate(img, grid, source=src)  # one image, K targets, one source
    assert both.shape == (2, 32, 32, 3)
    assert np.array_equal(both[1], m.translate(img, ["blonde_hair"], source=src))
    assert not np.array_equal(both[1], m.translate(img, grid[1:2]))  # same target, no source
    with pytest.raises(InputError, match="domains are black_hair"):
        m.translate(img, ["blonde_hair"], source=["bald"])
    # One source per image ([N, n]); a vector may also be written as a list of numbers.
    other = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    rows = np.stack([own, m.encode_domains(["brown_hair"])])
    pair = m.translate(np.stack([img, other]), ["blonde_hair"], source=rows)
    assert np.array_equal(pair[0], m.translate(img, ["blonde_hair"], source=src))
    assert np.array_equal(pair[1], m.translate(other, ["blonde_hair"], source=["brown_hair"]))
    assert np.array_equal(m.translate(img, ["blonde_hair"], source=own.tolist()),
                          m.translate(img, ["blonde_hair"], source=src))
    assert np.array_equal(m.translate(img, grid.tolist(), source=src), both), "K as lists"
    assert np.array_equal(pair, m.translate(np.stack([img, other]), ["blonde_hair"],
                                            source=rows.tolist()))
    with pytest.raises(InputError, match="2 domain vectors for 3 images"):
        m.translate(np.stack([img] * 3), ["blonde_hair"], source=rows)
    with pytest.raises(InputError, match="length 4, expected 5"):
        m.translate(img, ["blonde_hair"], source=np.zeros((2, 4), np.float32))
    with pytest.raises(InputError, match=r"domain vectors of unequal lengths \[5, 2\]"):
        m.translate(img, [own.tolist(), [1, 0]], source=src)  # the runtime's one error
    with pytest.raises(InputError, match=r"unequal lengths \[5, 3\]"):
        m.translate(img, ["blonde_hair"], source=[own.tolist(), [0, 1, 0]])
    props = {**m.meta.props, "g_condition": "ratio"}
    with pytest.raises(InputError, match="unknown g_condition 'ratio'.*target, difference"):
        runtime.parse_metadata(props)
    old = {k: v for k, v in m.meta.props.items() if k != "g_condition"}  # older exports
    assert runtime.parse_metadata(old).inputs == ("image", "domains")


def test_runtime_does_not_import_torch(exported):
    code = ("import sys, export.runtime as r\n"
            f"m = r.load_model({str(exported['cgan'].path)!r})\n"
            "m.generate('blue hair random eyes', n=2, seed=0)\n"
            "s = r.load_model(" + repr(str(exported["stargan"].path)) + ")\n"
            "s.translate(__import__('numpy').zeros((32, 32, 3), 'uint8'), ['male'])\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'trainer')\n"
            "             and k not in ('trainer', 'trainer.noise'))\n"
            "print(m.provider, bad)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    provider, bad = res.stdout.strip().split(" ", 1)
    assert bad == "[]"
    assert provider in (runtime.CPU, runtime.CUDA)
    assert res.stderr == "", "no error or warning lines on load"


def test_provider_choice(monkeypatch):
    usable, reason = runtime.cuda_status()
    assert reason
    if not usable:
        assert runtime.choose_providers("auto") == ([runtime.CPU], reason)
        with pytest.raises(InputError, match="CUDA is not usable here"):
            runtime.choose_providers("cuda")
    assert runtime.choose_providers("cpu")[0] == [runtime.CPU]
    with pytest.raises(InputError, match="expected auto, cpu or cuda"):
        runtime.choose_providers("tpu")
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CPU])
    assert runtime.cuda_status() == (False, "this onnxruntime has no CUDA provider")


def test_provider_choice_with_a_gpu(monkeypatch):
    """CUDA first only when the driver answers AND the CUDA libraries load."""
    monkeypatch.setattr(runtime.ort, "get_available_providers",
                        lambda: [runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime, "_cuda_driver", lambda: (True, "1 CUDA device(s)"))
    monkeypatch.setattr(runtime, "_cuda_libraries", lambda: (True, ""))
    assert runtime.choose_providers("auto") == ([runtime.CUDA, runtime.CPU], "1 CUDA device(s)")
    missing = "CUDA libraries not loadable: libcublasLt.so.13: cannot open shared object file"
    monkeypatch.setattr(runtime, "_cuda_libraries", lambda: (False, missing))
    assert runtime.choose_providers("auto") == ([runtime.CPU], missing)


def test_truncation(cgan):
    """psi = 1 keeps the seeds' noise of before truncation existed; psi < 1 bounds it."""
    from trainer.noise import truncation_threshold

    z = cgan.sample_z(64, seed=3)
    assert np.array_equal(z, np.random.default_rng(3).standard_normal((64, 16),
                                                                      dtype=np.float32))
    bound = truncation_threshold(0.5)
    zt = cgan.sample_z(64, seed=3, psi=0.5)
    assert np.abs(zt).max() <= bound < np.abs(z).max()
    inside = np.abs(z) <= bound
    assert np.array_equal(zt[inside], z[inside]), "only coordinates outside are redrawn"
    imgs = cgan.generate("blue hair red eyes", n=4, seed=3, psi=0.5)
    assert np.array_equal(imgs, cgan.generate("blue hair red eyes", z=cgan.sample_z(4, 3, 0.5)))
    assert not np.array_equal(imgs, cgan.generate("blue hair red eyes", n=4, seed=3))
    with pytest.raises(InputError, match="truncation psi=0"):
        cgan.generate("blue hair red eyes", seed=0, psi=0)


# -- model cards ----------------------------------------------------------------------
def card_example(body: str) -> str:
    code = body.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) == 5, code
    return code


def test_model_card_matches_the_run(avatar_dir, tmp_path):
    """The card's numbers are the run's: config, checkpoint meta.json, world.json,
    eval/metrics.json; its dataset is the avatars with their attribution; its
    example runs and gives the runtime's image."""
    from export.model_card import read_card

    run = make_run(tmp_path / "run", [*KINDS["cgan"][0], f"data.path={avatar_dir}"],
                   mlds_vocab())
    meta_file = run / "checkpoints" / checkpoint_name(12) / "meta.json"
    meta = {**json.loads(meta_file.read_text()), "consumed": 768, "elapsed": 41.27,
            "world_size": 2}
    meta_file.write_text(json.dumps(meta))
    (run / "world.json").write_text(json.dumps({"world_size": 2, "mixed_precision": "bf16",
                                                "device": "cpu"}))
    (run / "eval").mkdir()
    summary = {"FID": 123.4, "acc hair": 0.875, "acc eyes": 0.5, "acc joint": 0.4375}
    (run / "eval" / "metrics.json").write_text(json.dumps(
        {"run": {"step": 10, "checkpoint": checkpoint_name(10)}, "summary": summary}))
    out = tmp_path / "models"
    assert export_main(["--run", str(run), "--out", str(out), "--name", "card"]) == 0
    front, body = read_card(out / "card.md")

    cfg = load_config(str(run / "config.yaml"))
    assert front["library_name"] == "onnx"
    assert front["pipeline_tag"] == "unconditional-image-generation"
    assert front["step"] == 12 and front["config_sha256"] == config_sha256(cfg)
    assert front["config_name"] == cfg.name and front["arch"] == cfg.model.arch
    assert front["image_size"] == 32 and front["kind"] == "gan"
    assert front["training"] == {"steps": 12, "images_seen": 768 * cfg.batch_size * 2,
                                 "seconds": 41.3,
                                 "world_size": 2, "mixed_precision": "bf16", "device": "cpu"}
    assert front["evaluation"] == {"step": 10, "checkpoint": checkpoint_name(10),
                                   "summary": summary}
    assert "step 10 (not the exported step" in body and "| acc hair | 0.875 |" in body
    data = front["dataset"]
    assert data["path"] == str(avatar_dir) and data["format"] == "avatars"
    assert "Lisa Wischofsky" in data["attribution"] and "CC BY 4.0" in data["licence"]
    assert "DiceBear" in data["attribution"] and data["attribution"] in body
    assert "tags` | float32 [B, 22]" in body and "hair: orange, white" in body
    assert "model.z_dim" not in body and "z_dim: 16" in body  # the config.yaml itself

    res = subprocess.run([sys.executable, "-c", card_example(body)], cwd=out,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    m = load_model(out / "card.onnx")
    tags = np.zeros((1, m.meta.n_tags), np.float32)
    tags[0, [0, len(m.meta.tag_groups[0].tags)]] = 1  # the first tag of each group
    z = np.random.default_rng(0).standard_normal((1, 16), np.float32)
    with Image.open(out / "out.png") as im:
        assert np.array_equal(np.asarray(im), m.generate(tags, z=z)[0])


@pytest.mark.parametrize("kind", ["stargan", "stargan_difference"])
def test_stargan_card_without_evaluation(kind, tmp_path):
    from export.model_card import read_card

    run = make_run(tmp_path / "run", [*KINDS[kind][0], f"data.path={tmp_path / 'gone'}"],
                   DOMAINS)
    res = export_run(run, tmp_path, name="stargan", batches=(1, 2))
    front, body = read_card(res.card)
    assert front["pipeline_tag"] == "image-to-image" and "evaluation" not in front
    assert front["step"] == 12 and front["training"] == {"steps": 12}  # no world.json
    assert "Not evaluated" in body and "licence is not known" in body
    assert front["dataset"]["format"].startswith("unknown")
    assert "round((W - side) / 2)" in body
    assert f"`{load_config(str(run / 'config.yaml')).model.norm_stats}`" in body
    assert ("| `source` | float32 [B, 5]" in body) == (kind == "stargan_difference")
    m = load_model(res.path)
    face = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(face).save(tmp_path / "face.png")
    done = subprocess.run([sys.executable, "-c", card_example(body)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out.png") as im:
        ours = m.translate(face, [m.meta.domains[1]]).astype(int)
        assert np.abs(np.asarray(im).astype(int) - ours).max() <= 1
