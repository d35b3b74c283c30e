"""Evaluate a run, or compare several.

    python -m trainer.evaluate --run runs/cgan_avatars [--data DIR] [--n 1000] [--checkpoint DIR]
    python -m trainer.evaluate compare runs/gan runs/wgan runs/sngan --out reports/compare

The first writes RUN/eval/metrics.json, RUN/eval/report.md and its pictures; the
second one table of metrics and one figure (loss curves, sample grids) into --out,
naming what differs between the runs; runs that differ only in ``seed`` also get one
row of mean +- sd and a dot plot (seeds.png).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from trainer.evaluate.fid import RESIZES, FIDWeightsError
from trainer.models.layers import PALETTE_PICKS


def parse_eval_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder (config.yaml, checkpoints/)")
    p.add_argument("--data", help="dataset folder (default: the run's data.path)")
    p.add_argument("--checkpoint", help="checkpoint folder (default: checkpoints/latest)")
    p.add_argument("--n", type=int, default=1000,
                   help="generated and real images for FID/KID and part modes (default 1000)")
    p.add_argument("--k", type=int, default=10,
                   help="images per tag combination for tag accuracy (default 10)")
    p.add_argument("--stargan-n", type=int, default=50,
                   help="StarGAN: source images per target domain (default 50)")
    p.add_argument("--resize", choices=list(RESIZES), default="clean",
                   help="resize to 299 px for Inception (default clean: PIL bicubic, clean-fid)")
    p.add_argument("--no-fid", action="store_true", help="skip FID/KID (the slow part)")
    p.add_argument("--classifier-samples", type=int, default=40_000,
                   help="training budget of each judging classifier, in images (default "
                        "40000; lower for a quick look, the held-out accuracy is reported)")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                   help="truncation trick: z coordinates outside the central PSI share of "
                        "N(0, 1) are redrawn (default 1.0 = off; e.g. 0.7)")
    p.add_argument("--standing-stats", type=int, default=0, metavar="BATCHES",
                   help="measure the generator's BatchNorm statistics again on BATCHES batches "
                        "of the training distribution before scoring, as training does before "
                        "it saves (ema_bn_batches); for checkpoints saved without them "
                        "(default 0: the saved statistics)")
    p.add_argument("--palette-pick", choices=PALETTE_PICKS,
                   help="how a palette generator picks each pixel's colour when sampling "
                        "(model.g_palette_pick; default: the run's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="FID statistics and classifiers "
                   "(default: $TAGFACE_CACHE/eval or ~/.cache/tagface/eval)")
    p.add_argument("--out", help="output folder (default RUN/eval)")
    return p.parse_args(argv)


def parse_compare_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.evaluate compare",
                                description="One metrics table and one figure for several runs; "
                                            "runs that differ only in seed are also "
                                            "summarised as mean +- sd.")
    p.add_argument("runs", nargs="+",
                   help="run folders (evaluated first for the table) or evaluation folders "
                        "(trainer.evaluate --out, e.g. RUN/eval_vote)")
    p.add_argument("--out", required=True, help="output folder for compare.md/.json/.png")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        from trainer.evaluate.compare import compare_runs

        args = parse_compare_args(argv[1:])
        try:
            compare_runs(args.runs, args.out)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {Path(args.out) / 'compare.md'} and compare.png")
        return 0

    args = parse_eval_args(argv)
    from trainer.config import ConfigError
    from trainer.data.formats import DataError
    from trainer.evaluate.pipeline import EvalError, EvalOptions, evaluate_run
    from trainer.runs import RunError

    for name in ("n", "k", "stargan_n", "classifier_samples"):
        if getattr(args, name) < 1 or (name == "n" and args.n < 2):
            print(f"error: --{name.replace('_', '-')} must be >= {2 if name == 'n' else 1}",
                  file=sys.stderr)
            return 2
    opts = EvalOptions(n=args.n, k=args.k, stargan_n=args.stargan_n, fid=not args.no_fid,
                       resize=args.resize, seed=args.seed, cache_dir=args.cache_dir,
                       classifier_samples=args.classifier_samples,
                       truncation=args.truncation, standing_stats=args.standing_stats,
                       palette_pick=args.palette_pick)
    start = time.perf_counter()
    command = "python -m trainer.evaluate " + shlex.join(argv)
    try:
        m = evaluate_run(args.run, args.data, args.checkpoint, opts, args.out, command=command)
    except (EvalError, RunError, ConfigError, DataError, FIDWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.run) / "eval"
    for k, v in m["summary"].items():
        print(f"{k:>26}: {v:.4g}" if isinstance(v, float) else f"{k:>26}: {v}")
    print(f"wrote {out / 'report.md'} and metrics.json in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
