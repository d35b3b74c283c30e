"""StarGAN translation with a trained run's EMA generator.

    python -m trainer.translate --run RUN --image IN.png --to Blond_Hair,Young --out OUT.png
    python -m trainer.translate --run RUN --image A.png --image B.png --grid --out GRID.png

``--to``: the named domains are switched on (a hair colour switches the other
hair colours off); every other attribute keeps its source value. ``--vector``
gives the whole target vector instead. ``--grid``: each input followed by its
translation to every domain, as the official test (hair colours exclusive,
other attributes flipped), with a header naming the columns.

Source attributes: they decide what the attributes not named by ``--to``
become (and which way ``--grid`` flips them), and a generator told the change
(``model.g_condition=difference``, the ``stargan_avatars`` preset) reads target
minus source. A free image has no labels: give the ones
that are on with ``--from Black_Hair,Young``; without ``--from`` the source is
taken to have none of the attributes (all zeros) and a note says so.

Inputs of any size and mode (RGBA composited onto white, L, P, ...) are
converted to RGB, centre-cropped to the largest square (``--crop N``: a square
of side N instead) and resized to the run's resolution with the training
code's ``load_image``. For the training images this is the training crop:
avatars are square, and CelebA's aligned 178x218 faces give the official
centre crop of 178.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from trainer.config import ConfigError
from trainer.data.transforms import load_image
from trainer.data.vocab import Domains, VocabError
from trainer.evaluate.sampling import translate_float as translate  # the CLI's (float) form
from trainer.modes import to_uint8
from trainer.runs import RunError, load_generator
from trainer.viz import grid_image


class TranslateError(ValueError):
    """A bad command-line request; the message names the option."""


def load_input(path: str | Path, size: int, crop: int | None = None) -> torch.Tensor:
    """One image file as model input: float [1, 3, size, size] in [-1, 1]."""
    try:
        pixels = load_image(path, size, crop)
    except (OSError, ValueError) as e:
        raise TranslateError(f"--image {path}: cannot read it as an image ({e})") from None
    return torch.from_numpy(pixels)[None].float().div(127.5).sub(1.0)


def parse_names(text: str) -> list[str]:
    """``"Blond_Hair, Young"`` -> ``["Blond_Hair", "Young"]`` (empty items dropped)."""
    return [n.strip() for n in text.split(",") if n.strip()]


def target_vector(domains: Domains, source: np.ndarray, to: Sequence[str] = (),
                  vector: Sequence[float] | None = None) -> np.ndarray:
    """The target of ``--to`` names (applied to ``source``) or of an explicit ``--vector``."""
    if vector is not None:
        return domains.check_vector(np.asarray(vector, np.float32))
    if not to:
        raise TranslateError("--to names no domain; this run's domains are "
                             f"{', '.join(domains.names)}")
    return domains.apply(source, to)


def grid_with_header(images: torch.Tensor, nrow: int, titles: Sequence[str],
                     padding: int = 2, height: int = 14) -> Image.Image:
    """A grid of [-1, 1] images with a white header naming each column."""
    grid = grid_image(images, nrow, padding)
    out = Image.new("RGB", (grid.width, grid.height + height), "white")
    out.paste(grid, (0, height))
    draw = ImageDraw.Draw(out)
    cell = images.shape[-1] + padding
    for i, title in enumerate(titles):
        draw.text((padding + i * cell, 2), title, fill="black")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.translate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder of a StarGAN training run")
    p.add_argument("--checkpoint", help="checkpoint folder (default: the run's latest)")
    p.add_argument("--image", action="append", required=True,
                   help="input image; repeat for several")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", help="comma-separated domains to switch on, e.g. Blond_Hair,Young")
    what.add_argument("--vector", help="the whole target vector, e.g. 0,1,0,1,1")
    what.add_argument("--grid", action="store_true",
                      help="each input against every domain, one row per input")
    p.add_argument("--from", dest="source", action="append", default=None,
                   help="comma-separated attributes that are on in the input (default: none); "
                        "once for all inputs or once per --image")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--crop", type=int, default=None,
                   help="centre square side before resizing (default: the largest square)")
    p.add_argument("--norm-stats", choices=["running", "instance"], default=None,
                   help="InstanceNorm statistics at inference (default: the run's "
                        "model.norm_stats)")
    p.add_argument("--no-header", action="store_true", help="grid without column names")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    """Translate as ``args`` say and write ``args.out``; returns its path."""
    loaded = load_generator(args.run, args.checkpoint)
    domains = loaded.vocab
    if not isinstance(domains, Domains):
        raise TranslateError(f"--run {args.run}: not a StarGAN run (its vocab.json holds "
                             f"{'nothing' if domains is None else 'tag groups'}, not domains)")
    G = loaded.model
    if args.norm_stats:
        G.set_inference_norm(args.norm_stats)
    if args.crop is not None and args.crop <= 0:
        raise TranslateError(f"--crop {args.crop}: must be > 0")
    size = loaded.config.data.size

    sources = args.source or [""]
    if len(sources) not in (1, len(args.image)):
        raise TranslateError(f"--from given {len(sources)} times for {len(args.image)} "
                             f"--image; give it once for all or once per image")
    if args.source is None:
        print(f"note: no --from given: the input is taken to have none of the attributes "
              f"{', '.join(domains.names)}", file=sys.stderr)
    src = np.stack([domains.vector(parse_names(s)) for s in sources])  # none named: zeros
    src = np.broadcast_to(src, (len(args.image), domains.n_domains)).copy()
    to = parse_names(args.to) if args.to is not None else []
    vector = None
    if args.vector is not None:
        try:
            vector = [float(v) for v in args.vector.split(",")]
        except ValueError:
            raise TranslateError(f"--vector {args.vector!r}: expected comma-separated "
                                 f"numbers") from None
    # Check names and lengths before the (slower) image decoding.
    targets = None if args.grid else np.stack(
        [target_vector(domains, s, to, vector) for s in src])
    x = torch.cat([load_input(p, size, args.crop) for p in args.image])

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.grid:
        from trainer.recipes.stargan import translation_grid

        images, nrow = translation_grid(G, domains, x, torch.from_numpy(src))
        titles = ["input", *domains.names]
        picture = (grid_image(images, nrow) if args.no_header
                   else grid_with_header(images, nrow, titles))
    else:
        y = translate(G, x, targets, src)
        if len(args.image) == 1:
            picture = Image.fromarray(to_uint8(y)[0].permute(1, 2, 0).numpy())
        else:  # one row per input: input, translation
            images = torch.stack([x, y], dim=1).flatten(0, 1)
            picture = (grid_image(images, 2) if args.no_header
                       else grid_with_header(images, 2, ["input", args.to or args.vector]))
    picture.save(out, format="PNG")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (TranslateError, VocabError, RunError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
