"""Side by side: one metrics table and one figure (loss curves, sample grids) for runs.

Reads what each run folder already holds: eval/metrics.json (written by
``python -m trainer.evaluate --run RUN``), metrics.jsonl (losses over steps) and a
sample grid (eval/samples.png, else the newest samples/step_*.png). An evaluation
folder (``--out`` of trainer.evaluate, e.g. RUN/eval_vote) may stand for its run,
so two evaluations of one checkpoint compare too. Each row names what differs from
the first (trainer/evaluate/groups.py); runs that differ only in ``seed`` are also
summarised as one row of mean +- sd, with a dot plot (seeds.png).
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

from PIL import Image

from trainer.evaluate.groups import Group, differences, group_runs, group_summary, run_settings
from trainer.viz import read_metrics

LOSS_SUFFIX = "/loss"
MAX_PANELS = 4
SEED_PANELS = ("FID", "KID", "acc joint", "joint modes", "pixel std ratio", "grain ratio",
               "target_accuracy", "preservation", "psnr")


def locate(path: Path) -> tuple[Path | None, Path | None]:
    """(run folder, evaluation folder) for a run folder or an evaluation folder."""
    if (path / "metrics.json").is_file() and not (path / "config.yaml").is_file():
        run = path.parent if (path.parent / "config.yaml").is_file() else None
        return run, path
    return path, (path / "eval" if (path / "eval" / "metrics.json").is_file() else None)


def sample_picture(run: Path | None, ev: Path | None) -> Path | None:
    for p in [ev / "samples.png", ev / "translations.png"] if ev is not None else []:
        if p.is_file():
            return p
    steps = sorted((run / "samples").glob("step_*.png")) if run is not None else []
    return steps[-1] if steps else None


def run_label(path: Path, run: Path | None, metrics: dict | None) -> str:
    name = path.name if run is None or run == path else f"{run.name}/{path.name}"
    step = (metrics or {}).get("run", {}).get("step")
    return name + (f" @{step}" if step is not None else "")


def _read_metrics_json(path: Path) -> dict:
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); run trainer.evaluate again") from e
    if not isinstance(m, dict) or not isinstance(m.get("summary"), dict):
        raise ValueError(f"{path}: no 'summary' object; is this trainer.evaluate's metrics.json?")
    return m


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def _group_cell(stat: dict | None) -> str:
    """``mean ± sd`` with the mean's precision; one value where there is no spread."""
    if not stat:
        return ""
    mean, sd = stat["mean"], stat["sd"]
    if sd is None or sd <= 1e-9 * abs(mean):
        return _cell(mean)
    digits = 1 if abs(mean) >= 100 else 3
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


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
    located = [locate(p) for p in paths]
    metrics = [_read_metrics_json(ev / "metrics.json") if ev is not None else None
               for _, ev in located]
    labels = [run_label(p, run, m) for p, (run, _), m in zip(paths, located, metrics, strict=True)]
    if len(set(labels)) < len(labels):  # two folders of the same name: tell them apart
        labels = [f"{lab} ({i + 1})" for i, lab in enumerate(labels)]
    columns: list[str] = []
    for m in metrics:
        for k in (m or {}).get("summary", {}):
            if k not in columns:
                columns.append(k)
    table = {lab: (m or {}).get("summary", {}) for lab, m in zip(labels, metrics, strict=True)}
    settings = [run_settings(run, m) for (run, _), m in zip(located, metrics, strict=True)]
    groups = group_runs(settings)
    changes = [", ".join(differences(s, settings[0])) for s in settings]

    lines = ["# Run comparison", "", "| run | changes from the first | " + " | ".join(columns)
             + " |", "|---" * (len(columns) + 2) + "|"]
    for (lab, row), ch in zip(table.items(), changes, strict=True):
        lines.append(f"| {lab} | {ch or '–'} | "
                     + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    missing = [lab for lab, m in zip(labels, metrics, strict=True) if m is None]
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
    summaries = [None if m is None else {"step": m.get("run", {}).get("step"), **m["summary"]}
                 for m in metrics]
    stats = [group_summary(summaries, g, ["step", *columns]) for g in groups]
    seeded = [i for i, g in enumerate(groups) if len(g.members) > 1]
    if seeded:
        names = [", ".join(g.changes) or f"as {labels[0].split(' @')[0]}" for g in groups]
        lines += _group_table(groups, names, stats, labels, ["step", *columns])
        if _plot_groups([names[i] for i in seeded], [groups[i].seeds for i in seeded],
                        [stats[i] for i in seeded], out / "seeds.png"):
            lines += ["", "![each seed a dot, the mean a bar](seeds.png)"]

    histories = [read_metrics(run / "metrics.jsonl") if run is not None else []
                 for run, _ in located]
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
    for i, ((run, ev), lab) in enumerate(zip(located, labels, strict=True)):
        ax = fig.add_subplot(bottom[0, i])
        pic = sample_picture(run, ev)
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
    result = {"runs": table,
              "groups": [{"runs": [labels[i] for i in g.members], "seeds": g.seeds,
                          "changes": g.changes, "stats": st}
                         for g, st in zip(groups, stats, strict=True)]}
    (out / "compare.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _group_table(groups: list[Group], names: list[str], stats: list[dict], labels: list[str],
                 columns: list[str]) -> list[str]:
    """Markdown: one row per setting, mean ± sample sd over its seeds."""
    lines = ["", "## Over seeds", "",
             "Runs whose settings differ only in `seed`, as one row each: mean ± sample "
             "standard deviation (n - 1) over the evaluated seeds.", "",
             "| setting | seeds | runs | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 3) + "|"]
    for g, name, st in zip(groups, names, stats, strict=True):
        runs = ", ".join(labels[i].split(" @")[0] for i in g.members)
        lines.append(f"| {name} | {', '.join(g.seeds)} | {runs} | "
                     + " | ".join(_group_cell(st.get(c)) for c in columns) + " |")
    return lines


def _plot_groups(names: list[str], seeds: list[list[str]], stats: list[dict],
                 path: Path) -> bool:
    """One panel per headline metric: each seed a dot, the group's mean a bar, and a faint
    line through one seed's dots across settings (the pairing a seed gives). False if
    no headline metric was measured (nothing written)."""
    import matplotlib.pyplot as plt

    keys = [k for k in SEED_PANELS if any(k in st for st in stats)]
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(1.2 + 2.6 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        by_seed: dict[str, list[tuple[int, float]]] = {}
        for x, (st, sd) in enumerate(zip(stats, seeds, strict=True)):
            if key not in st:
                continue
            vals = st[key]["values"]
            if len(vals) == len(sd):  # every member evaluated: values line up with seeds
                for seed, v in zip(sd, vals, strict=True):
                    by_seed.setdefault(seed, []).append((x, v))
            ax.scatter([x] * len(vals), vals, s=18, alpha=0.7, color=f"C{x}")
            ax.hlines(st[key]["mean"], x - 0.3, x + 0.3, color=f"C{x}", linewidth=2)
        for pts in by_seed.values():
            if len(pts) > 1:
                ax.plot(*zip(*pts, strict=True), color="0.6", linewidth=0.6, zorder=0)
        ax.set_title(key, fontsize=9)
        ax.set_xticks(range(len(names)), [textwrap.fill(n, 18) for n in names], fontsize=7,
                      rotation=20, ha="right")
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
