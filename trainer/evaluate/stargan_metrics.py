"""StarGAN: does a translation reach its target domain, and keep everything else?

For every domain d we take real images that do not have d, switch d on (for an
exclusive set such as hair colours, its siblings off: ``Domains.apply``) and
translate them. A domain classifier trained like the tag classifier (one head per
exclusive set, a yes/no head per other attribute) then gives

- target accuracy: the translation shows d;
- preservation: every other head still shows the source's value;
- for the avatars, the error against the ground truth: the same avatar re-rendered
  from meta.jsonl with the target attribute changed (hair and eye colours; adding
  glasses or short hair has no single ground truth). L1 on the [0, 1] scale and PSNR,
  next to the same numbers for the untranslated input (the "do nothing" baseline),
  and the PSNR split between the pixels the re-render changes (the hair) and the
  rest (what the translation should leave alone), so a low PSNR says which it is,
  with a map of where the kept pixels' error sits and its mean sign (a translation
  that darkens the whole background reads as a negative shift);
- FID of the translations against real images of domain d (optional, costly on CPU);
- for a run's checkpoint, what D's own domain head sees on the real images: per
  domain the share of images with it that D calls positive (recall) and of those
  without it that D calls negative. G learns a domain only through this head, so a
  domain D does not see yet is one G gets no signal to draw (a thin attribute such
  as glasses is typically the last).

``probe``, ``evaluate`` and ``during_training`` are the StarGAN family's evaluation
entry (trainer/families.py; trainer/evaluate/pipeline.py calls them).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from torch import nn

from trainer.data.transforms import to_model_input
from trainer.evaluate.classifier import TagClassifier, avatar_records, predict
from trainer.evaluate.sampling import real_batches, translate


def domain_change(name: str) -> dict[str, str] | None:
    """``rerender`` changes that put an avatar into domain ``name`` (None: no ground truth)."""
    from trainer.data.formats import EYE_COLOUR_ATTRS, HAIR_COLOUR_ATTRS

    if name in HAIR_COLOUR_ATTRS:
        tag = name.removesuffix("_Hair").lower()
        return {"hair_color": "blonde" if tag == "blond" else tag}
    if name in EYE_COLOUR_ATTRS:
        return {"eye_color": name.removesuffix("_Eyes").lower()}
    return None


def head_of_domain(classifier: TagClassifier, name: str) -> tuple[int, int]:
    """(head index, class index) that says "domain ``name`` is on"."""
    for i, h in enumerate(classifier.heads):
        if h.kind != "domain":
            continue
        if h.classes == ("no", "yes") and h.name == name:
            return i, 1
        if name in h.name.split("|"):
            return i, h.classes.index(name)
    raise ValueError(f"the domain classifier has no head for {name!r}")


def domain_classes(classifier: TagClassifier, domains: object, vectors: torch.Tensor) -> torch.Tensor:
    """Class index per domain head of 0/1 domain vectors [N, n_domains]."""
    from trainer.evaluate.classifier import domain_heads

    cols = [t for _, t in domain_heads(domains, vectors)]
    return torch.stack(cols, 1) if cols else torch.zeros(len(vectors), 0, dtype=torch.long)


def ground_truth(records: list[dict], change: dict[str, str | None] | list[dict[str, str | None]],
                 size: int) -> torch.Tensor:
    """uint8 [N, 3, size, size]: the avatars re-rendered with ``change`` (one for all, or one
    per record), decoded as the dataset pipeline does (trainer.data.transforms.load_image)."""
    from trainer.data.avatars import rerender
    from trainer.data.transforms import load_image

    changes = change if isinstance(change, list) else [change] * len(records)
    if len(changes) != len(records):
        raise ValueError(f"{len(changes)} changes for {len(records)} avatars")
    return torch.stack([torch.from_numpy(load_image(io.BytesIO(rerender(r, **c)), size))
                        for r, c in zip(records, changes, strict=True)])


def l1_psnr(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean absolute error on the [0, 1] scale and mean per-image PSNR (dB) of uint8 pairs."""
    x, y = a.float() / 255, b.float() / 255
    l1 = float((x - y).abs().mean())
    return l1, float(psnr_db((x - y).pow(2).flatten(1).mean(1)).mean())


def psnr_db(mse: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) of mean squared errors on the [0, 1] scale (floored at 1e-10: 100 dB)."""
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-10))


CHANGED_LEVEL = 8  # a pixel whose re-rendered value differs by more (of 255, any channel) changed


def changed_pixels(truth: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """bool [N, H, W]: the pixels the re-render changes (the rest should stay)."""
    return (truth.int() - source.int()).abs().amax(1) > CHANGED_LEVEL


def region_psnr(fake: torch.Tensor, truth: torch.Tensor, source: torch.Tensor
                ) -> tuple[float, float]:
    """Mean per-image PSNR (dB) of uint8 ``fake`` against ``truth`` over the pixels where
    ``truth`` differs from ``source`` (changed), and over the others (kept); images with
    no pixel in a region do not count towards its mean (NaN when none has one)."""
    changed = changed_pixels(truth, source)
    err = ((fake.float() - truth.float()) / 255).pow(2).mean(1)  # [N, H, W]
    out = []
    for region in (changed, ~changed):
        n = region.flatten(1).sum(1)
        mse = (err * region).flatten(1).sum(1)[n > 0] / n[n > 0]
        out.append(float(psnr_db(mse).mean()) if len(mse) else math.nan)
    return out[0], out[1]


def kept_error(fake: torch.Tensor, truth: torch.Tensor, source: torch.Tensor
               ) -> tuple[torch.Tensor, float]:
    """Where and how a translation changes what should stay, against the ground truth.

    Returns the per-pixel mean of |fake - truth| (channel mean, of 255) over the images in
    which the pixel is kept (``region_psnr``'s split; NaN where it never is) as [H, W], and
    the mean signed error over all kept pixels (a brightness shift: < 0 darker)."""
    kept = (~changed_pixels(truth, source)).float()  # [N, H, W]
    diff = (fake.float() - truth.float()).mean(1)  # [N, H, W], channel mean
    n = kept.sum(0)
    where = (diff.abs() * kept).sum(0) / n.clamp(min=1)
    where[n == 0] = math.nan
    shift = float((diff * kept).sum() / kept.sum().clamp(min=1))
    return where, shift


def stargan_metrics(G: nn.Module, dataset: object, domains: object, classifier: TagClassifier,
                    n_per_domain: int = 50, seed: int = 0, fid: bool = False,
                    fid_cache_dir: str | Path | None = None, resize: str = "clean",
                    keep_examples: int = 0) -> dict:
    """Target accuracy, preservation, ground-truth error (avatars) and optional FID per
    domain, and their means over domains (see module docstring)."""
    from trainer.evaluate.fid import fid_kid, real_cache_file

    labels = dataset.labels.float()  # type: ignore[attr-defined]
    images = dataset.images  # type: ignore[attr-defined]
    size = images.shape[-1]
    records = avatar_records(dataset)
    names = list(domains.names)  # type: ignore[attr-defined]
    g = torch.Generator().manual_seed(seed)
    per: dict[str, dict] = {}
    examples: list[torch.Tensor] = []
    kept_maps: dict[str, torch.Tensor] = {}
    for d, name in enumerate(names):
        pool = (labels[:, d] < 0.5).nonzero().flatten()
        if len(pool) == 0:
            per[name] = {"n": 0, "note": "every image already has this domain"}
            continue
        src = pool[torch.randperm(len(pool), generator=g)[:n_per_domain]]
        target = torch.from_numpy(domains.apply(labels[src].numpy(), [name]))  # type: ignore[attr-defined]
        fake = translate(G, images[src], target, labels[src])
        pred = predict(classifier, fake)
        head, cls = head_of_domain(classifier, name)
        want = domain_classes(classifier, domains, target)
        dom_heads = [i for i, h in enumerate(classifier.heads) if h.kind == "domain"]
        others = [j for j, i in enumerate(dom_heads) if i != head]
        kept = (pred[:, [dom_heads[j] for j in others]] == want[:, others]).float()
        r: dict = {"n": len(src), "target_accuracy": float((pred[:, head] == cls).float().mean()),
                   "preservation": float(kept.mean()) if kept.numel() else float("nan")}
        change = domain_change(name)
        if records is not None and change is not None:
            truth = ground_truth([records[int(i)] for i in src], change, size)
            r["l1"], r["psnr"] = l1_psnr(fake, truth)
            r["l1_identity"], r["psnr_identity"] = l1_psnr(images[src], truth)
            r["psnr_changed"], r["psnr_kept"] = region_psnr(fake, truth, images[src])
            kept_maps[name], r["kept_shift"] = kept_error(fake, truth, images[src])
        if fid:
            has = (labels[:, d] > 0.5).nonzero().flatten()
            if len(has) >= 2 and len(fake) >= 2:
                real_idx = has[torch.randperm(len(has), generator=g)[:n_per_domain]]
                cache = None
                if fid_cache_dir is not None:
                    from trainer.evaluate.classifier import dataset_key
                    cache = real_cache_file(fid_cache_dir, f"{dataset_key(dataset)}-{name}-s{seed}",
                                            size, len(real_idx), resize)  # type: ignore[arg-type]
                res = fid_kid(real_batches(images, real_idx), [fake], real_cache=cache,
                              resize=resize)  # type: ignore[arg-type]
                r["fid"], r["kid"] = res["fid"], res["kid"]
                r["fid_n_real"], r["fid_n_fake"] = res["n_real"], res["n_fake"]
        if keep_examples:
            examples.append(torch.cat([images[src[:keep_examples]], fake[:keep_examples]]))
        per[name] = r
    out: dict = {"per_domain": per, "n_per_domain": n_per_domain}
    for key in ("target_accuracy", "preservation", "l1", "psnr", "l1_identity",
                "psnr_identity", "psnr_changed", "psnr_kept", "fid", "kid"):
        vals = [r[key] for r in per.values() if key in r and r[key] == r[key]]
        if vals:
            out[f"mean_{key}"] = sum(vals) / len(vals)
    if keep_examples:
        out["examples"] = examples
        out["kept_error"] = kept_maps
    return out


@torch.no_grad()
def discriminator_domains(D: nn.Module, dataset: object, domains: object, n: int = 2000,
                          seed: int = 0, batch: int = 64) -> dict[str, dict]:
    """D's domain head on the real images (all, or ``n`` drawn with ``seed``): per domain
    ``recall`` (images with the domain that D scores > 0), ``specificity`` (images without
    it scored <= 0) and their counts."""
    images, labels = dataset.images, dataset.labels  # type: ignore[attr-defined]
    if len(images) > n:
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
        images, labels = images[pick], labels[pick]
    has = labels > 0.5
    logits = torch.cat([D(to_model_input(images[i:i + batch], flip=False))[1].float()
                        for i in range(0, len(images), batch)])
    out: dict[str, dict] = {}
    for d, name in enumerate(domains.names):  # type: ignore[attr-defined]
        pos, neg = has[:, d], ~has[:, d]
        out[name] = {"n_with": int(pos.sum()), "n_without": int(neg.sum()),
                     "recall": float((logits[pos, d] > 0).float().mean()) if pos.any()
                     else math.nan,
                     "specificity": float((logits[neg, d] <= 0).float().mean()) if neg.any()
                     else math.nan}
    return out


# -- the family's entry -------------------------------------------------------------------
@torch.no_grad()
def probe(G: nn.Module, dataset: object, vocab: object, n: int) -> torch.Tensor:
    """G's translations of the first ``n`` images to their own labels (finiteness check)."""
    x = dataset.images[:n].float().div(127.5).sub(1.0)  # type: ignore[attr-defined]
    own = dataset.labels[:n].float()  # type: ignore[attr-defined]
    return G(x, own, own)


def evaluate(G: nn.Module, dataset: object, vocab: object, opts, run) -> None:
    """Target accuracy, preservation, ground-truth error and (``opts.fid``) FID per domain.

    ``opts``: trainer.evaluate.pipeline.EvalOptions; ``run``: its EvalRun.
    """
    from trainer.evaluate.pipeline import EvalError, fit_classifiers

    model, _ = fit_classifiers(dataset, opts, run, parts=False)
    with run.timed("stargan"):
        run.say(f"StarGAN: {len(vocab.names)} domains x {opts.stargan_n} images"  # type: ignore[attr-defined]
                + (" with FID" if opts.fid else ""))
        if model is None:
            raise EvalError("StarGAN evaluation needs domain labels")
        res = stargan_metrics(G, dataset, vocab, model, opts.stargan_n, opts.seed, fid=opts.fid,
                              fid_cache_dir=run.cache, resize=opts.resize, keep_examples=6)
        run.pics["translations"] = res.pop("examples")
        run.pics["kept_error"] = res.pop("kept_error")
        run.m["stargan"] = res
    if run.loaded is not None:
        from trainer.runs import RunError, load_discriminator

        with run.timed("discriminator"):
            try:
                D = load_discriminator(run.loaded, int(dataset.images.shape[-1]))  # type: ignore[attr-defined]
            except RunError as e:
                run.say(f"D's domain head not read: {e}")
            else:
                res["discriminator"] = discriminator_domains(D, dataset, vocab,
                                                             seed=opts.seed)


def during_training(G: nn.Module, dataset: object, vocab: object,
                    model: TagClassifier | None, *, n: int, k: int, fid: bool,
                    stargan_n: int, cache: Path) -> dict[str, float]:
    """Mean target accuracy and preservation on ``stargan_n`` images per domain."""
    if model is None:
        return {}
    res = stargan_metrics(G, dataset, vocab, model, stargan_n, seed=0)
    return {"target_accuracy": res.get("mean_target_accuracy", math.nan),
            "preservation": res.get("mean_preservation", math.nan)}
