"""One palette generator checkpoint, sampled with each palette pick: FID, KID and grain.

    python -m benchmarks.palette_picks --run runs/cgan_avatars              # n = 1000, all picks
    python -m benchmarks.palette_picks --run runs/cgan_avatars --picks soft vote
    python -m benchmarks.palette_picks --tiny --json out.json               # seconds; CI

``model.g_palette_pick`` changes only how a trained generator samples (soft mix, hard
pick, neighbourhood vote), so the picks are compared on the same weights, with no
training noise between the rows. FID and KID are ``trainer.evaluate``'s (the same
seeded z and tags, real sample, resize and feature cache: each row's FID is what
``python -m trainer.evaluate --run RUN --palette-pick PICK`` reports); the grain ratio
is the mean |Laplacian| of 200 generated images, with the tags of the dataset's first
200 images, over those 200 real images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from trainer.models.layers import PALETTE_PICKS

    p = argparse.ArgumentParser(prog="python -m benchmarks.palette_picks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="run folder of a palette generator (model.g_palette=K)")
    p.add_argument("--data", help="dataset folder (default: the run's data.path)")
    p.add_argument("--picks", nargs="+", choices=PALETTE_PICKS, default=list(PALETTE_PICKS),
                   help="picks to compare (default: all)")
    p.add_argument("--n", type=int, default=1000, help="images per FID sample (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="the evaluation's sample seed")
    p.add_argument("--cache-dir", help="as trainer.evaluate's (default: its cache)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--tiny", action="store_true",
                   help="an untrained palette G of width 8 on 64 rendered avatars, n = 16 (CI)")
    args = p.parse_args(argv)
    if not args.tiny and not args.run:
        p.error("--run RUN is required (or --tiny)")
    if args.n < 2:
        p.error("--n must be >= 2")
    return args


def measure(G: torch.nn.Module, dataset: object, picks: list[str], n: int, seed: int,
            cache_dir: Path) -> list[dict]:
    """One row per pick: FID and KID as trainer.evaluate computes them, and the grain ratio."""
    from trainer.evaluate.diversity import grain
    from trainer.evaluate.gan_metrics import fid_for_generator
    from trainer.evaluate.sampling import generate, generator_z_dim
    from trainer.models.layers import set_palette_pick

    images, labels = dataset.images, dataset.labels  # type: ignore[attr-defined]
    k = min(200, len(images))
    z = torch.randn(k, generator_z_dim(G), generator=torch.Generator().manual_seed(seed + 5))
    tags = labels[:k].float()
    g_real = grain(images[:k])
    rows = []
    for pick in picks:
        set_palette_pick(G, pick)
        res = fid_for_generator(G, dataset, n, seed, "clean", cache_dir, True)[0]
        ratio = grain(generate(G, z, tags)) / g_real if g_real > 0 else float("nan")
        rows.append({"pick": pick, "fid": res["fid"], "kid": res["kid"], "grain_ratio": ratio,
                     "n": res["n_fake"]})
        print(f"  {pick:<11} FID {res['fid']:7.1f}  KID {res['kid']:.3f}  grain {ratio:.2f}",
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
    from trainer.config import load_config
    from trainer.data import load_dataset
    from trainer.evaluate.pipeline import eval_cache_dir, load_run_dataset
    from trainer.models import build_generator
    from trainer.models.layers import set_palette_pick
    from trainer.runs import RunError, load_generator

    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        n, cache = args.n, args.cache_dir
        if args.tiny:
            data = tiny_avatars(Path(tmp) / "avatars", 64, 32)
            cfg = load_config("cgan_avatars", [f"data.path={data}", "data.size=32",
                                               "model.g_ch=8", "model.d_ch=8"])
            dataset = load_dataset(data, size=32)
            torch.manual_seed(0)
            G, step, name = build_generator(cfg, dataset.labels.shape[1]).eval(), 0, "tiny"
            n, cache = 16, Path(tmp) / "cache"
        else:
            try:
                loaded = load_generator(args.run)
                dataset = load_run_dataset(loaded.config, args.data)
            except RunError as e:
                raise SystemExit(f"error: {e}") from None
            G, step, name = loaded.model, loaded.step, args.run
        if not set_palette_pick(G, "soft"):
            raise SystemExit(f"error: --run {args.run}: its generator has no palette output "
                             f"layer (model.g_palette=0); nothing to pick")
        machine = machine_info()
        rows = measure(G, dataset, args.picks, n, args.seed, eval_cache_dir(cache))
        finish_machine(machine)
        print()
        print(machine_line(machine))
        print(f"{name} (step {step}): {n} generated vs {n} real images, clean resize")
        print(md_table(["pick", "FID", "KID", "grain / real"],
                       [[r["pick"], f"{r['fid']:.1f}", f"{r['kid']:.3f}",
                         f"{r['grain_ratio']:.2f}"] for r in rows]))
        if args.json:
            settings = {"run": args.run, "n": n, "seed": args.seed, "picks": args.picks,
                        "step": step, "tiny": args.tiny}
            write_json(args.json, {"benchmark": "palette_picks", "machine": machine,
                                   "results": rows, "settings": settings})
    return 0


if __name__ == "__main__":
    sys.exit(main())
