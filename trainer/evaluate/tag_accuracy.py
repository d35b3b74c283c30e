"""Does the generator draw the tags it is asked for?

For every tag combination (hair 12 x eyes 10 = 120) we generate ``k`` images with
different z, classify them with the dataset's classifier and count, per group,
how often the predicted tag is the requested one; "joint" counts images where
every group is right. Confusion matrices (requested x predicted) show what goes
wrong instead, e.g. black hair drawn as gray.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainer.evaluate.classifier import TagClassifier, predict
from trainer.evaluate.sampling import generate, generator_z_dim


def combination_inputs(vocab: object, k: int, z_dim: int,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z [C*k, z_dim], one-hot tags [C*k, n_tags] and group indices [C*k, n_groups] for
    ``k`` images of every combination C of one tag per group."""
    combos = torch.cartesian_prod(*[torch.arange(n) for n in vocab.group_sizes])  # type: ignore[attr-defined]
    combos = combos.reshape(-1, len(vocab.group_sizes))  # type: ignore[attr-defined]
    idx = combos.repeat_interleave(k, dim=0)
    tags = torch.from_numpy(vocab.encode_indices(idx.numpy()))  # type: ignore[attr-defined]
    z = torch.randn(len(idx), z_dim, generator=torch.Generator().manual_seed(seed))
    return z, tags, idx


def confusion(requested: torch.Tensor, predicted: torch.Tensor, n: int) -> torch.Tensor:
    """int64 [n, n] counts: row = requested class, column = predicted class."""
    return torch.bincount(requested * n + predicted, minlength=n * n).reshape(n, n)


def tag_accuracy(G: nn.Module, vocab: object, classifier: TagClassifier, k: int = 10,
                 seed: int = 0, z_dim: int | None = None,
                 keep_images: bool = False) -> dict:
    """Per-group and joint accuracy of ``k`` images per tag combination.

    Returns {"k", "n", "per_group": {group: acc}, "joint", "confusion": {group: [[..]]},
    "worst": [(combination text, joint acc), ...]} and, with ``keep_images``, the
    uint8 images and requested indices under "images" / "requested".
    """
    groups = list(vocab.groups)  # type: ignore[attr-defined]
    heads = {h.name: i for i, h in enumerate(classifier.heads) if h.kind == "tag"}
    missing = [g.name for g in groups if g.name not in heads]
    if missing:
        raise ValueError(f"the classifier has no head for tag group(s) {missing}")
    z, tags, requested = combination_inputs(vocab, k, z_dim or generator_z_dim(G), seed)
    images = generate(G, z, tags)
    pred = predict(classifier, images)
    per_group, conf, right = {}, {}, torch.ones(len(images), dtype=torch.bool)
    for gi, g in enumerate(groups):
        p = pred[:, heads[g.name]]
        ok = p == requested[:, gi]
        right &= ok
        per_group[g.name] = float(ok.float().mean())
        conf[g.name] = confusion(requested[:, gi], p, len(g.tags)).tolist()
    per_combo = right.reshape(-1, k).float().mean(1)
    combos = requested[::k]
    order = per_combo.argsort()[:5]
    worst = [(vocab.format({g.name: g.tags[int(c)] for g, c in zip(groups, combos[i],  # type: ignore[attr-defined]
                                                                       strict=True)}),
              float(per_combo[i])) for i in order]
    out = {"k": k, "n": len(images), "n_combinations": len(combos), "per_group": per_group,
           "joint": float(right.float().mean()), "confusion": conf, "worst": worst}
    if keep_images:
        out["images"], out["requested"] = images, requested
    return out


def plot_confusion(matrix: list[list[int]], classes: tuple[str, ...] | list[str], title: str,
                   out: str | Path) -> Path:
    """Row-normalised confusion matrix (requested x predicted) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = torch.tensor(matrix, dtype=torch.float64)
    norm = m / m.sum(1, keepdim=True).clamp(min=1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.42 * n, 0.8 + 0.42 * n))
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("requested")
    ax.set_title(title, fontsize=9)
    for i in range(n):
        for j in range(n):
            if m[i, j] > 0:
                ax.text(j, i, f"{norm[i, j]:.2f}".lstrip("0") if norm[i, j] < 1 else "1",
                        ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.6 else "black")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
