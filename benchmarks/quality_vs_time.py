"""Quality against wall time: FID and tag accuracy after 2, 4, 7, 15 and 30 minutes of training.

    python -m benchmarks.quality_vs_time --preset cgan_avatars cgan_avatars_dcgan \\
        --minutes 2 4 7 15 30 --out runs/quality_vs_time --figure docs/quality_vs_time.png
    python -m benchmarks.quality_vs_time --tiny --json out.json     # seconds; CI

For each preset one run folder ``OUT/PRESET`` is trained in segments: ``python -m
trainer.train --resume auto minutes=M`` for each budget M in turn (a resumed run
continues exactly, and ``minutes`` counts training time only, not start-up or
evaluation), and after each segment ``python -m trainer.evaluate --run ... --out
OUT/PRESET/eval_M`` scores the checkpoint. Everything runs as the commands a user
types, one process at a time: run it on an otherwise idle machine, because the
budgets are wall time. Finished budgets are reused, so a larger ``--minutes`` list
extends a curve. The figure plots FID (with the real-vs-real floor) and joint tag
accuracy against minutes, one line per preset; JSON and a Markdown table hold
every figure. ``steps`` is set out of reach (``--set steps=N`` to change it), so the
budget alone ends each segment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TINY_OVERRIDES = ["data.size=32", "model.g_ch=8", "model.d_ch=8", "model.d_hidden=32",
                  "batch_size=16", "sample_every=1000000"]
TINY_EVAL = ["--n", "16", "--k", "1", "--classifier-samples", "256"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality_vs_time", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", nargs="+", default=["cgan_avatars"], help="presets to compare")
    p.add_argument("--minutes", type=float, nargs="+", default=[2, 4, 7, 15, 30],
                   help="training budgets at which to evaluate (default 2 4 7 15 30)")
    p.add_argument("--data", help="dataset folder (default: each preset's data.path)")
    p.add_argument("--out", default="runs/quality_vs_time", help="run folders and results")
    p.add_argument("--figure", help="PNG to write (default OUT/quality_vs_time.png)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every preset, e.g. mixed_precision=bf16")
    p.add_argument("--eval-args", default="", help="extra trainer.evaluate options, quoted")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--tiny", action="store_true",
                   help="a 32 px model on 64 avatars, budgets of seconds, 16-image FID (CI)")
    args = p.parse_args(argv)
    if any(m <= 0 for m in args.minutes):
        p.error("--minutes: every budget must be > 0")
    args.minutes = sorted(set(args.minutes))
    return args


def _run(cmd: list[str], log: Path) -> None:
    """Run one stage as a user would; on failure, show the end of its log and stop."""
    env = {**os.environ, "TAGFACE_NO_BAR": "1"}
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        res = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        tail = log.read_text()[-2000:]
        raise SystemExit(f"error: {' '.join(cmd[2:4])} exited with {res.returncode}; "
                         f"log {log}:\n{tail}")


def curve(preset: str, minutes: list[float], out: Path, overrides: list[str],
          eval_args: list[str]) -> list[dict[str, Any]]:
    """Train ``preset`` segment by segment up to each budget and evaluate after each."""
    run = out / preset
    run.mkdir(parents=True, exist_ok=True)
    log = run / "quality_vs_time.log"
    rows = []
    for m in minutes:
        ev = run / f"eval_{m:g}min"
        if not (ev / "metrics.json").is_file():
            _run([sys.executable, "-m", "trainer.train", "--config", preset, "--run-dir",
                  str(run), "--resume", "auto", "steps=1000000000", f"minutes={m:g}",
                  *overrides], log)
            _run([sys.executable, "-m", "trainer.evaluate", "--run", str(run), "--out", str(ev),
                  *eval_args], log)
        met = json.loads((ev / "metrics.json").read_text())
        s = met["summary"]
        rows.append({"preset": preset, "minutes": m, "step": met["run"]["step"],
                     "fid": s.get("FID"), "kid": s.get("KID"),
                     "fid_floor": s.get("FID real vs real"),
                     "acc_joint": s.get("acc joint"),
                     **{k.removeprefix("acc ").replace(" ", "_"): v for k, v in s.items()
                        if k.startswith("acc ") and k != "acc joint"},
                     "modes": s.get("joint modes"), "modes_real": s.get("joint modes (real)"),
                     "pixel_std_ratio": s.get("pixel std ratio"),
                     "grain_ratio": s.get("grain ratio")})
        joint = rows[-1]["acc_joint"]
        print(f"  {preset:<24} {m:>6g} min  step {rows[-1]['step']:>6}  FID {rows[-1]['fid']:.1f}"
              f"  joint {'-' if joint is None else f'{100 * joint:.1f}%'}", flush=True)
    return rows


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """FID (log scale, floor dashed) and joint accuracy against minutes, a line per preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    for i, p in enumerate(presets):
        mine = [r for r in rows if r["preset"] == p]
        xs = [r["minutes"] for r in mine]
        color = f"C{i}"
        ax1.plot(xs, [r["fid"] for r in mine], "o-", color=color, label=p)
        if mine[0]["acc_joint"] is not None:
            ax2.plot(xs, [100 * r["acc_joint"] for r in mine], "o-", color=color, label=p)
    floors = [r["fid_floor"] for r in rows if r["fid_floor"] is not None]
    if floors:
        ax1.axhline(sum(floors) / len(floors), color="gray", ls="--", lw=1,
                    label="real vs real")
    ax1.set(xlabel="training minutes", ylabel="FID (lower is better)", yscale="log",
            title="FID")
    ax2.set(xlabel="training minutes", ylabel="joint tag accuracy %", title="tags right",
            ylim=(0, 100))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import (
        finish_machine,
        machine_info,
        machine_line,
        md_table,
        tiny_avatars,
        write_json,
    )

    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = list(args.set)
        eval_args = args.eval_args.split()
        out = Path(args.out)
        minutes = args.minutes
        if args.tiny:
            data = tiny_avatars(Path(tmp) / "avatars", 64, 32)
            overrides = [*TINY_OVERRIDES, f"data.path={data}", *overrides]
            eval_args = [*TINY_EVAL, *eval_args]
            out = Path(tmp) / "runs"
            minutes = [0.03, 0.06]
        elif args.data:
            overrides = [f"data.path={args.data}", *overrides]
        machine = machine_info()
        rows = []
        for preset in args.preset:
            rows += curve(preset, minutes, out, overrides, eval_args)
        finish_machine(machine)
        figure = Path(args.figure) if args.figure else out / "quality_vs_time.png"
        line = machine_line(machine)
        threads = machine["torch_threads"]
        plot(rows, figure, f"{machine['cpu']}: {threads} torch thread{'s' * (threads > 1)}, "
                           f"native bf16 {'yes' if machine['native_bf16'] else 'no'}")
        report = {"benchmark": "quality_vs_time", "machine": machine, "results": rows,
                  "figure": str(figure),
                  "settings": {"presets": args.preset, "minutes": minutes,
                               "overrides": overrides, "eval_args": eval_args,
                               "tiny": args.tiny}}
        print()
        print(line)
        print(md_table(["preset", "minutes", "step", "FID", "floor", "joint acc", "modes",
                        "grain"],
                       [[r["preset"], f"{r['minutes']:g}", r["step"], f"{r['fid']:.1f}",
                         f"{r['fid_floor']:.1f}" if r["fid_floor"] is not None else "-",
                         f"{100 * r['acc_joint']:.1f}%" if r["acc_joint"] is not None else "-",
                         r["modes"] if r["modes"] is not None else "-",
                         f"{r['grain_ratio']:.2f}" if r.get("grain_ratio") is not None else "-"]
                        for r in rows]))
        print(f"\nfigure: {figure}")
        if args.json:
            write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
