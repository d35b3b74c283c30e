"""How FID reads a dataset: real images, slightly degraded, scored against real images.

    python -m benchmarks.fid_sensitivity --data data/avatars            # n = 1000, clean resize
    python -m benchmarks.fid_sensitivity --tiny --json out.json         # seconds; CI

A generator's FID means little without a scale. This scores a second, disjoint
sample of real images (the real-vs-real floor that ``trainer.evaluate`` reports)
after small known degradations against the same first sample that a generator is
compared with, with the same features, resize and cache as ``trainer.evaluate``:
a 3x3 binomial blur, Gaussian pixel noise of 2, 4 and 8 levels out of 255, a
2x bilinear down- and upsampling, the same half size drawn back as 2x2 blocks (a
half-resolution model's flat pixels), 16 colours per image (what a palette
generator with K = 16 that picks one colour per pixel can at best draw), and the
outlines painted over (every dark line up to 2 pixels wide). ``--only TEXT`` scores
the rows whose name contains TEXT. Each row
also shows the grain ratio (mean |Laplacian| over the real images', as the
evaluation reports it), so a generator's grain can be read against the FID that
noise alone costs on this data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

Degrade = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # uint8 -> uint8


def _u8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def blur(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """3x3 binomial ([1 2 1] / 4 each way) blur, edges replicated."""
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None]) / 16
    c = x.shape[1]
    y = F.conv2d(F.pad(x.float(), (1, 1, 1, 1), mode="replicate"),
                 k.expand(c, 1, 3, 3).contiguous(), groups=c)
    return _u8(y)


def noise(sigma: float) -> Degrade:
    """Gaussian noise of ``sigma`` levels (of 255) on every pixel."""
    def add(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return _u8(x.float() + sigma * torch.randn(x.shape, generator=g))
    return add


def down_up(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Half the size (bilinear, antialiased) and back: what a half-resolution model can show."""
    s = x.shape[-1]
    y = F.interpolate(x.float(), size=s // 2, mode="bilinear", antialias=True, align_corners=False)
    return _u8(F.interpolate(y, size=s, mode="bilinear", align_corners=False))


def colours(k: int) -> Degrade:
    """Each image reduced to ``k`` colours (PIL median cut, no dithering)."""
    def reduce(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        import numpy as np
        from PIL import Image

        out = torch.empty_like(x)
        for i, im in enumerate(x):
            pil = Image.fromarray(im.permute(1, 2, 0).numpy())
            q = pil.quantize(colors=k, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            out[i] = torch.from_numpy(np.array(q.convert("RGB"))).permute(2, 0, 1)
        return out
    return reduce


def nearest_down_up(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Half the size (2x2 mean) and back by repeating pixels: a half-resolution model's
    pixels drawn as 2x2 blocks, flat but with 2-pixel outlines and steps."""
    return _u8(F.interpolate(F.avg_pool2d(x.float(), 2), scale_factor=2, mode="nearest"))


OUTLINE_MAX = 70  # a pixel is ink if no channel is above this (the outlines are 28, 28, 28)


def no_outlines(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Dark lines at most 2 pixels wide painted over with the mean of their neighbours
    off the line, so that outlines go and dark regions (black hair) stay: what a
    generator that draws every shape right but no outlines would pay in FID."""
    y = x.float()
    dark = (y.amax(1, keepdim=True) <= OUTLINE_MAX).float()
    eroded = -F.max_pool2d(-F.pad(dark, (1, 1, 1, 1), value=1.0), 3, 1)  # 3x3 all dark
    thick = F.max_pool2d(F.pad(eroded, (1, 1, 1, 1)), 3, 1)  # the opening: wide dark areas
    todo = dark * (1 - thick)
    while bool(todo.any()):
        known = 1 - todo
        total = F.avg_pool2d(F.pad(y * known, (1, 1, 1, 1)), 3, 1)
        count = F.avg_pool2d(F.pad(known, (1, 1, 1, 1)), 3, 1)
        fill = (todo > 0) & (count > 0)  # painted from the light side, one ring per pass
        if not bool(fill.any()):
            break
        y = torch.where(fill, total / count.clamp_min(1e-6), y)
        todo = todo * (~fill).float()
    return _u8(y)


DEGRADATIONS: dict[str, Degrade] = {
    "none (real vs real)": lambda x, g: x,
    "3x3 binomial blur": blur,
    "noise 2/255": noise(2),
    "noise 4/255": noise(4),
    "noise 8/255": noise(8),
    "2x down and up": down_up,
    "2x down, up as 2x2 blocks": nearest_down_up,
    "16 colours per image": colours(16),
    "outlines painted over": no_outlines,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fid_sensitivity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/avatars", help="dataset folder (default data/avatars)")
    p.add_argument("--size", type=int, default=64, help="image size (default 64, as the flagship)")
    p.add_argument("--n", type=int, default=1000, help="images per sample (default 1000)")
    p.add_argument("--resize", default="clean", choices=["clean", "pytorch-fid"])
    p.add_argument("--seed", type=int, default=0, help="the evaluation's sample seed")
    p.add_argument("--cache-dir", help="as trainer.evaluate's (default: its cache)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--only", action="append", metavar="TEXT",
                   help="only the rows whose name contains TEXT (repeatable; default all)")
    p.add_argument("--tiny", action="store_true", help="64 rendered avatars, n = 16 (CI)")
    return p.parse_args(argv)


def selected(only: list[str] | None) -> list[str]:
    """The rows whose name contains one of ``only`` (every row if None or empty)."""
    return [name for name in DEGRADATIONS if not only or any(t in name for t in only)]


def measure(dataset: object, n: int, seed: int, resize: str, cache_dir: Path,
            names: list[str] | None = None) -> list[dict]:
    """One row per degradation in ``names`` (default all): FID and KID against sample A,
    and the grain ratio."""
    from trainer.evaluate.diversity import grain
    from trainer.evaluate.fid import extract_features, fid_from_features, real_features_cached
    from trainer.evaluate.gan_metrics import real_sample_cache
    from trainer.evaluate.sampling import real_batches, sample_indices

    images = dataset.images  # type: ignore[attr-defined]
    idx = sample_indices(len(images), 2 * n, seed)  # as trainer.evaluate: A first, then B
    if len(idx) < n + 2:
        raise SystemExit(f"error: --n {n}: the dataset has {len(images)} images, fewer than "
                         f"2 x n; lower --n")
    feats_a = real_features_cached(real_batches(images, idx[:n]),
                                   real_sample_cache(dataset, cache_dir, seed, n, resize),
                                   resize)  # type: ignore[arg-type]
    b = images[idx[n:]].contiguous()
    g0 = grain(b)
    rows = []
    for name in names or list(DEGRADATIONS):
        x = DEGRADATIONS[name](b, torch.Generator().manual_seed(seed))
        res = fid_from_features(feats_a, extract_features(x.split(64), resize))  # type: ignore[arg-type]
        rows.append({"degradation": name, "fid": res["fid"], "kid": res["kid"],
                     "grain_ratio": grain(x) / g0 if g0 > 0 else float("nan"),
                     "n_a": len(feats_a), "n_b": len(x)})
        print(f"  {name:<22} FID {res['fid']:7.1f}  grain {rows[-1]['grain_ratio']:.2f}",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import (
        finish_machine,
        machine_info,
        machine_line,
        md_table,
        tiny_avatars,
        write_json,
    )
    from trainer.data import load_dataset
    from trainer.evaluate.pipeline import eval_cache_dir

    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data, n, size, cache = Path(args.data), args.n, args.size, args.cache_dir
        if args.tiny:
            data, n, size = tiny_avatars(Path(tmp) / "avatars", 64, 32), 16, 32
            cache = Path(tmp) / "cache"
        if not data.is_dir():
            raise SystemExit(f"error: --data {data}: no such dataset folder (render one with "
                             f"`tagface data avatars --out {data}`)")
        dataset = load_dataset(data, size=size)
        machine = machine_info()
        names = selected(args.only)
        if not names:
            raise SystemExit(f"error: --only {args.only}: no row matches; the rows are: "
                             f"{'; '.join(DEGRADATIONS)}")
        rows = measure(dataset, n, args.seed, args.resize, eval_cache_dir(cache), names)
        finish_machine(machine)
        print()
        print(machine_line(machine))
        print(f"{data}: {n} vs {n} images at {size} px, {args.resize} resize")
        print(md_table(["real sample B after", "FID", "KID", "grain / real"],
                       [[r["degradation"], f"{r['fid']:.1f}", f"{r['kid']:.3f}",
                         f"{r['grain_ratio']:.2f}"] for r in rows]))
        if args.json:
            settings = {"data": str(data), "n": n, "size": size, "resize": args.resize,
                        "seed": args.seed, "tiny": args.tiny}
            write_json(args.json, {"benchmark": "fid_sensitivity", "machine": machine,
                                   "results": rows, "settings": settings})
    return 0


if __name__ == "__main__":
    sys.exit(main())
