"""Pictures: sample grids, training-progress strips and loss curves."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from trainer.modes import to_uint8


def grid_image(images: torch.Tensor, nrow: int, padding: int = 2) -> Image.Image:
    """A PIL grid of [-1, 1] images, ``nrow`` images per row."""
    grid = make_grid(to_uint8(images), nrow=nrow, padding=padding, pad_value=255)
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> Path:
    """Write a PNG grid of [-1, 1] images (written atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    grid_image(images, nrow).save(tmp, format="PNG", optimize=True)
    tmp.replace(path)
    return path


def caption(image: Image.Image, text: str, height: int = 14) -> Image.Image:
    """The image with a white caption band on top."""
    out = Image.new("RGB", (image.width, image.height + height), "white")
    out.paste(image, (0, height))
    ImageDraw.Draw(out).text((2, 1), text, fill="black")
    return out


def progress_strip(sample_paths: Sequence[Path], out: str | Path, image_size: int,
                   max_frames: int = 8, crop_rows: int = 4, crop_cols: int = 4,
                   scale: float = 1.0, palette: bool = False) -> Path | None:
    """Side-by-side crops (the top-left rows x cols) of sample grids over training, by step.

    ``crop_cols=0`` keeps whole rows (StarGAN: an input and all its translations).
    ``palette``: 256 colours, for pictures that go into documentation (a third the size).

    ``image_size`` is the side of one image in the grids (padding 2, as save_grid).
    """
    paths = sorted(sample_paths, key=_step_of)
    if not paths:
        return None
    if len(paths) > max_frames:  # evenly spaced, always keeping the first and the last
        idx = [round(i * (len(paths) - 1) / (max_frames - 1)) for i in range(max_frames)]
        paths = [paths[i] for i in sorted(set(idx))]
    frames = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        cell = image_size + 2
        im = im.crop((0, 0, min(im.width, cell * crop_cols + 2) if crop_cols else im.width,
                      min(im.height, cell * crop_rows + 2)))
        if scale != 1.0:
            im = im.resize((int(im.width * scale), int(im.height * scale)), Image.LANCZOS)
        frames.append(caption(im, f"step {_step_of(p)}"))
    return save_picture(side_by_side(frames, gap=4), out, palette)


def side_by_side(frames: Sequence[Image.Image], gap: int) -> Image.Image:
    """The frames in one row, ``gap`` white pixels apart, top-aligned."""
    width = sum(f.width for f in frames) + gap * (len(frames) - 1)
    row = Image.new("RGB", (width, max(f.height for f in frames)), "white")
    x = 0
    for f in frames:
        row.paste(f, (x, 0))
        x += f.width + gap
    return row


def save_picture(picture: Image.Image, out: str | Path, palette: bool) -> Path:
    """PNG, optimised; ``palette``: 256 colours (a third the size, for documentation)."""
    if palette:
        picture = picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                   dither=Image.Dither.NONE)
    out = Path(out)
    picture.save(out, format="PNG", optimize=True)
    return out


def palette_picks(run: str | Path, out: str | Path, rows: int = 4, cols: int = 6,
                  seed: int = 0) -> Path:
    """One panel per palette pick (layers.PALETTE_PICKS) of the same z and tags, side by side.

    Row r asks for the r-th tag of every group (hair and eyes cycling), each column is a
    new z: the picture beside the "Picking one colour per pixel" table of the docs.
    """
    from trainer.evaluate.sampling import generate, generator_z_dim
    from trainer.models.layers import PALETTE_PICKS, set_palette_pick
    from trainer.runs import RunError, load_generator

    loaded = load_generator(run)
    G, vocab = loaded.model, loaded.vocab
    if not set_palette_pick(G, "soft"):
        raise RunError(f"{run}: the generator has no palette output layer (model.g_palette=0)")
    tags = None
    if vocab is not None and getattr(vocab, "groups", None):
        tags = torch.zeros(rows * cols, vocab.n_tags)
        for r in range(rows):
            for offset, size in zip(vocab.offsets(), vocab.group_sizes, strict=True):
                tags[r * cols:(r + 1) * cols, offset + r % size] = 1.0
    z = torch.randn(rows * cols, generator_z_dim(G), generator=torch.Generator().manual_seed(seed))
    panels = []
    for pick in PALETTE_PICKS:
        set_palette_pick(G, pick)
        images = generate(G, z, tags).float().div(127.5).sub(1.0)
        panels.append(caption(grid_image(images, cols), f"pick {pick}"))
    return save_picture(side_by_side(panels, gap=8), out, palette=True)


def _step_of(path: Path) -> int:
    digits = "".join(c for c in Path(path).stem if c.isdigit())
    return int(digits) if digits else 0


def read_metrics(path: str | Path) -> list[dict]:
    """metrics.jsonl -> list of dicts (a torn last line from a crash is ignored)."""
    rows = []
    p = Path(path)
    if not p.is_file():
        return rows
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_losses(metrics: str | Path | list[dict], out: str | Path, title: str = "") -> Path | None:
    """One panel per phase (D, G, ...) with its scalars against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics) if not isinstance(metrics, list) else metrics
    keys = sorted({k for r in rows for k in r if "/" in k and isinstance(r[k], int | float)})
    if not rows or not keys:
        return None
    prefixes = sorted({k.split("/")[0] for k in keys})
    fig, axes = plt.subplots(1, len(prefixes), figsize=(4.2 * len(prefixes), 3.2), squeeze=False)
    for ax, prefix in zip(axes[0], prefixes, strict=True):
        for k in (k for k in keys if k.split("/")[0] == prefix):
            pts = [(r["step"], r[k]) for r in rows if k in r and math.isfinite(r[k])]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=k.split("/", 1)[1], linewidth=1)
        ax.set_title(prefix)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trainer.viz strip RUN --out F.png``: a progress strip with chosen crops."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m trainer.viz", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("strip", help="progress strip from RUN/samples/step_*.png")
    s.add_argument("run", help="run folder")
    s.add_argument("--out", required=True, help="output PNG")
    s.add_argument("--frames", type=int, default=8, help="at most this many steps (default 8)")
    s.add_argument("--rows", type=int, default=4, help="grid rows per frame (default 4)")
    s.add_argument("--cols", type=int, default=4, help="grid columns per frame, 0 = all")
    s.add_argument("--palette", action="store_true", help="256 colours (small files for docs)")
    k = sub.add_parser("picks", help="a palette run's samples drawn soft, hard and by vote")
    k.add_argument("run", help="run folder")
    k.add_argument("--out", required=True, help="output PNG")
    k.add_argument("--rows", type=int, default=4, help="tag rows (default 4)")
    k.add_argument("--cols", type=int, default=6, help="noise columns (default 6)")
    k.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    args = p.parse_args(argv)
    if args.cmd == "picks":
        from trainer.runs import RunError

        if args.rows < 1 or args.cols < 1:
            p.error("--rows and --cols must be >= 1")
        try:
            print(f"wrote {palette_picks(args.run, args.out, args.rows, args.cols, args.seed)}")
        except RunError as e:
            p.error(str(e))
        return 0
    from trainer.config import load_run_config

    run = Path(args.run)
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        p.error(f"{cfg_file}: no such file; expected a run folder written by trainer.train")
    samples = sorted((run / "samples").glob("step_*.png"))
    if not samples:
        p.error(f"{run / 'samples'}: no step_*.png sample grids yet")
    size = load_run_config(cfg_file).data.size
    out = progress_strip(samples, args.out, image_size=size, max_frames=args.frames,
                         crop_rows=args.rows, crop_cols=args.cols, palette=args.palette)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
