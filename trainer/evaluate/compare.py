"""Side by side: one metrics table and one figure (loss curves, sample grids) for runs.

Reads what each run folder already holds: eval/metrics.json (written by
``python -m trainer.evaluate --run RUN``), metrics.jsonl (losses over steps) and a
sample grid (eval/samples.png, else the newest samples/step_*.png).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image

from trainer.viz import read_metrics

LOSS_SUFFIX = "/loss"
MAX_PANELS = 4


def sample_picture(run: Path) -> Path | None:
    for p in (run / "eval" / "samples.png", run / "eval" / "translations.png"):
        if p.is_file():
            return p
    steps = sorted((run / "samples").glob("step_*.png"))
    return steps[-1] if steps else None


def run_label(run: Path, metrics: dict | None) -> str:
    step = (metrics or {}).get("run", {}).get("step")
    return f"{run.name}" + (f" @{step}" if step is not None else "")


def curve_keys(histories: list[list[dict]]) -> list[str]:
    """Loss keys (D/loss, G/loss, ...) then in-training eval scalars, at most MAX_PANELS."""
    keys: set[str] = set()
    for rows in histories:
        for r in rows:
            keys.update(k for k, v in r.items() if isinstance(v, int | float) and "/" in k)
    losses = sorted(k for k in keys if k.endswith(LOSS_SUFFIX))
    evals = sorted(k for k in keys if k.startswith("eval/"))
    return (losses + evals)[:MAX_PANELS]


def compare_runs(runs: list[str | Path], out: str | Path) -> dict:
    """Write compare.md, compare.json and compare.png into ``out``; returns the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [Path(r) for r in runs]
    for p in paths:
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such run folder")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = []
    for p in paths:
        f = p / "eval" / "metrics.json"
        metrics.append(json.loads(f.read_text()) if f.is_file() else None)
    labels = [run_label(p, m) for p, m in zip(paths, metrics, strict=True)]
    columns: list[str] = []
    for m in metrics:
        for k in (m or {}).get("summary", {}):
            if k not in columns:
                columns.append(k)
    table = {lab: (m or {}).get("summary", {}) for lab, m in zip(labels, metrics, strict=True)}

    def cell(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    lines = ["# Run comparison", "", "| run | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for lab, row in table.items():
        lines.append(f"| {lab} | " + " | ".join(cell(row.get(c)) for c in columns) + " |")
    missing = [p.name for p, m in zip(paths, metrics, strict=True) if m is None]
    if missing:
        lines += ["", f"Not evaluated yet (run `python -m trainer.evaluate --run RUN`): "
                  f"{', '.join(missing)}."]
    counts = {(m["fid"]["n_fake"], m["fid"]["n_real"], m["fid"]["resize"])
              for m in metrics if m and "fid" in m}
    if len(counts) > 1:
        lines += ["", f"Warning: FID sample counts / resize differ between runs: {sorted(counts)}"]
    elif counts:
        nf, nr, rs = counts.pop()
        lines += ["", f"FID/KID: {nf} generated vs {nr} real images, resize {rs}."]

    histories = [read_metrics(p / "metrics.jsonl") for p in paths]
    keys = curve_keys(histories)
    n_top = max(1, len(keys))
    fig = plt.figure(figsize=(max(3.6 * n_top, 3.2 * len(paths)), 7.0))
    gs = fig.add_gridspec(2, 1, height_ratios=[1, 1.25])
    top = gs[0].subgridspec(1, n_top)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(top[0, i])
        for lab, rows in zip(labels, histories, strict=True):
            pts = [(r["step"], r[key]) for r in rows if "step" in r and isinstance(
                r.get(key), int | float) and math.isfinite(r[key])]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, label=lab, linewidth=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    if not keys:
        ax = fig.add_subplot(top[0, 0])
        ax.text(0.5, 0.5, "no metrics.jsonl", ha="center", va="center")
        ax.axis("off")
    bottom = gs[1].subgridspec(1, len(paths))
    for i, (p, lab) in enumerate(zip(paths, labels, strict=True)):
        ax = fig.add_subplot(bottom[0, i])
        pic = sample_picture(p)
        if pic is not None:
            ax.imshow(Image.open(pic).convert("RGB"))
        ax.set_title(lab, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=90)
    plt.close(fig)
    lines += ["", "Top: curves from each run's metrics.jsonl; bottom: sample grids.", "",
              "![comparison](compare.png)", ""]
    (out / "compare.md").write_text("\n".join(lines))
    (out / "compare.json").write_text(json.dumps(table, indent=1) + "\n")
    return table
