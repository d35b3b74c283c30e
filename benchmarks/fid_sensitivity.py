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

``--parts-of RUN`` (an avatar run that ``trainer.evaluate`` has scored) adds rows that
separate what a generator draws from how it draws it: sample B drawn again by the avatar
renderer with its parts (hair style, mouth, eyebrows, skin, glasses, background)
redrawn at the frequencies that the evaluation's part judge read in the run's samples,
one part at a time and all together. Each part is drawn independently, as the data
draws them; the tags, seeds and other parts stay as they were. Such a row is roughly
the FID of a generator that draws every face perfectly but has the run's part
frequencies: only the six parts' marginals are matched, and they are the judge's
readings. Two control rows come with them: sample B rendered again unchanged (it should
read the floor), and all parts redrawn at the frequencies the judge read in real images
(what the judge's own misreadings cost).
"""

from __future__ import annotations

import argparse
import json
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


Histograms = dict[str, list[int]]  # part name -> count per class, in PART_CHOICES order


def _histograms(parts: dict, key: str, where: str) -> Histograms:
    from trainer.data.avatars import PART_CHOICES
    from trainer.evaluate.classifier import AVATAR_PARTS

    out: Histograms = {}
    for p in AVATAR_PARTS:
        entry = parts.get(p)
        if entry is None:
            continue
        hist = entry.get(key) if isinstance(entry, dict) else None
        if (not isinstance(hist, list) or len(hist) != len(PART_CHOICES[p])
                or not all(isinstance(c, int) and c >= 0 for c in hist)):
            raise SystemExit(f"error: --parts-of {where}: modes.parts.{p}.{key} should be "
                             f"{len(PART_CHOICES[p])} counts >= 0, one per class")
        if sum(hist) == 0:
            raise SystemExit(f"error: --parts-of {where}: modes.parts.{p}.{key} is all zero")
        out[p] = hist
    return out


def part_frequencies(run: Path) -> tuple[Histograms, Histograms]:
    """The part histograms that the evaluation of ``run`` (a run folder or its
    metrics.json) read: in the generated images, and in its real sample."""
    if not run.exists():
        raise SystemExit(f"error: --parts-of {run}: no such run folder or file")
    path = run / "eval" / "metrics.json" if run.is_dir() else run
    if not path.is_file():
        raise SystemExit(f"error: --parts-of {run}: no {path}; score the run first with "
                         f"`python -m trainer.evaluate --run {run}`")
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"error: --parts-of {run}: cannot read {path} as JSON: {e}") from None
    modes = metrics.get("modes") if isinstance(metrics, dict) else None
    parts = modes.get("parts") if isinstance(modes, dict) else None
    fake = _histograms(parts, "hist_fake", str(path)) if isinstance(parts, dict) else {}
    if not fake:
        raise SystemExit(f"error: --parts-of {run}: {path} has no part histograms (only "
                         f"avatar data with meta.jsonl gets them)")
    return fake, _histograms(parts, "hist_real", str(path))  # type: ignore[arg-type]


def run_label(run: Path) -> str:
    """The run's name for row labels: its folder, also when given its eval/metrics.json."""
    if run.is_file() and run.parent.name == "eval":
        return run.parent.parent.name
    return run.name if run.is_dir() else run.stem


def part_changes(n: int, freqs: Histograms, which: list[str],
                 seed: int) -> list[dict[str, str | None]]:
    """For each of ``n`` avatars, a new value of every part in ``which``, drawn at
    ``freqs`` (independently per avatar and part)."""
    import numpy as np

    from trainer.data.avatars import PART_CHOICES

    rng = np.random.default_rng(seed)
    draws = {}
    for p in which:
        w = np.asarray(freqs[p], dtype=float)
        draws[p] = rng.choice(len(w), size=n, p=w / w.sum())
    return [{p: PART_CHOICES[p][int(draws[p][i])] for p in which} for i in range(n)]


PartRow = tuple[list[str], Histograms]  # the parts a row redraws, and their frequencies


def part_rows(fake: Histograms, real: Histograms, label: str) -> dict[str, PartRow]:
    """Row name -> (parts redrawn, frequencies): first sample B rendered again unchanged
    (a control: the floor, if the renderer draws the data's bytes), each judged part alone
    and all together at the generated frequencies, then all at the frequencies the judge
    read in real images (what the judge's own misreadings cost)."""
    rows: dict[str, PartRow] = {f"{label}: none (rendered again)": ([], {})}
    rows.update({f"{label}: {p} only": ([p], fake) for p in fake})
    rows[f"{label}: all parts"] = (list(fake), fake)
    if set(real) == set(fake):
        rows[f"{label}: all parts as the judge reads real images"] = (list(real), real)
    return rows


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
    p.add_argument("--parts-of", type=Path, metavar="RUN",
                   help="add rows of sample B redrawn with the part frequencies that "
                        "trainer.evaluate read in RUN's samples (avatar data only)")
    p.add_argument("--tiny", action="store_true", help="64 rendered avatars, n = 16 (CI)")
    return p.parse_args(argv)


def selected(only: list[str] | None, names: list[str] | None = None) -> list[str]:
    """The rows (of ``names``, default the degradations) whose name contains one of
    ``only`` (every row if None or empty)."""
    return [name for name in names or DEGRADATIONS
            if not only or any(t in name for t in only)]


def measure(dataset: object, n: int, seed: int, resize: str, cache_dir: Path,
            names: list[str] | None = None, parts: dict[str, PartRow] | None = None,
            records: list[dict] | None = None) -> list[dict]:
    """One row per name in ``names`` (default every degradation): FID and KID against
    sample A, and the grain ratio. A name in ``parts`` (``part_rows``) draws sample B again
    from its avatar ``records`` with those parts redrawn."""
    from trainer.evaluate.diversity import grain
    from trainer.evaluate.fid import extract_features, fid_from_features, real_features_cached
    from trainer.evaluate.gan_metrics import real_sample_cache
    from trainer.evaluate.sampling import real_batches, sample_indices
    from trainer.evaluate.stargan_metrics import ground_truth

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
    chosen = [records[int(i)] for i in idx[n:]] if parts and records else []  # sample B's
    rows = []
    for name in names or list(DEGRADATIONS):
        if parts and name in parts:
            which, freqs = parts[name]
            x = ground_truth(chosen, part_changes(len(chosen), freqs, which, seed),
                             images.shape[-1])
        else:
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
    from trainer.evaluate.classifier import avatar_records
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
        parts: dict[str, PartRow] = {}
        records = None
        if args.parts_of:
            parts = part_rows(*part_frequencies(args.parts_of),
                              f"parts as in {run_label(args.parts_of)}")
            records = avatar_records(dataset)
            if records is None:
                raise SystemExit(f"error: --parts-of needs an avatar dataset with its "
                                 f"meta.jsonl; {data} has none")
        every = [*DEGRADATIONS, *parts]
        names = selected(args.only, every)
        if not names:
            raise SystemExit(f"error: --only {args.only}: no row matches; the rows are: "
                             f"{'; '.join(every)}")
        rows = measure(dataset, n, args.seed, args.resize, eval_cache_dir(cache), names,
                       parts, records)
        finish_machine(machine)
        print()
        print(machine_line(machine))
        print(f"{data}: {n} vs {n} images at {size} px, {args.resize} resize")
        print(md_table(["real sample B after", "FID", "KID", "grain / real"],
                       [[r["degradation"], f"{r['fid']:.1f}", f"{r['kid']:.3f}",
                         f"{r['grain_ratio']:.2f}"] for r in rows]))
        if args.json:
            settings = {"data": str(data), "n": n, "size": size, "resize": args.resize,
                        "seed": args.seed, "tiny": args.tiny,
                        "parts_of": str(args.parts_of) if args.parts_of else None}
            write_json(args.json, {"benchmark": "fid_sensitivity", "machine": machine,
                                   "results": rows, "settings": settings})
    return 0


if __name__ == "__main__":
    sys.exit(main())
