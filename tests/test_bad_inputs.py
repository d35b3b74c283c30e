"""A corpus of bad inputs, generated into ``bad_inputs/`` (one folder per case) by a fixture.

Every case runs a real entry point (the data CLI, train, export, evaluate, translate,
or the demo's upload reader) and must give exit code 2 (or, where documented, a
warning and exit 0), one ``error:`` line naming the offending file, line or option,
no traceback on stderr, and leave every input file byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from trainer.config import config_sha256, load_config, to_yaml
from trainer.data.vocab import Domains, save_vocab
from trainer.runs import checkpoint_name

TINY = ["data.size=32", "batch_size=8", "model.g_ch=16", "model.d_ch=16", "log_every=2",
        "sample_every=4", "ckpt_every=4", "n_samples=16", "mixed_precision=no"]


@dataclass
class Case:
    cli: str  # data | train | export | evaluate | translate | demo
    argv: list[str]
    expect: list[str]  # substrings of the one error line (or of stdout for rc 0)
    inputs: list[Path]  # files and folders that must not change
    rc: int = 2
    notes: dict = field(default_factory=dict)


@dataclass
class Shared:
    avatars: Path  # the session's 96 avatars at 32 px (read only)
    gan_run: Path  # a trained 8-step cGAN run (copied before breaking)
    stargan_run: Path  # a StarGAN run folder with a random generator
    image: Path  # a valid 32x32 PNG


BUILDERS: dict[str, Callable[[Path, Shared], Case]] = {}


def case(name: str):
    def wrap(fn: Callable[[Path, Shared], Case]) -> Callable[[Path, Shared], Case]:
        BUILDERS[name] = fn
        return fn
    return wrap


# -- helpers that write bad files ---------------------------------------------------------
def png(path: Path, value: int = 128, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value, value)).save(path)
    return path


def adl(root: Path, lines: list[str], n_images: int = 4) -> Path:
    """An ADL folder: images/0..n-1.png and tags.csv with ``lines``."""
    for i in range(n_images):
        png(root / "images" / f"{i}.png", 40 * i)
    (root / "tags.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def mlds(root: Path, lines: list[str]) -> Path:
    for i in range(3):
        png(root / "faces" / f"{i}.png", 50 * i)
    (root / "tags_clean.csv").write_text("\n".join(lines) + "\n")
    return root


def celeba(root: Path, text: str) -> Path:
    for i in range(2):
        png(root / "images" / f"{i}.png")
    (root / "list_attr.txt").write_text(text)
    return root


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def newest(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


def truncate(path: Path, keep: int = 1000) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def nan_weights(path: Path) -> Path:
    state = load_file(path)
    k = next(k for k, v in state.items() if v.is_floating_point())
    state[k] = torch.full_like(state[k], float("nan"))
    save_file(state, str(path))
    return path


def nan_outputs(path: Path) -> Path:
    """Finite weights whose outputs are NaN: negative BatchNorm variances (sqrt < 0)."""
    state = load_file(path)
    keys = [k for k in state if k.endswith("running_var")]
    assert keys, "the generator has no BatchNorm to break"
    for k in keys:
        state[k] = torch.full_like(state[k], -1.0)
    save_file(state, str(path))
    return path


def train_args(run: Path, data: Path, *extra: str) -> list[str]:
    return ["--config", "cgan_avatars", "--run-dir", str(run), f"data.path={data}", *TINY, *extra]


# -- the data CLI -------------------------------------------------------------------------
@case("data_missing_folder")
def _(d: Path, s: Shared) -> Case:
    return Case("data", ["info", str(d / "nowhere")], [f"{d / 'nowhere'}", "no such"], [])


@case("data_unknown_format")
def _(d: Path, s: Shared) -> Case:
    (d / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (d / "notes.txt").write_text("not a dataset\n")
    return Case("data", ["info", str(d)], [str(d), "no known dataset format"], [d])


@case("tags_csv_unknown_tag")
def _(d: Path, s: Shared) -> Case:
    adl(d, ["0,blonde hair blue eyes", "1,blonde hair blue eyes", "2,plaid hair blue eyes"])
    return Case("data", ["info", str(d)], [f"{d / 'tags.csv'}:3"], [d])


@case("tags_csv_no_comma")
def _(d: Path, s: Shared) -> Case:
    adl(d, ["0,blonde hair blue eyes", "1 blonde hair blue eyes"])
    return Case("data", ["info", str(d)], [f"{d / 'tags.csv'}:2", "expected 'id,<tags>'"], [d])


@case("tags_csv_conflicting_duplicate_id")
def _(d: Path, s: Shared) -> Case:
    adl(d, ["0,blonde hair blue eyes", "1,black hair red eyes", "0,aqua hair red eyes"])
    return Case("data", ["info", str(d)], [f"{d / 'tags.csv'}:3", "'0' again", "line 1"], [d])


@case("tags_csv_not_utf8")
def _(d: Path, s: Shared) -> Case:
    adl(d, ["0,blonde hair blue eyes"])
    (d / "tags.csv").write_bytes(b"0,blonde hair blue eyes\n1,caf\xe9 hair blue eyes\n")
    return Case("data", ["info", str(d)], [f"{d / 'tags.csv'}", "not UTF-8"], [d])


@case("tags_csv_byte_order_mark_is_handled")
def _(d: Path, s: Shared) -> Case:
    adl(d, ["0,blonde hair blue eyes", "1,black hair red eyes"], n_images=2)
    (d / "tags.csv").write_bytes(b"\xef\xbb\xbf" + (d / "tags.csv").read_bytes())
    return Case("data", ["info", str(d)], ["2 images that decode"], [d], rc=0)


@case("mlds_negative_count")
def _(d: Path, s: Shared) -> Case:
    mlds(d, ["0,blonde hair:3\tblue eyes:2", "1,black hair:-4\tred eyes:1"])
    return Case("data", ["info", str(d)], [f"{d / 'tags_clean.csv'}:2", "-4", ">= 0"], [d])


@case("mlds_count_not_integer")
def _(d: Path, s: Shared) -> Case:
    mlds(d, ["0,blonde hair:many\tblue eyes:2"])
    return Case("data", ["info", str(d)], [f"{d / 'tags_clean.csv'}:1", "'many'"], [d])


@case("mlds_item_without_count")
def _(d: Path, s: Shared) -> Case:
    mlds(d, ["0,blonde hair\tblue eyes:2"])
    return Case("data", ["info", str(d)], [f"{d / 'tags_clean.csv'}:1", "tag:count"], [d])


@case("list_attr_count_line")
def _(d: Path, s: Shared) -> Case:
    celeba(d, "two\nBlack_Hair Male\n0.png 1 -1\n1.png -1 1\n")
    return Case("data", ["info", str(d), "--attrs", "Male"], [f"{d / 'list_attr.txt'}:1"], [d])


@case("list_attr_bad_value")
def _(d: Path, s: Shared) -> Case:
    celeba(d, "2\nBlack_Hair Male\n0.png 1 -1\n1.png 2 1\n")
    return Case("data", ["info", str(d), "--attrs", "Male"],
                [f"{d / 'list_attr.txt'}:4", "1, 0 or -1"], [d])


@case("list_attr_duplicate_names")
def _(d: Path, s: Shared) -> Case:
    celeba(d, "2\nMale Male\n0.png 1 -1\n1.png -1 1\n")
    return Case("data", ["info", str(d), "--attrs", "Male"],
                [f"{d / 'list_attr.txt'}:2", "distinct"], [d])


@case("list_attr_wrong_row_count")
def _(d: Path, s: Shared) -> Case:
    celeba(d, "3\nBlack_Hair Male\n0.png 1 -1\n1.png -1 1\n")
    return Case("data", ["info", str(d), "--attrs", "Male"],
                [f"{d / 'list_attr.txt'}:1", "says 3"], [d])


@case("list_attr_unknown_attribute")
def _(d: Path, s: Shared) -> Case:
    celeba(d, "2\nBlack_Hair Male\n0.png 1 -1\n1.png -1 1\n")
    return Case("data", ["info", str(d), "--attrs", "Blond_Hair"],
                [f"{d / 'list_attr.txt'}:2", "'Blond_Hair'"], [d])


@case("cartoon_attr_not_one_hot")
def _(d: Path, s: Shared) -> Case:
    png(d / "images" / "a.png")
    (d / "cartoon_attr.txt").write_text("1\nhair_orange hair_black\na.png 1 1\n")
    return Case("data", ["info", str(d)], [f"{d / 'cartoon_attr.txt'}:3", "one-hot"], [d])


@case("cartoonset_csv_bad_row")
def _(d: Path, s: Shared) -> Case:
    png(d / "cs1.png")
    (d / "cs1.csv").write_text('"hair_color", 3, 10\n"eye_color", blue, 5\n')
    return Case("data", ["info", str(d)], [f"{d / 'cs1.csv'}:2"], [d])


@case("cartoonset_value_out_of_range")
def _(d: Path, s: Shared) -> Case:
    png(d / "cs1.png")
    (d / "cs1.csv").write_text('"hair_color", 12, 10\n')
    return Case("data", ["info", str(d)], [f"{d / 'cs1.csv'}:1", "0 <= value < variants"], [d])


@case("data_no_image_decodes")
def _(d: Path, s: Shared) -> Case:
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * i)
    return Case("data", ["cache", str(d), "--size", "32"],
                [str(d), "none of the 3 images could be read"], [d])


@case("data_info_counts_only_what_decodes")
def _(d: Path, s: Shared) -> Case:
    for i in range(3):
        png(d / f"{i}.png")
    truncate(png(d / "3.png", size=64), 60)
    return Case("data", ["info", str(d)],
                ["3 images that decode", "1 of 4 listed could not be read", "3.png"], [d], rc=0)


@case("data_cache_size_zero")
def _(d: Path, s: Shared) -> Case:
    png(d / "0.png")
    return Case("data", ["cache", str(d), "--size", "0"], ["size=0"], [d])


# -- train --------------------------------------------------------------------------------
@case("train_unknown_preset")
def _(d: Path, s: Shared) -> Case:
    return Case("train", ["--config", "no_such_preset", "--run-dir", str(d / "r")],
                ["'no_such_preset'", "no such preset"], [])


@case("train_bad_enum_value")
def _(d: Path, s: Shared) -> Case:
    return Case("train", train_args(d / "r", s.avatars, "model.cond=magic"),
                ["model.cond='magic'"], [s.avatars])


@case("train_unknown_key")
def _(d: Path, s: Shared) -> Case:
    return Case("train", train_args(d / "r", s.avatars, "model.g_chh=4"), ["g_chh"],
                [s.avatars])


@case("train_override_without_value")
def _(d: Path, s: Shared) -> Case:
    return Case("train", train_args(d / "r", s.avatars, "steps"), ["override 'steps'"],
                [s.avatars])


@case("train_lr_inf")
def _(d: Path, s: Shared) -> Case:
    return Case("train", train_args(d / "r", s.avatars, "g_optim.lr=inf"),
                ["g_optim.lr=inf", "finite"], [s.avatars])


@case("train_lr_nan")
def _(d: Path, s: Shared) -> Case:
    return Case("train", train_args(d / "r", s.avatars, "d_optim.lr=nan"), ["d_optim.lr"],
                [s.avatars])


@case("train_list_option_given_a_word")
def _(d: Path, s: Shared) -> Case:
    return Case("train", train_args(d / "r", s.avatars, "data.attrs=Black_Hair"),
                ["data.attrs", "data.attrs=[Black_Hair]"], [s.avatars])


@case("train_bad_image_size")
def _(d: Path, s: Shared) -> Case:
    return Case("train", train_args(d / "r", s.avatars, "data.size=48"), ["data.size=48"],
                [s.avatars])


@case("train_yaml_not_valid")
def _(d: Path, s: Shared) -> Case:
    d.mkdir(parents=True)
    (d / "mine.yaml").write_text("steps: [1, 2\n")
    return Case("train", ["--config", str(d / "mine.yaml"), "--run-dir", str(d / "r")],
                [str(d / "mine.yaml"), "not valid YAML"], [d / "mine.yaml"])


@case("train_missing_data_folder")
def _(d: Path, s: Shared) -> Case:
    return Case("train", train_args(d / "r", d / "no_data"), [str(d / "no_data")], [])


@case("train_batch_larger_than_dataset")
def _(d: Path, s: Shared) -> Case:
    return Case("train", train_args(d / "r", s.avatars, "batch_size=128"),
                ["batch_size=128", str(s.avatars), "96 usable images"], [s.avatars])


@case("train_conflicting_tags_csv")
def _(d: Path, s: Shared) -> Case:
    adl(d / "data", ["0,blonde hair blue eyes", "0,black hair red eyes"])
    return Case("train", train_args(d / "r", d / "data"), [f"{d / 'data' / 'tags.csv'}:2"],
                [d / "data"])


@case("train_existing_run_without_resume")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    return Case("train", train_args(run, s.avatars, "steps=8"), [str(run), "--resume auto"],
                [run, s.avatars])


@case("train_resume_with_changed_config")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    return Case("train", [*train_args(run, s.avatars, "steps=8", "loss.adv=lsgan"),
                          "--resume", "auto"], ["loss.adv"], [run, s.avatars])


@case("train_resume_config_yaml_deleted")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    (run / "config.yaml").unlink()
    return Case("train", [*train_args(run, s.avatars, "steps=8"), "--resume", "auto"],
                [f"{run / 'config.yaml'}: missing", "--config cgan_avatars"], [run, s.avatars])


@case("train_resume_every_checkpoint_broken")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    for ckpt in (run / "checkpoints").glob("step_*"):
        truncate(ckpt / "optimizer.bin")
    return Case("train", [*train_args(run, s.avatars, "steps=8"), "--resume", "auto"],
                ["no usable checkpoint", "optimizer.bin"], [run, s.avatars])


@case("train_run_folder_locked")
def _(d: Path, s: Shared) -> Case:
    import socket

    holder = subprocess.Popen(["sleep", "300"])
    d.mkdir(parents=True)
    (d / "train.lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": holder.pid, "since": 0}))
    return Case("train", train_args(d, s.avatars, "steps=8"),
                [f"pid {holder.pid} on host {socket.gethostname()}", "in use"],
                [d / "train.lock", s.avatars], notes={"holder": holder})


# -- export ---------------------------------------------------------------------------
@case("export_missing_run")
def _(d: Path, s: Shared) -> Case:
    return Case("export", ["--run", str(d / "none"), "--out", str(d / "m")],
                [str(d / "none"), "no such run folder"], [])


@case("export_truncated_g_ema")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    bad = truncate(newest(run) / "g_ema.safetensors")
    return Case("export", ["--run", str(run), "--out", str(d / "m")],
                [str(bad), "unreadable"], [run])


@case("export_nan_g_ema")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    bad = nan_weights(newest(run) / "g_ema.safetensors")
    return Case("export", ["--run", str(run), "--out", str(d / "m")],
                [str(bad), "non-finite"], [run])


@case("export_nan_outputs")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    bad = nan_outputs(newest(run) / "g_ema.safetensors")
    return Case("export", ["--run", str(run), "--out", str(d / "m")],
                [str(bad), "NaN/inf"], [run])


@case("export_out_is_a_file")
def _(d: Path, s: Shared) -> Case:
    d.mkdir(parents=True)
    (d / "models").write_text("a file\n")
    return Case("export", ["--run", str(s.gan_run), "--out", str(d / "models")],
                [f"--out {d / 'models'}", "expected a folder"], [d / "models", s.gan_run])


@case("export_empty_latest")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    (run / "checkpoints" / "latest").write_text("")
    return Case("export", ["--run", str(run), "--out", str(d / "m")],
                [str(run / "checkpoints" / "latest"), "expected the name of a checkpoint"],
                [run])


@case("export_meta_json_empty_object")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    (newest(run) / "meta.json").write_text("{}")
    return Case("export", ["--run", str(run), "--out", str(d / "m")],
                [str(newest(run) / "meta.json"), "'step'"], [run])


@case("export_unknown_checkpoint")
def _(d: Path, s: Shared) -> Case:
    return Case("export", ["--run", str(s.gan_run), "--out", str(d / "m"), "--checkpoint",
                           "step_99"], ["--checkpoint step_99"], [s.gan_run])


# -- evaluate -------------------------------------------------------------------------
@case("evaluate_truncated_g_ema")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    bad = truncate(newest(run) / "g_ema.safetensors")
    return Case("evaluate", ["--run", str(run), "--no-fid", "--out", str(d / "e")],
                [str(bad), "unreadable"], [run])


@case("evaluate_nan_g_ema")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    bad = nan_weights(newest(run) / "g_ema.safetensors")
    return Case("evaluate", ["--run", str(run), "--no-fid", "--out", str(d / "e")],
                [str(bad), "non-finite"], [run])


@case("evaluate_nan_outputs")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.gan_run, d / "run")
    bad = nan_outputs(newest(run) / "g_ema.safetensors")
    return Case("evaluate", ["--run", str(run), "--no-fid", "--out", str(d / "e")],
                [str(bad), "NaN/inf"], [run, s.avatars])


@case("evaluate_missing_run")
def _(d: Path, s: Shared) -> Case:
    return Case("evaluate", ["--run", str(d / "none"), "--no-fid"], [str(d / "none")], [])


@case("evaluate_negative_standing_stats")
def _(d: Path, s: Shared) -> Case:
    return Case("evaluate", ["--run", str(s.gan_run), "--no-fid", "--out", str(d / "e"),
                             "--standing-stats", "-2"], ["--standing-stats -2", "batches"],
                [s.gan_run])


# -- translate ------------------------------------------------------------------------
def translate_args(run: Path, image: Path, out: Path, *extra: str) -> list[str]:
    return ["--run", str(run), "--image", str(image), "--to", "Blond_Hair", "--out", str(out),
            *extra]


@case("translate_corrupt_image")
def _(d: Path, s: Shared) -> Case:
    bad = truncate(png(d / "in.png", size=64), 50)
    return Case("translate", translate_args(s.stargan_run, bad, d / "out.png"),
                [f"--image {bad}"], [bad, s.stargan_run])


@case("translate_missing_image")
def _(d: Path, s: Shared) -> Case:
    return Case("translate", translate_args(s.stargan_run, d / "no.png", d / "out.png"),
                [f"--image {d / 'no.png'}"], [s.stargan_run])


@case("translate_unknown_domain")
def _(d: Path, s: Shared) -> Case:
    argv = translate_args(s.stargan_run, s.image, d / "out.png")
    argv[argv.index("Blond_Hair")] = "Plaid_Hair"
    return Case("translate", argv, ["Plaid_Hair"], [s.image, s.stargan_run])


@case("translate_truncated_g_ema")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.stargan_run, d / "run")
    bad = truncate(newest(run) / "g_ema.safetensors", 100)
    return Case("translate", translate_args(run, s.image, d / "out.png"),
                [str(bad), "unreadable"], [run, s.image])


@case("translate_nan_g_ema")
def _(d: Path, s: Shared) -> Case:
    run = copy_run(s.stargan_run, d / "run")
    bad = nan_weights(newest(run) / "g_ema.safetensors")
    return Case("translate", translate_args(run, s.image, d / "out.png"),
                [str(bad), "non-finite"], [run, s.image])


# -- the demo's upload reader -----------------------------------------------------------
@case("demo_upload_empty_file")
def _(d: Path, s: Shared) -> Case:
    d.mkdir(parents=True)
    (d / "empty.png").write_bytes(b"")
    return Case("demo", [str(d / "empty.png")], ["empty.png", "not an image"], [d])


@case("demo_upload_text_named_png")
def _(d: Path, s: Shared) -> Case:
    d.mkdir(parents=True)
    (d / "notes.png").write_text("hello\n")
    return Case("demo", [str(d / "notes.png")], ["notes.png", "not an image"], [d])


@case("demo_upload_truncated_png")
def _(d: Path, s: Shared) -> Case:
    bad = truncate(png(d / "cut.png", size=64), 70)
    return Case("demo", [str(bad)], ["cut.png", "not an image"], [d])


@case("demo_upload_too_large")
def _(d: Path, s: Shared) -> Case:
    big = d / "big.bmp"
    big.parent.mkdir(parents=True)
    Image.new("RGB", (600, 600)).save(big)
    return Case("demo", [str(big)], ["big.bmp", "limited to"], [d])


# -- running a case -----------------------------------------------------------------------
def digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
                  if p.is_dir() else []):
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def invoke(c: Case) -> int:
    """Run the case's entry point in this process; its exit status."""
    if c.cli == "demo":
        from demo.app import read_upload
        from export.runtime import InputError

        try:
            read_upload(c.argv[0], 32, max_bytes=100_000)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if c.cli == "data":
        from trainer.data.__main__ import main
    elif c.cli == "train":
        from trainer.train import main
    elif c.cli == "export":
        from export.__main__ import main
    elif c.cli == "evaluate":
        from trainer.evaluate.__main__ import main
    else:
        from trainer.translate import main
    try:
        return main(c.argv)
    except SystemExit as e:  # argparse
        return int(e.code or 0)


@pytest.fixture(scope="module")
def shared(avatar_dir, tmp_path_factory) -> Shared:
    root = tmp_path_factory.mktemp("shared")
    gan = root / "gan"
    res = subprocess.run([sys.executable, "-m", "trainer.train",
                          *train_args(gan, avatar_dir, "steps=8")],
                         capture_output=True, text=True,
                         env={**os.environ, "TAGFACE_NO_BAR": "1"}, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    stargan = root / "stargan"
    attrs = ("Black_Hair", "Blond_Hair", "Male")
    cfg = load_config(None, ["recipe=stargan", "model.arch=stargan", "data.size=32",
                             "model.g_ch=8", "model.d_ch=8", f"data.attrs=[{','.join(attrs)}]"])
    stargan.mkdir()
    (stargan / "config.yaml").write_text(to_yaml(cfg))
    domains = Domains(attrs, (("Black_Hair", "Blond_Hair"),))
    save_vocab(domains, stargan / "vocab.json")
    from trainer.models import build_generator

    g = build_generator(cfg, domains.n_domains)
    ckpt = stargan / "checkpoints" / checkpoint_name(4)
    ckpt.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in g.state_dict().items()},
              str(ckpt / "g_ema.safetensors"))
    (ckpt / "meta.json").write_text(json.dumps({"step": 4, "config_sha256": config_sha256(cfg)}))
    (stargan / "checkpoints" / "latest").write_text(ckpt.name + "\n")
    image = png(root / "face.png", size=32)
    return Shared(avatar_dir, gan, stargan, image)


@pytest.fixture(scope="module")
def bad_inputs(shared, tmp_path_factory) -> dict[str, Case]:
    """Writes every case into bad_inputs/<case>/ (nothing binary is committed)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    cases = {name: build(root / name, shared) for name, build in BUILDERS.items()}
    yield cases
    for c in cases.values():
        if "holder" in c.notes:
            c.notes["holder"].kill()
            c.notes["holder"].wait()


def test_the_corpus_is_large_and_covers_every_entry_point(bad_inputs):
    assert len(bad_inputs) >= 40
    assert {c.cli for c in bad_inputs.values()} == {"data", "train", "export", "evaluate",
                                                     "translate", "demo"}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_bad_input(name, bad_inputs, capfd, monkeypatch):
    monkeypatch.setenv("TAGFACE_NO_BAR", "1")
    c = bad_inputs[name]
    before = digest(c.inputs)
    rc = invoke(c)
    out, err = capfd.readouterr()
    assert "Traceback" not in err, err
    assert rc == c.rc, f"rc {rc}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if c.rc == 0:
        assert not errors, err
        text = out
    else:
        assert len(errors) == 1, err
        text = errors[0]
    for want in c.expect:
        assert want in text, f"{want!r} not in {text!r}"
    assert digest(c.inputs) == before, "an input file changed"


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    from trainer.data.transforms import load_image

    ramp = np.tile(np.linspace(0, 65535, 64), (64, 1)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert Image.open(tmp_path / "ramp16.png").mode.startswith("I")
    pixels = load_image(tmp_path / "ramp16.png", 64)
    assert abs(float(pixels.mean()) - 127.5) < 1.0
    assert pixels.min() == 0 and pixels.max() == 255
