"""Evaluation of the tag-GAN family: FID/KID and its real floor, tag accuracy, diversity.

The family's evaluation entry (trainer/families.py): ``probe`` (a finiteness check on
a few inputs), ``evaluate`` (every metric, for ``trainer.evaluate``) and
``during_training`` (the cheap version logged every ``eval_every`` steps).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainer.evaluate import classifier as clf
from trainer.evaluate.diversity import part_modes, spread
from trainer.evaluate.fid import fid_from_features, fid_kid, real_cache_file, real_features_cached
from trainer.evaluate.pipeline import EvalError, EvalOptions, EvalRun, fit_classifiers
from trainer.evaluate.sampling import (
    Truncated,
    generate,
    generator_z_dim,
    iter_generate,
    real_batches,
    sample_indices,
)


def _conditional(G: nn.Module, vocab: object) -> bool:
    return vocab is not None and bool(getattr(G, "n_cond", 1))


# -- pieces -------------------------------------------------------------------------------
def real_sample_cache(dataset: object, cache_dir: Path, seed: int, n: int, resize: str,
                      part: str = "") -> Path:
    """Cache file of the real features of sample A (``part=""``: the one fakes are compared
    with) or of the disjoint sample B (``part="-disjoint"``) of ``n`` images."""
    size = int(dataset.images.shape[-1])  # type: ignore[attr-defined]
    return real_cache_file(cache_dir, f"{clf.dataset_key(dataset)}-s{seed}{part}", size, n,
                           resize)  # type: ignore[arg-type]


def fid_for_generator(G: nn.Module, dataset: object, n: int, seed: int, resize: str,
                      cache_dir: Path, conditional: bool) -> tuple[dict, torch.Tensor,
                                                                   torch.Tensor]:
    """FID/KID of ``n`` generated images, tags drawn from the data, against ``n`` real ones.

    Returns the result, the real indices used and the tags of the fakes.
    """
    images, labels = dataset.images, dataset.labels  # type: ignore[attr-defined]
    real_idx = sample_indices(len(images), n, seed)
    g = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(n, generator_z_dim(G), generator=g)
    tags = labels[torch.randint(len(labels), (n,), generator=g)].float() if conditional else None
    cache = real_sample_cache(dataset, cache_dir, seed, len(real_idx), resize)
    res = fid_kid(real_batches(images, real_idx), iter_generate(G, z, tags), real_cache=cache,
                  resize=resize)  # type: ignore[arg-type]
    return res, real_idx, (tags if tags is not None else torch.zeros(n, 0))


def real_vs_real_fid(dataset: object, n: int, seed: int, resize: str,
                     cache_dir: Path) -> dict:
    """FID/KID of two disjoint real samples of ``n`` images: what a perfect generator scores.

    Sample A is the one ``fid_for_generator`` compares fakes with; sample B the next
    ``n`` images of the same permutation (fewer if the dataset has under 2n). FID is
    biased upwards at small n, so a result is read against this floor at the same
    n and resize. Both feature sets are cached.
    """
    images = dataset.images  # type: ignore[attr-defined]
    idx = sample_indices(len(images), 2 * n, seed)  # the first n are fid_for_generator's
    idx_a, idx_b = idx[:n], idx[n:]
    if len(idx_b) < 2:
        raise EvalError(f"the real-vs-real floor needs more than {n} + 1 images; the dataset "
                        f"has {len(images)} (lower --n)")
    feats_a = real_features_cached(real_batches(images, idx_a),
                                   real_sample_cache(dataset, cache_dir, seed, len(idx_a), resize),
                                   resize)  # type: ignore[arg-type]
    feats_b = real_features_cached(real_batches(images, idx_b),
                                   real_sample_cache(dataset, cache_dir, seed, len(idx_b), resize,
                                                     "-disjoint"), resize)  # type: ignore[arg-type]
    res = fid_from_features(feats_a, feats_b)
    res["resize"] = resize
    return res


def spread_samples(G: nn.Module, dataset: object, vocab: object, combinations: int, k: int,
                   seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
    """k generated and up to k real images for the ``combinations`` most frequent tag
    combinations of the data (one group of random images if unconditional)."""
    images, labels = dataset.images, dataset.labels  # type: ignore[attr-defined]
    g = torch.Generator().manual_seed(seed + 2)
    zd = generator_z_dim(G)
    if vocab is None or labels.shape[1] == 0:
        fake = generate(G, torch.randn(k, zd, generator=g), None)
        return [fake], [images[sample_indices(len(images), k, seed + 2)]], ["all"]
    keys, inverse, counts = torch.unique(labels, dim=0, return_inverse=True, return_counts=True)
    order = counts.argsort(descending=True, stable=True)[:combinations]
    fakes, reals, names = [], [], []
    for c in order:
        rows = (inverse == c).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=g)[:k]]
        tags = keys[c].float().expand(k, -1)
        fakes.append(generate(G, torch.randn(k, zd, generator=g), tags))
        reals.append(images[rows])
        names.append(vocab.format(vocab.decode(keys[c].numpy())))  # type: ignore[attr-defined]
    return fakes, reals, names


def _part_modes(G: nn.Module, dataset: object, part_model: clf.TagClassifier, n: int,
                seed: int, conditional: bool) -> dict:
    """Part modes and KL of ``n`` fakes against two real samples (avatars only)."""
    g = torch.Generator().manual_seed(seed + 3)
    z = torch.randn(n, generator_z_dim(G), generator=g)
    labels = dataset.labels  # type: ignore[attr-defined]
    tags = labels[torch.randint(len(labels), (n,), generator=g)].float() if conditional else None
    fake = generate(G, z, tags)
    perm = torch.randperm(len(labels), generator=g)
    real_a, real_b = perm[:n], perm[n:2 * n] if len(perm) >= 2 * n else perm[-n:]
    pred_fake = clf.predict(part_model, fake)
    pred_real = clf.predict(part_model, dataset.images[real_a])  # type: ignore[attr-defined]
    pred_ref = clf.predict(part_model, dataset.images[real_b])  # type: ignore[attr-defined]
    return part_modes(part_model.heads, pred_fake, pred_real, pred_ref)


# -- the family's entry -------------------------------------------------------------------
@torch.no_grad()
def probe(G: nn.Module, dataset: object, vocab: object, n: int) -> torch.Tensor:
    """G's output for fixed noise and the first ``n`` images' tags (finiteness check)."""
    labels = dataset.labels[:n].float()  # type: ignore[attr-defined]
    z = torch.randn(len(labels), generator_z_dim(G), generator=torch.Generator().manual_seed(0))
    return G(z, labels if vocab is not None else None)


def evaluate(G: nn.Module, dataset: object, vocab: object, opts: EvalOptions,
             run: EvalRun) -> None:
    """FID/KID and its floor, tag accuracy (conditional runs), part modes and spread."""
    if opts.truncation < 1:
        G = Truncated(G, opts.truncation, opts.seed)
    conditional = _conditional(G, vocab)
    model, part_model = fit_classifiers(dataset, opts, run, parts=True)
    m = run.m
    if opts.fid:
        with run.timed("fid"):
            run.say(f"FID/KID: {opts.n} generated vs {min(opts.n, len(dataset))} real images "  # type: ignore[arg-type]
                    f"(resize {opts.resize})")
            m["fid"] = fid_for_generator(G, dataset, opts.n, opts.seed, opts.resize, run.cache,
                                         conditional)[0]
            run.say(f"real-vs-real floor: {opts.n} real vs {opts.n} other real images")
            m["fid_real_floor"] = real_vs_real_fid(dataset, opts.n, opts.seed, opts.resize,
                                                   run.cache)
    if conditional and model is not None:
        from trainer.evaluate.tag_accuracy import tag_accuracy

        with run.timed("tag_accuracy"):
            run.say(f"tag accuracy: {opts.k} images x every tag combination")
            m["tag_accuracy"] = tag_accuracy(G, vocab, model, opts.k, opts.seed,
                                             keep_images=False)
    with run.timed("diversity"):
        run.say("diversity: part modes and within-combination spread")
        if part_model is not None:
            m["modes"] = _part_modes(G, dataset, part_model, opts.n, opts.seed, conditional)
        fakes, reals, names = spread_samples(G, dataset, vocab if conditional else None,
                                             opts.spread_combinations, opts.spread_k, opts.seed)
        m["spread"] = {**spread(fakes, reals), "names": names}
        run.pics["spread"] = (fakes, reals, names)


def during_training(G: nn.Module, dataset: object, vocab: object,
                    model: clf.TagClassifier | None, *, n: int, k: int, fid: bool,
                    stargan_n: int, cache: Path) -> dict[str, float]:
    """Tag accuracy (conditional), FID/KID on ``n`` images and the pixel-std spread ratio."""
    out: dict[str, float] = {}
    conditional = _conditional(G, vocab)
    if conditional and model is not None:
        from trainer.evaluate.tag_accuracy import tag_accuracy

        acc = tag_accuracy(G, vocab, model, k, seed=0)
        out.update({f"acc_{g}": v for g, v in acc["per_group"].items()})
        out["acc_joint"] = acc["joint"]
    if fid:
        res, _, _ = fid_for_generator(G, dataset, n, 0, "clean", cache, conditional)
        out[f"fid{n}"] = float(res["fid"])
        out[f"kid{n}"] = float(res["kid"])
    fakes, reals, _ = spread_samples(G, dataset, vocab if conditional else None, 4, 8, 0)
    out["pixel_std_ratio"] = spread(fakes, reals, msssim=False)["pixel_std_ratio"]
    return out
