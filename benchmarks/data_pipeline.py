"""Input pipeline speed: the uint8 memmap cache against decoding PNGs with PIL.

    python -m benchmarks.data_pipeline --data DIR [--size 64] [--batch 64] [--epochs 3]
    python -m benchmarks.data_pipeline --render 200    # avatar SVG + rasterizers, per image
    python -m benchmarks.data_pipeline --tiny          # 256 fresh avatars at 32 px, smoke test

Prints images/s of:
  cache build      decoding every image once into the cache (parallel over cores)
  cache            ImageDataset batches (random index) + to_model_input (flip, [-1, 1])
  cache+loader     the same through DataLoader(batch, shuffle, num_workers=0)
  PIL loader wN    DataLoader over a Dataset that opens each PNG with PIL and applies
                   torchvision RandomHorizontalFlip + ToTensor + Normalize (the DCGAN
                   example's pipeline), num_workers N
Each figure is the best of --epochs passes over the data; in-process pipelines also
report CPU microseconds per image, which a busy machine distorts far less. With --render N: CPU ms per
avatar for DiceBear's SVG and for each rasterizer (CPU time, so a busy machine does not
distort the comparison).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from trainer.data import load_dataset, read_listing, to_model_input
from trainer.data.avatars import RASTERIZERS, avatar_svg, generate_avatars, sample_record


class PILImages(Dataset):
    """The usual way: decode, flip and normalise every image on every access."""

    def __init__(self, root: Path, size: int) -> None:
        from torchvision import transforms as T
        listing = read_listing(root)
        self.files, self.labels = listing.files, torch.from_numpy(listing.labels)
        self.tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.RandomHorizontalFlip(),
                             T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.files[i]) as img:
            return self.tf(img.convert("RGB")), self.labels[i]


def images_per_s(batches, epochs: int) -> tuple[float, float]:
    """Best images/s over ``epochs`` passes of ``batches()``, and CPU microseconds per image
    of this process (all its threads; DataLoader worker processes are not included)."""
    best, cpu_us = 0.0, float("inf")
    for _ in range(epochs):
        n, t, c = 0, time.perf_counter(), time.process_time()
        for x in batches():
            n += x.shape[0]
        best = max(best, n / (time.perf_counter() - t))
        cpu_us = min(cpu_us, (time.process_time() - c) / n * 1e6)
    return best, cpu_us


def render_ms(n: int, size: int) -> dict[str, float]:
    """CPU milliseconds per avatar: SVG generation, then each rasterizer on the same SVGs."""
    avatar_svg(sample_record(0, 0, size)["options"])  # parse the style outside the timing
    t = time.process_time()
    svgs = [avatar_svg(sample_record(0, i, size)["options"]) for i in range(n)]
    out = {"dicebear svg": (time.process_time() - t) / n * 1e3}
    for name, rasterize in RASTERIZERS.items():
        rasterize(svgs[0], size)  # warm-up (library load)
        t = time.process_time()
        for svg in svgs:
            rasterize(svg, size)
        out[name] = (time.process_time() - t) / n * 1e3
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="dataset folder (default with --tiny: fresh avatars)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="*", default=[0, 2], help="PIL loader workers")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0 = torch's default); 1 avoids OpenMP spinning on a "
                        "busy machine")
    p.add_argument("--tiny", action="store_true", help="256 avatars at 32 px, 1 pass")
    p.add_argument("--render", type=int, default=0, metavar="N",
                   help="only time rendering N avatars (SVG, resvg, cairosvg)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny:
        args.size, args.epochs, args.workers = 32, 1, [0]
    if args.render or args.tiny:
        n = 16 if args.tiny else args.render
        for name, ms in render_ms(n, args.size).items():
            print(f"  {name:<16} {ms:>7.2f} CPU ms per {args.size} px avatar ({n} avatars)")
        if args.render:
            return
    tmp = tempfile.TemporaryDirectory()
    if args.tiny and not args.data:
        args.data = str(Path(tmp.name) / "avatars")
        generate_avatars(args.data, 256, args.size, progress=False)
    if not args.data:
        p.error("--data DIR is required (or --tiny)")
    cache_dir = Path(tmp.name) / "cache"  # always a cold cache, never the user's

    t = time.perf_counter()
    ds = load_dataset(args.data, size=args.size, cache_dir=cache_dir)
    build = (len(ds) / (time.perf_counter() - t), float("nan"))  # parallel: CPU not counted
    gen = torch.Generator().manual_seed(0)

    def cached():
        for idx in torch.randperm(len(ds), generator=gen).split(args.batch):
            yield to_model_input(ds.images[idx], flip=True, generator=gen)

    def cached_loader():
        for images, _ in DataLoader(ds, batch_size=args.batch, shuffle=True):
            yield to_model_input(images, flip=True, generator=gen)

    results = {"cache build": build, "cache": images_per_s(cached, args.epochs),
               "cache+loader": images_per_s(cached_loader, args.epochs)}
    pil = PILImages(Path(args.data), args.size)
    for w in args.workers:
        loader = DataLoader(pil, batch_size=args.batch, shuffle=True, num_workers=w,
                            persistent_workers=w > 0)
        rate, cpu_us = images_per_s(lambda loader=loader: (x for x, _ in loader), args.epochs)
        results[f"PIL loader w{w}"] = (rate, cpu_us if w == 0 else float("nan"))
    print(f"{len(ds)} images at {args.size} px from {args.data}, batch {args.batch}, "
          f"{torch.get_num_threads()} torch threads; load average {os.getloadavg()[0]:.1f}")
    for name, (rate, cpu_us) in results.items():
        cpu = "" if math.isnan(cpu_us) else f" {cpu_us:>8.1f} CPU us/image"
        print(f"  {name:<16} {rate:>10,.0f} images/s{cpu}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
