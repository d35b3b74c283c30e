"""Diversity and mode collapse.

1. Parts (avatars): the classifier's part heads (hair style, mouth, eyebrows, skin,
   glasses, background) label every generated image. Per part we count the modes
   covered (classes predicted at least once) and KL(p_gen || p_data) between the
   predicted class frequencies of generated and real images, the stacked-MNIST
   measure (Metz et al. 2017; PacGAN). The joint mode hair style x skin x background
   (42 x 4 x 6 = 1008 modes, about stacked MNIST's 1000) is counted the same way.
   Real images are labelled by the same classifier, so its errors cancel, and the
   same figures for a real sample of the same size are the reference.
2. Spread within one tag combination: k generated images with different z and k
   real images of the same tags. Per-pixel standard deviation across the images
   (on the [-1, 1] scale, averaged over pixels) and mean pairwise MS-SSIM (a seeded
   subset of at most 64 pairs per combination).
   Reported as ratios generated / real (for MS-SSIM of the dissimilarity,
   1 - MS-SSIM), so collapse shows as a ratio well below 1.
3. Grain: the mean absolute discrete Laplacian of the same images (per pixel and
   channel, [0, 1] scale), generated / real. Flat backgrounds and clean outlines
   give the real level; speckle and checkerboard noise, which FID punishes but a
   tag classifier ignores, show as a ratio above 1.

MS-SSIM at 32-64 px: the standard 5 scales with an 11-px window need images of
at least 161 px, so we use 3 scales with the first three standard weights
renormalised (0.0448, 0.2856, 0.3001 -> sum 1), a Gaussian window of 7 px
(sigma 1.5) at 64 px and above, 5 px at 32 px, and torchmetrics' ``relu``
normalisation (negative contrast terms would make fractional powers NaN).
"""

from __future__ import annotations

import itertools
import math

import torch

from trainer.evaluate.classifier import Head

MSSSIM_BETAS = (0.0448, 0.2856, 0.3001)
JOINT_PARTS = ("hair_style", "skin", "background")


def msssim_settings(size: int) -> dict:
    """Kernel and betas of our 3-scale MS-SSIM for a resolution (see module docstring)."""
    s = sum(MSSSIM_BETAS)
    kernel = 7 if size >= 64 else 5 if size >= 32 else 3
    return {"kernel_size": kernel, "sigma": 1.5, "betas": tuple(b / s for b in MSSSIM_BETAS),
            "normalize": "relu", "data_range": 1.0}


def mean_pairwise_msssim(images: torch.Tensor, max_pairs: int = 64, seed: int = 0) -> float:
    """Mean MS-SSIM over pairs of uint8 images [k, 3, S, S] (a seeded subset of pairs
    when there are more than ``max_pairs``)."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    pairs = list(itertools.combinations(range(len(images)), 2))
    if not pairs:
        return float("nan")
    if len(pairs) > max_pairs:
        g = torch.Generator().manual_seed(seed)
        pairs = [pairs[i] for i in torch.randperm(len(pairs), generator=g)[:max_pairs]]
    a = torch.stack([images[i] for i, _ in pairs]).float() / 255
    b = torch.stack([images[j] for _, j in pairs]).float() / 255
    vals = multiscale_structural_similarity_index_measure(
        a, b, reduction="none", **msssim_settings(images.shape[-1]))
    return float(vals.mean())


def grain(images: torch.Tensor) -> float:
    """Mean |4-neighbour Laplacian| of uint8 images [k, 3, S, S] on the [0, 1] scale."""
    x = images.float()  # exact on integers: a flat image gives 0
    lap = (4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1]
           - x[..., 1:-1, :-2] - x[..., 1:-1, 2:])
    return float(lap.abs().mean()) / 255


def pixel_std(images: torch.Tensor) -> float:
    """Per-pixel standard deviation across uint8 images, on the [-1, 1] scale, averaged."""
    x = images.float() / 127.5 - 1.0
    return float(x.std(dim=0).mean())


def spread(groups_fake: list[torch.Tensor], groups_real: list[torch.Tensor],
           msssim: bool = True) -> dict:
    """Spread of generated vs real images, each list holding one uint8 stack per tag
    combination; means over combinations and the generated/real ratios. MS-SSIM
    (~10 ms per pair on a CPU core) can be left out for a quick look."""
    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    def stats(groups: list[torch.Tensor]) -> tuple[float, float]:
        groups = [g for g in groups if len(g) >= 2]
        std = mean([pixel_std(g) for g in groups])
        ssim = mean([mean_pairwise_msssim(g) for g in groups]) if msssim else float("nan")
        return std, ssim

    std_f, ssim_f = stats(groups_fake)
    std_r, ssim_r = stats(groups_real)
    grain_f = mean([grain(g) for g in groups_fake if len(g)])
    grain_r = mean([grain(g) for g in groups_real if len(g)])
    out = {
        "combinations": len(groups_fake),
        "k_fake": min((len(g) for g in groups_fake), default=0),
        "k_real": min((len(g) for g in groups_real), default=0),
        "pixel_std_fake": std_f, "pixel_std_real": std_r,
        "pixel_std_ratio": std_f / std_r if std_r > 0 else float("nan"),
        "grain_fake": grain_f, "grain_real": grain_r,
        "grain_ratio": grain_f / grain_r if grain_r > 0 else float("nan"),
    }
    if msssim:
        out.update({"msssim_fake": ssim_f, "msssim_real": ssim_r,
                    "msssim_diversity_ratio": (1 - ssim_f) / (1 - ssim_r) if ssim_r < 1
                    else float("nan")})
    return out


def kl_divergence(p_counts: torch.Tensor, q_counts: torch.Tensor, pseudo: float = 0.5) -> float:
    """KL(p || q) in nats of two count vectors; q gets ``pseudo`` counts per class so
    that a class it never saw costs a finite amount."""
    p = p_counts.double() / p_counts.sum().clamp(min=1)
    q = q_counts.double() + pseudo
    q = q / q.sum()
    mask = p > 0
    return float((p[mask] * (p[mask] / q[mask]).log()).sum())


def part_modes(heads: list[Head], pred_fake: torch.Tensor, pred_real: torch.Tensor,
               ref_real: torch.Tensor | None = None) -> dict:
    """Modes covered and KL to the data, per part head and jointly (JOINT_PARTS).

    pred_fake / pred_real: predicted classes [N, n_heads] of generated and real images
    (``ref_real``: predictions on a second real sample of the same size as the fakes,
    the reference a perfect generator would score; defaults to ``pred_real``).
    """
    ref = pred_real if ref_real is None else ref_real
    idx = {h.name: i for i, h in enumerate(heads) if h.kind == "part"}
    out: dict = {"n_fake": len(pred_fake), "n_real": len(pred_real), "parts": {}}
    for name, i in idx.items():
        n = len(heads[i].classes)
        cf = torch.bincount(pred_fake[:, i], minlength=n)
        cr = torch.bincount(pred_real[:, i], minlength=n)
        cref = torch.bincount(ref[:, i], minlength=n)
        out["parts"][name] = {
            "classes": n, "modes_fake": int((cf > 0).sum()), "modes_real": int((cref > 0).sum()),
            "kl_fake": kl_divergence(cf, cr), "kl_real": kl_divergence(cref, cr),
            "hist_fake": cf.tolist(), "hist_real": cr.tolist(),
        }
    if all(p in idx for p in JOINT_PARTS):
        sizes = [len(heads[idx[p]].classes) for p in JOINT_PARTS]
        total = math.prod(sizes)

        def joint(pred: torch.Tensor) -> torch.Tensor:
            code = torch.zeros(len(pred), dtype=torch.long)
            for p, s in zip(JOINT_PARTS, sizes, strict=True):
                code = code * s + pred[:, idx[p]]
            return torch.bincount(code, minlength=total)

        jf, jr, jref = joint(pred_fake), joint(pred_real), joint(ref)
        out["joint"] = {"parts": list(JOINT_PARTS), "modes_total": total,
                        "modes_fake": int((jf > 0).sum()), "modes_real": int((jref > 0).sum()),
                        "kl_fake": kl_divergence(jf, jr), "kl_real": kl_divergence(jref, jr)}
    return out


def plot_part_histograms(result: dict, out: str, title: str = "") -> str | None:
    """Bar charts: predicted class frequencies of generated vs real images per part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = result.get("parts", {})
    if not parts:
        return None
    fig, axes = plt.subplots(len(parts), 1, figsize=(8, 1.6 * len(parts)), squeeze=False)
    for ax, (name, r) in zip(axes[:, 0], parts.items(), strict=True):
        f = torch.tensor(r["hist_fake"], dtype=torch.float64)
        q = torch.tensor(r["hist_real"], dtype=torch.float64)
        x = torch.arange(len(f))
        ax.bar(x - 0.2, (q / q.sum().clamp(min=1)).numpy(), 0.4, label="real", color="0.6")
        ax.bar(x + 0.2, (f / f.sum().clamp(min=1)).numpy(), 0.4, label="generated", color="C0")
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.text(0.99, 0.9, f"modes {r['modes_fake']}/{r['classes']}  KL {r['kl_fake']:.3f}",
                transform=ax.transAxes, ha="right", va="top", fontsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
