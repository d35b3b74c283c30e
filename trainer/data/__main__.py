"""Dataset tools.

    python -m trainer.data avatars --out DIR --count N --size S --seed K [--workers W]
    python -m trainer.data info DIR [--format F] [--attrs A ...]
    python -m trainer.data cache DIR --size S      # decode once, e.g. before a Slurm job
    python -m trainer.data preview DIR --out grid.png [--n 24]
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trainer.data import FORMATS, DataError, Domains, Vocab, load_dataset, read_listing
from trainer.data.avatars import RASTERIZERS, generate_avatars, load_meta


def _avatars(a: argparse.Namespace) -> None:
    seconds = generate_avatars(a.out, a.count, a.size, a.seed, a.workers, a.rasterizer,
                               overwrite=a.overwrite)
    print(f"rendered {a.count} avatars at {a.size} px in {seconds:.1f} s "
          f"({a.count / seconds:.0f} images/s) -> {a.out}")


def _counts(labels: np.ndarray, vocab: Vocab | Domains) -> list[str]:
    totals = labels.sum(0).astype(int).tolist()
    if isinstance(vocab, Domains):
        return [f"  domains ({vocab.n_domains}): " + ", ".join(
            f"{n} {c}" for n, c in zip(vocab.names, totals, strict=True))] + [
            f"  exclusive: {', '.join(g)}" for g in vocab.exclusive]
    lines, o = [], 0
    for g in vocab.groups:
        counts = totals[o:o + len(g.tags)]
        o += len(g.tags)
        lines.append(f"  {g.name} ({len(g.tags)}): " + ", ".join(
            f"{t} {c}" for t, c in zip(g.tags, counts, strict=True)))
    return lines


def _unreadable(files: Sequence[Path]) -> list[Path]:
    """The files that do not decode (missing, truncated, not an image), as training sees them."""
    from trainer.data.cache import UNREADABLE
    from trainer.data.transforms import load_image

    bad = []
    for f in files:
        try:
            load_image(f, 8)
        except UNREADABLE:
            bad.append(f)
    return bad


def _info(a: argparse.Namespace) -> None:
    listing = read_listing(a.dir, a.format, a.attrs, not a.mlds_loose)
    if a.no_decode:
        counted = f"{len(listing.files)} images listed (not decoded: --no-decode)"
    else:
        bad = _unreadable(listing.files)
        counted = f"{len(listing.files) - len(bad)} images that decode"
        if bad:
            first = ", ".join(str(p.relative_to(listing.root)) if p.is_relative_to(listing.root)
                              else str(p) for p in bad[:3])
            counted += (f" ({len(bad)} of {len(listing.files)} listed could not be read and "
                        f"would be skipped: {first}{', ...' if len(bad) > 3 else ''})")
    print(f"{listing.root}: format {listing.format}, {counted}, "
          f"{listing.labels.shape[1]} label columns")
    for note in listing.notes:
        print(f"  {note}")
    if listing.vocab is None:
        print("  no labels (unconditional)")
    else:
        print("\n".join(_counts(listing.labels, listing.vocab)))


def _cache(a: argparse.Namespace) -> None:
    ds = load_dataset(a.dir, format=a.format, size=a.size, cache_dir=a.cache_dir or None,
                      attrs=a.attrs)
    print(f"{ds}\ncache: {ds.cache_file}")


def _preview(a: argparse.Namespace) -> None:
    """A grid of the first n avatars, each captioned with its tags."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    records = load_meta(a.dir)[:a.n]
    cols = min(a.cols, len(records))
    rows = -(-len(records) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.25, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, records, strict=False):
        ax.imshow(Image.open(Path(a.dir) / r["file"]).convert("RGB"), interpolation="nearest")
        ax.set_title(f"{r['tags']['hair']} hair\n{r['tags']['eyes']} eyes", fontsize=7, pad=2)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=a.dpi)
    # flat-colour art: a 256-colour palette is visually lossless and ~3x smaller
    Image.open(buf).convert("RGB").quantize(256).save(a.out, optimize=True)
    print(f"wrote {a.out}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    formats = ["auto", *FORMATS]

    s = sub.add_parser("avatars", help="render the tagged avatar dataset")
    s.add_argument("--out", required=True, help="output folder (new or empty)")
    s.add_argument("--count", type=int, default=6000, help="number of avatars")
    s.add_argument("--size", type=int, default=64, help="side in pixels")
    s.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    s.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    s.add_argument("--rasterizer", choices=list(RASTERIZERS), default="resvg")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier avatar folder")
    s.set_defaults(run=_avatars)

    s = sub.add_parser("info", help="print format, image count and vocabulary of a folder")
    s.add_argument("dir")
    s.add_argument("--format", choices=formats, default="auto")
    s.add_argument("--attrs", nargs="*", default=[], help="StarGAN attributes to select")
    s.add_argument("--mlds-loose", action="store_true", help="MLDS: most counted tag wins")
    s.add_argument("--no-decode", action="store_true",
                   help="count listed images without decoding them (fast on large folders)")
    s.set_defaults(run=_info)

    s = sub.add_parser("cache", help="decode a dataset into the uint8 cache now")
    s.add_argument("dir")
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--format", choices=formats, default="auto")
    s.add_argument("--attrs", nargs="*", default=[])
    s.add_argument("--cache-dir", default="", help="default: $TAGFACE_CACHE or ~/.cache/tagface")
    s.set_defaults(run=_cache)

    s = sub.add_parser("preview", help="grid of avatars captioned with their tags")
    s.add_argument("dir")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=24)
    s.add_argument("--cols", type=int, default=8)
    s.add_argument("--dpi", type=int, default=100)
    s.set_defaults(run=_preview)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        args.run(args)
    except (DataError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
