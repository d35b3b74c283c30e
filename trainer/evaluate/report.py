"""RUN/eval/: metrics.json, report.md and its pictures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from trainer.evaluate.fid import RESIZES
from trainer.evaluate.sampling import generate, generator_z_dim


def save_uint8_grid(images: torch.Tensor, path: Path, nrow: int, padding: int = 2) -> Path:
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=255)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path, format="PNG", optimize=True)
    return path


def spread_picture(fakes: list[torch.Tensor], reals: list[torch.Tensor], path: Path,
                   k: int = 8) -> Path:
    """Each row one tag combination: k generated images (left), k real ones (right)."""
    rows = []
    for f, r in zip(fakes, reals, strict=True):
        f, r = f[:k], r[:k]
        blank = torch.full((1, *f.shape[1:]), 255, dtype=torch.uint8)
        pad_f = torch.cat([f, blank.expand(k - len(f), -1, -1, -1)]) if len(f) < k else f
        pad_r = torch.cat([r, blank.expand(k - len(r), -1, -1, -1)]) if len(r) < k else r
        rows.append(torch.cat([pad_f, blank, pad_r]))
    return save_uint8_grid(torch.cat(rows), path, nrow=2 * k + 1)


def sample_grid(G: torch.nn.Module, vocab: object, path: Path, seed: int = 0,
                cols: int = 8) -> Path:
    """Conditional: one row per tag of the first group (other groups random), ``cols``
    noise vectors; unconditional: 8 x ``cols`` random samples."""
    g = torch.Generator().manual_seed(seed + 4)
    zd = generator_z_dim(G)
    if vocab is None or not getattr(G, "n_cond", 0):
        return save_uint8_grid(generate(G, torch.randn(8 * cols, zd, generator=g), None),
                               path, cols)
    sizes = vocab.group_sizes  # type: ignore[attr-defined]
    rows = sizes[0]
    idx = torch.stack([torch.arange(rows)] + [torch.randint(s, (rows,), generator=g)
                                              for s in sizes[1:]], 1)
    tags = torch.from_numpy(vocab.encode_indices(idx.numpy())).repeat_interleave(cols, 0)  # type: ignore[attr-defined]
    z = torch.randn(cols, zd, generator=g).repeat(rows, 1)
    return save_uint8_grid(generate(G, z, tags), path, cols)


KEPT_ERROR_TOP = 64  # the heat maps' scale, fixed (of 255) so runs compare picture to picture


def kept_error_picture(maps: dict[str, torch.Tensor], path: Path) -> Path | None:
    """One heat map per domain (``stargan_metrics.kept_error``), 0 to ``KEPT_ERROR_TOP``
    (brighter clipped), pixels never kept in grey."""
    if not maps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.75")
    fig, axes = plt.subplots(1, len(maps), figsize=(2.2 * len(maps) + 0.8, 2.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], maps.items(), strict=True):
        shown = ax.imshow(m.numpy(), cmap=cmap, vmin=0, vmax=KEPT_ERROR_TOP)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.colorbar(shown, ax=list(axes[0]), fraction=0.04, extend="max",
                 label="|error| (of 255)")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _fmt(v: object, digits: int = 3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{100 * v:.1f}%"


def write_report(m: dict, pics: dict, loaded: object, dataset: object, out: Path,
                 opts: object) -> Path:
    """Write metrics.json, report.md and pictures into ``out``; returns report.md."""
    out.mkdir(parents=True, exist_ok=True)
    G, vocab = loaded.model, loaded.vocab  # type: ignore[attr-defined]
    run = m["run"]
    lines = [f"# Evaluation: {run['dir']} ({run['name']}, step {run['step']})", ""]
    if m.get("command"):
        lines += [f"Command: `{m['command']}`  ", ""]
    ds = m["dataset"]
    lines += [f"Checkpoint `{run['checkpoint']}` (EMA generator), {run['recipe']} / "
              f"{run['arch']}. Dataset: {ds['n']} images ({ds['format']}) at {ds['size']} px. "
              f"Wall time {m['seconds']['total']:.0f} s.", ""]

    lines += ["## Summary", "", "| metric | value |", "|---|---|"]
    for k, v in m["summary"].items():
        lines.append(f"| {k} | {_pct(v) if k.startswith('acc') or 'accuracy' in k or k == 'preservation' else _fmt(v)} |")
    lines.append("")

    if "fid" in m:
        f = m["fid"]
        lines += ["## FID / KID", "",
                  f"FID {f['fid']:.2f}, KID {f['kid']:.4f} ± {f['kid_std']:.4f} "
                  f"(KID subsets of {f['kid_subset_size']}). **{f['n_fake']} generated vs "
                  f"{f['n_real']} real images**, tags of the generated images drawn from the "
                  f"data's labels. Resize: {RESIZES[f['resize']]}. Features: TF-Inception "
                  f"(inception-2015-12-05) pool3, 2048-d. FID depends on both the sample "
                  f"counts and the resize: compare only numbers with the same ones.", ""]
        if "fid_real_floor" in m:
            r = m["fid_real_floor"]
            lines += [f"**Floor: FID {r['fid']:.2f}, KID {r['kid']:.4f}** between two disjoint "
                      f"real samples ({r['n_real']} vs {r['n_fake']} images, the same resize): "
                      f"what a perfect generator would score at this sample size.", ""]
        psi = m.get("options", {}).get("truncation", 1.0)
        if psi < 1:
            lines += [f"Truncation psi {psi}: z coordinates outside the central {psi:.0%} of "
                      f"N(0, 1) were redrawn for every generated image.", ""]

    if m.get("classifier"):
        lines += ["## Judging classifiers", "",
                  "Small CNNs trained on the real images with noise (sigma up to 0.35), blur "
                  "and contrast jitter, so that GAN grain does not fool them; accuracy on "
                  "held-out real images, clean and with added noise.", "",
                  "| judge | head | held-out clean | held-out noisy |", "|---|---|---|---|"]
        for judge, c in m["classifier"].items():
            for h, v in c["holdout_clean"].items():
                lines.append(f"| {judge} | {h} | {_pct(v)} | {_pct(c['holdout_noisy'][h])} |")
        lines += [""] + [f"- {judge}: {c['n_train']} training / {c['n_holdout']} held-out "
                         f"images, {c['steps']} steps, noisy = sigma {c['noisy_sigma']}"
                         f"{', read from cache' if c.get('cached') else ''}."
                         for judge, c in m["classifier"].items()] + [""]

    if "tag_accuracy" in m:
        a = m["tag_accuracy"]
        lines += ["## Tag accuracy", "",
                  f"{a['k']} images for each of the {a['n_combinations']} tag combinations "
                  f"({a['n']} images), classified by the judge above.", "",
                  "| group | accuracy |", "|---|---|"]
        lines += [f"| {g} | {_pct(v)} |" for g, v in a["per_group"].items()]
        lines += [f"| joint | {_pct(a['joint'])} |", "",
                  "Worst combinations (joint accuracy): "
                  + ", ".join(f"{t} {_pct(v)}" for t, v in a["worst"]), ""]
        from trainer.evaluate.tag_accuracy import plot_confusion

        for g in vocab.groups:
            p = plot_confusion(a["confusion"][g.name], g.tags,
                               f"{g.name}: requested (rows) vs predicted", out / f"confusion_{g.name}.png")
            lines.append(f"![confusion {g.name}]({p.name})")
        lines.append("")

    if "modes" in m:
        from trainer.evaluate.diversity import plot_part_histograms

        md = m["modes"]
        lines += ["## Modes (avatar parts)", "",
                  f"Predicted parts of {md['n_fake']} generated images against {md['n_real']} "
                  f"real ones; 'real' columns: a second real sample of the same size, what "
                  f"a perfect generator would score.", "",
                  "| part | classes | modes generated | modes real | KL(gen‖data) | KL real |",
                  "|---|---|---|---|---|---|"]
        for name, r in md["parts"].items():
            lines.append(f"| {name} | {r['classes']} | {r['modes_fake']} | {r['modes_real']} | "
                         f"{r['kl_fake']:.3f} | {r['kl_real']:.3f} |")
        if "joint" in md:
            j = md["joint"]
            lines.append(f"| {' x '.join(j['parts'])} | {j['modes_total']} | {j['modes_fake']} | "
                         f"{j['modes_real']} | {j['kl_fake']:.3f} | {j['kl_real']:.3f} |")
        p = plot_part_histograms(md, str(out / "parts.png"))
        if p:
            lines += ["", "![part frequencies](parts.png)"]
        lines.append("")

    if "spread" in m:
        s = m["spread"]
        fakes, reals, names = pics["spread"]
        spread_picture(fakes, reals, out / "spread.png")
        lines += ["## Spread within a tag combination", "",
                  f"{s['combinations']} combinations ({', '.join(names)}), {s['k_fake']} "
                  f"generated and up to {s['k_real']} real images each. Collapse shows as "
                  f"ratios well below 1.", "",
                  "| | generated | real | ratio |", "|---|---|---|---|",
                  f"| per-pixel std ([-1, 1] scale) | {s['pixel_std_fake']:.3f} | "
                  f"{s['pixel_std_real']:.3f} | {s['pixel_std_ratio']:.2f} |",
                  f"| mean pairwise MS-SSIM (ratio of 1 - MS-SSIM) | {s['msssim_fake']:.3f} | "
                  f"{s['msssim_real']:.3f} | {s['msssim_diversity_ratio']:.2f} |",
                  f"| grain: mean abs Laplacian ([0, 1] scale) | {s['grain_fake']:.4f} | "
                  f"{s['grain_real']:.4f} | {s['grain_ratio']:.2f} |", "",
                  "MS-SSIM: 3 scales, weights 0.0448/0.2856/0.3001 renormalised, Gaussian "
                  "window 7 px at 64 px and above (5 px at 32 px), sigma 1.5.", "",
                  "Left: generated (different z); right: real images with the same tags.", "",
                  "![spread](spread.png)", ""]

    if "stargan" in m:
        sg = m["stargan"]
        lines += ["## StarGAN translations", "",
                  f"{sg['n_per_domain']} source images without the domain per target domain.",
                  "", "| domain | n | target acc | preservation | L1 (identity) | PSNR (identity) "
                  "| PSNR changed / kept px | kept px shift | FID |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in sg["per_domain"].items():
            if not r.get("n"):
                lines.append(f"| {name} | 0 | | | | | | | |")
                continue
            l1 = f"{r['l1']:.3f} ({r['l1_identity']:.3f})" if "l1" in r else ""
            ps = f"{r['psnr']:.1f} ({r['psnr_identity']:.1f})" if "psnr" in r else ""
            split = (f"{_fmt(r['psnr_changed'], 1)} / {_fmt(r['psnr_kept'], 1)}"
                     if "psnr_changed" in r else "")
            shift = f"{r['kept_shift']:+.1f}" if "kept_shift" in r else ""
            lines.append(f"| {name} | {r['n']} | {_pct(r['target_accuracy'])} | "
                         f"{_pct(r['preservation'])} | {l1} | {ps} | {split} | {shift} | "
                         f"{_fmt(r.get('fid', float('nan')), 1)} |")
        lines += ["", "L1 / PSNR against the avatar re-rendered from meta.jsonl with the "
                  "target colour; in brackets the untranslated input against the same "
                  "ground truth. The split: PSNR over the pixels the re-render changes "
                  "(the part asked for) and over the rest (what should stay); the shift: "
                  "the mean signed error over the kept pixels (of 255, channel mean; < 0 "
                  "darker than the ground truth).", ""]
        if pics.get("kept_error") and kept_error_picture(pics["kept_error"], out / "kept_error.png"):
            lines += ["Where the kept pixels' error sits: per pixel, the mean |translation - "
                      "ground truth| over the images in which the pixel should stay "
                      f"(0 to {KEPT_ERROR_TOP} of 255, brighter clipped; grey: never kept).",
                      "", "![kept error](kept_error.png)", ""]
        if pics.get("translations"):
            rows = pics["translations"]
            k = max(len(r) // 2 for r in rows)
            save_uint8_grid(torch.cat([r for r in rows if len(r) == 2 * k]),
                            out / "translations.png", nrow=k)
            lines += ["Each pair of rows: sources, then their translation to "
                      + ", ".join(n for n, r in sg["per_domain"].items() if r.get("n"))
                      + " in turn.", "", "![translations](translations.png)", ""]
        if sg.get("discriminator"):
            lines += ["### What D's domain head sees", "",
                      "D's own classification of the real images (all, or 2000 drawn; G "
                      "learns a domain only "
                      "through it): recall = share of the images with the domain that D "
                      "calls positive, specificity = share of those without it that D calls "
                      "negative.", "", "| domain | images with | recall | images without "
                      "| specificity |", "|---|---|---|---|---|"]
            for name, r in sg["discriminator"].items():
                lines.append(f"| {name} | {r['n_with']} | {_pct(r['recall'])} | "
                             f"{r['n_without']} | {_pct(r['specificity'])} |")
            lines.append("")
    else:
        sample_grid(G, vocab, out / "samples.png", seed=getattr(opts, "seed", 0))
        lines += ["## Samples", "", "Rows: each tag of the first group (other tags random); "
                  "columns: fixed noise vectors." if getattr(G, "n_cond", 0) else
                  "Random samples.", "", "![samples](samples.png)", ""]

    lines += ["## Time", "", ", ".join(f"{k} {v:.0f} s" for k, v in m["seconds"].items()), ""]
    (out / "metrics.json").write_text(json.dumps(m, indent=1, default=str) + "\n")
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
