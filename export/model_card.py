"""The model card written beside every export: ``DIR/NAME.md``, Hugging Face style.

YAML front matter (machine-readable: kind, step, config hash, training and
evaluation numbers, dataset and licence) and a Markdown body: what the model is,
its inputs and outputs and how to feed them, how it was trained, the evaluation
headline, the dataset with its licence and attribution, and a five-line
onnxruntime example. Every number is read from the run folder's own files
(config.yaml, the checkpoint's meta.json, world.json, eval/metrics.json) or from
the export itself; nothing is typed in by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainer.config import TrainConfig, to_yaml
from trainer.data.avatars import ATTRIBUTION as AVATAR_ATTRIBUTION
from trainer.data.formats import DataError, detect_format

EVAL_FILE = Path("eval") / "metrics.json"
PIPELINE_TAGS = {"gan": "unconditional-image-generation", "stargan": "image-to-image"}


@dataclass(frozen=True)
class DatasetInfo:
    path: str  # data.path of the config, as written there
    format: str  # detected, or the config's when the folder is not there
    licence: str  # "" when tagface does not know it
    attribution: str  # text to show beside generated images; "" when none is known


def dataset_info(cfg: TrainConfig) -> DatasetInfo:
    """Format and licence of the run's dataset; the built-in avatars carry CC BY 4.0 art."""
    fmt = cfg.data.format
    if fmt == "auto":
        try:
            fmt = detect_format(cfg.data.path)
        except DataError:
            fmt = "unknown (the data folder was not found when exporting)"
    if fmt == "avatars":
        return DatasetInfo(cfg.data.path, fmt, "CC BY 4.0 (art), MIT (DiceBear)",
                           AVATAR_ATTRIBUTION)
    return DatasetInfo(cfg.data.path, fmt, "", "")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None if it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def evaluation(run: Path) -> dict[str, Any] | None:
    """{step, checkpoint, summary} of RUN/eval/metrics.json, or None without one."""
    m = read_json(run / EVAL_FILE)
    if not m or not isinstance(m.get("summary"), Mapping):
        return None
    summary = {k: v for k, v in m["summary"].items()
               if isinstance(v, (int, float)) and math.isfinite(v)}
    info = m.get("run") if isinstance(m.get("run"), Mapping) else {}
    return {"step": info.get("step"), "checkpoint": info.get("checkpoint"),
            "summary": summary}


def training(checkpoint: Path, run: Path, batch_size: int) -> dict[str, Any]:
    """Steps, images, seconds and world of the exported checkpoint (meta.json, world.json).

    meta.json's ``consumed`` counts the batches of one process; ``batch_size`` is per process.
    """
    meta = read_json(checkpoint / "meta.json") or {}
    world = read_json(run / "world.json") or {}
    seen = None
    if isinstance(meta.get("consumed"), int):
        seen = meta["consumed"] * batch_size * int(meta.get("world_size") or 1)
    out = {"steps": meta.get("step"), "images_seen": seen,
           "seconds": round(meta["elapsed"], 1) if isinstance(meta.get("elapsed"), float)
           else meta.get("elapsed"), "world_size": meta.get("world_size"),
           "mixed_precision": world.get("mixed_precision"), "device": world.get("device")}
    return {k: v for k, v in out.items() if v is not None}


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _example(name: str, meta: Mapping[str, str], groups: list[dict]) -> str:
    """Five lines of onnxruntime + numpy (+ PIL for StarGAN) that produce one uint8 image."""
    to_uint8 = "np.clip(np.rint((y[0] + 1) * 127.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)"
    if meta["kind"] == "stargan":
        names = json.loads(meta["domains"])["names"]
        target = names[1] if len(names) > 1 else names[0]
        vec = ", ".join("1" if n == target else "0" for n in names)
        s = meta["image_size"]
        source = ""  # g_condition difference: the input's own domains too (here none)
        if meta.get("g_condition") == "difference":
            source = f", 'source': np.zeros((1, {len(names)}), np.float32)"
        return "\n".join([
            "import numpy as np, onnxruntime as ort; from PIL import Image",
            f"sess = ort.InferenceSession({name + '.onnx'!r}, providers=['CPUExecutionProvider'])",
            f"x = np.asarray(Image.open('face.png').convert('RGB').resize(({s}, {s}), "
            f"Image.BILINEAR), np.float32).transpose(2, 0, 1)[None] / 127.5 - 1  # a square face",
            f"y = sess.run(None, {{'image': x, 'domains': np.array([[{vec}]], np.float32)"
            f"{source}}})[0]  # {target}"
            + ("; source: the face's own domains, 0/1 (none here)" if source else ""),
            f"Image.fromarray({to_uint8}).save('out.png')"])
    z = f"np.random.default_rng(0).standard_normal((1, {meta['z_dim']}), np.float32)"
    if groups:
        hot, offset, words = [], 0, []
        for g in groups:
            hot.append(offset)  # the first tag of each group
            words.append(f"{g['tags'][0]} {g['name']}")
            offset += len(g["tags"])
        tags = (f"tags = np.zeros((1, {offset}), np.float32); tags[0, {hot}] = 1"
                f"  # {', '.join(words)}")
        feeds = f"{{'z': {z}, 'tags': tags}}"
    else:
        tags = "# unconditional: no tags input"
        feeds = f"{{'z': {z}}}"
    return "\n".join([
        "import numpy as np, onnxruntime as ort; from PIL import Image",
        f"sess = ort.InferenceSession({name + '.onnx'!r}, providers=['CPUExecutionProvider'])",
        tags,
        f"y = sess.run(None, {feeds})[0]",
        f"Image.fromarray({to_uint8}).save('out.png')"])


def model_card(name: str, meta: Mapping[str, str], cfg: TrainConfig, run: Path,
               checkpoint: Path) -> str:
    """The card text of the export ``name`` (file stem) with metadata ``meta``."""
    kind, size = meta["kind"], int(meta["image_size"])
    groups = json.loads(meta.get("tag_groups", "[]"))
    data = dataset_info(cfg)
    train = training(checkpoint, run, cfg.batch_size)
    ev = evaluation(run)
    front: dict[str, Any] = {
        "library_name": "onnx",
        "pipeline_tag": PIPELINE_TAGS[kind],
        "tags": ["tagface", "onnx", kind, cfg.model.arch],
        "model_name": name,
        "kind": kind,
        "arch": cfg.model.arch,
        "image_size": size,
        "precision": meta["precision"],
        "step": int(meta["step"]),
        "config_name": cfg.name,
        "config_sha256": meta["config_sha256"],
        "tagface_version": meta["tagface_version"],
        "training": train,
        "dataset": {"path": data.path, "format": data.format,
                    **({"licence": data.licence} if data.licence else {}),
                    **({"attribution": data.attribution} if data.attribution else {})},
    }
    if ev:
        front["evaluation"] = ev
    body = [f"# {name}", ""]
    if kind == "stargan":
        domains = json.loads(meta["domains"])
        body += [f"A StarGAN generator (`{cfg.model.arch}`, {size} px) trained with tagface: it "
                 f"translates a face image to other attribute domains "
                 f"({', '.join(domains['names'])}).", ""]
    else:
        what = (f"conditioned on tags ({', '.join(g['name'] for g in groups)})" if groups
                else "unconditional")
        body += [f"A GAN generator (`{cfg.model.arch}`, {size} px, {what}) trained with "
                 f"tagface, exported from checkpoint `{checkpoint.name}` of run "
                 f"`{run.resolve().name}`.", ""]
    body += ["## Inputs and outputs", "", "| name | type | meaning |", "|---|---|---|"]
    if kind == "stargan":
        body += [f"| `image` | float32 [B, 3, {size}, {size}] | RGB, values in [-1, 1] |",
                 f"| `domains` | float32 [B, {len(domains['names'])}] | 0/1 per domain: "
                 f"{', '.join(domains['names'])} |"]
        if meta.get("g_condition") == "difference":
            body += [f"| `source` | float32 [B, {len(domains['names'])}] | 0/1 per domain: the "
                     f"input's own; the generator is told `domains - source` |"]
        body += [f"| `translated` (output) | float32 [B, 3, {size}, {size}] | RGB in [-1, 1] |",
                 "", "Prepare an image as training did (the `preprocess` metadata): composite "
                 "transparency onto white, crop the centred square (offset "
                 "`round((W - side) / 2)`), resize with PIL's bilinear filter, then "
                 "`x = u / 127.5 - 1`. Set the domains the input has, then switch on the "
                 "targets" + (f"; at most one of each set {domains['exclusive']} may be on"
                              if domains["exclusive"] else "") + ". InstanceNorm statistics: "
                 f"`{meta['norm_stats']}`."]
    else:
        body += [f"| `z` | float32 [B, {meta['z_dim']}] | noise, standard normal as in "
                 f"training |"]
        if groups:
            n = sum(len(g["tags"]) for g in groups)
            body += [f"| `tags` | float32 [B, {n}] | one one-hot per group, concatenated: "
                     + "; ".join(f"{g['name']}: {', '.join(g['tags'])}" for g in groups) + " |"]
        body += [f"| `image` (output) | float32 [B, 3, {size}, {size}] | RGB in [-1, 1] |"]
    body += ["", "Output to pixels: `uint8 = round((x + 1) * 127.5)`, NCHW to HWC. B is "
             "dynamic. Everything above is also in the file's `metadata_props`.", ""]
    body += ["## Training", "",
             f"Config `{cfg.name}` (recipe `{cfg.recipe}`, hash "
             f"`{meta['config_sha256'][:12]}`): batch {cfg.batch_size} per process, "
             f"`{cfg.loss.adv}` adversarial loss, G {cfg.g_optim.name} lr "
             f"{cfg.g_optim.lr:g} / D {cfg.d_optim.name} lr {cfg.d_optim.lr:g}, EMA {cfg.ema:g} (the exported "
             f"weights), budget {cfg.steps} steps" + (f" or {cfg.minutes:g} minutes"
                                                      if cfg.minutes else "")
             + ". The exported checkpoint, from its `meta.json` and the run's `world.json`:",
             "", "| | |", "|---|---|"]
    body += [f"| {k.replace('_', ' ')} | {_fmt(v)} |" for k, v in train.items()]
    body += ["", "<details><summary>config.yaml</summary>", "", "```yaml",
             to_yaml(cfg).rstrip(), "```", "", "</details>", ""]
    body += ["## Evaluation", ""]
    if ev:
        at = (f"step {ev['step']}" if ev.get("step") is not None else "an unrecorded step")
        differs = (" (not the exported step: evaluate again for this one)"
                   if ev.get("step") not in (None, int(meta["step"])) else "")
        body += [f"From `eval/metrics.json` (`python -m trainer.evaluate`), {at}{differs}:",
                 "", "| metric | value |", "|---|---|"]
        body += [f"| {k} | {_fmt(v)} |" for k, v in ev["summary"].items()]
    else:
        body += ["Not evaluated: the run has no `eval/metrics.json` "
                 "(`python -m trainer.evaluate --run RUN` writes one)."]
    body += ["", "## Dataset", "", f"`{data.path}`, format `{data.format}`."]
    if data.attribution:
        body += ["", data.attribution, "", "Images generated by this model are derived from "
                 "that art: show this attribution wherever they are shown."]
    else:
        body += ["", "Its licence is not known to tagface: check the dataset's own terms "
                 "before sharing the model or its images."]
    body += ["", "## Use", "", "With onnxruntime, numpy and pillow only:", "", "```python",
             _example(name, meta, groups), "```", "",
             "Or `export.runtime.load_model(path)` (tag names, random tags, seeds and "
             "truncation), or the demo: `python -m demo --models DIR`.", ""]
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{head}---\n\n" + "\n".join(body)


def read_card(path: str | Path) -> tuple[dict[str, Any], str]:
    """(front matter, body) of a card written by ``model_card``."""
    text = Path(path).read_text()
    if not text.startswith("---\n"):
        raise ValueError(f"{path}: no YAML front matter")
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head), body
