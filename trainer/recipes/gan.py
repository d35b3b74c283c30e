"""The DCGAN family as a recipe: G and D, their optimizers, and the D and G phases.

One recipe covers every non-StarGAN preset; what differs between DCGAN, WGAN,
WGAN-GP, LSGAN, hinge/SNGAN, cGAN and ACGAN is data in the config: the
adversarial loss object (``trainer.losses.ADVERSARIAL``), the D conditioning
head, the penalty and auxiliary weights, and the phase intervals.

Choices, documented:

- G draws fakes for the tags of the real batch it is given, in both phases.
  The fakes then share the real tag distribution, so a conditional D cannot
  call a sample fake just for carrying a rare combination. Wrong tags for the
  matching-aware loss, in contrast, are drawn uniformly from the vocabulary
  (report 002: its data was half untagged and heavily skewed).
- The ACGAN classifier is trained on real images only and G is trained to make
  its fakes classified as their tags (report 004; adding the fake-image
  classification to D crashed G there).
- D is never updated in the G phase: its weights stop requiring gradients
  while G's loss is built, which also saves their backward pass.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from trainer.config import ConfigError, TrainConfig
from trainer.data.vocab import Vocab
from trainer.losses import (
    ADVERSARIAL,
    WRONG_TAGS,
    aux_loss,
    feature_matching_loss,
    gradient_penalty,
    l1_loss,
    matching_aware_d_loss,
    mode_seeking_loss,
    topk_count,
    tv_excess_loss,
)
from trainer.models import build_discriminator, build_generator, is_conditional
from trainer.modes import eval_mode, fp32, frozen
from trainer.noise import truncate
from trainer.recipes.base import Batch, Phase, Recipe, StepResult
from trainer.recipes.common import adversarial_phases, check_image_size, lazy_r1, set_pair


class GanRecipe(Recipe):
    """Networks, optimizers and phases of the DCGAN family (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, vocab: Vocab | None, image_size: int):
        check_image_size(cfg, image_size)
        self.cfg = cfg
        self.conditional = is_conditional(cfg)
        if self.conditional and not isinstance(vocab, Vocab):
            raise ConfigError(f"model.cond={cfg.model.cond!r} needs a dataset with tag groups "
                              f"(hair, eyes, ...); this one has "
                              f"{'none' if vocab is None else type(vocab).__name__}")
        self.vocab = vocab if self.conditional else None
        self.group_sizes: list[int] = vocab.group_sizes if self.conditional else []
        self.adv = ADVERSARIAL[cfg.loss.adv]
        set_pair(self, build_generator(cfg, sum(self.group_sizes)),
                 build_discriminator(cfg, self.group_sizes), cfg)

    def phases(self) -> list[Phase]:
        """D (with weight clipping if ``loss.clip``), lazy R1 if ``loss.r1``, then G."""
        clip = self.clip_d if self.cfg.loss.clip > 0 else None
        return adversarial_phases(self.cfg, self.d_step, self.g_step, self.r1_step, clip)

    # -- phases ---------------------------------------------------------------
    def _inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        real, labels = batch["image"], batch["labels"]
        tags = labels.to(real.dtype) if self.conditional else None
        return real, labels, tags

    def _noise(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(n, self.cfg.model.z_dim, device=like.device)

    def d_step(self, batch: Batch) -> StepResult:
        """D on (real, right tags), optionally (real, wrong tags), and (fake, right tags)."""
        G, D, lc = self.models["G"], self.models["D"], self.cfg.loss
        real, labels, tags = self._inputs(batch)
        with torch.no_grad():
            fake = G(self._noise(real.shape[0], real), tags)
        wrong = (WRONG_TAGS[lc.wrong_tags](labels, self.group_sizes).to(real.dtype)
                 if lc.matching_aware else None)
        if lc.joint_batch:  # one forward: D's BatchNorm normalises real and fake together
            b = real.shape[0]  # each wrong draw's rows: b real, then b fake (scored, dropped)
            wrong_rows = (None if wrong is None else
                          torch.cat([torch.cat([w, tags]) for w in wrong.split(b)]))
            out = D(torch.cat([real, fake]), _cat(tags, tags), wrong_rows)
            out_real, out_fake = out._replace(score_wrong=None).split(b)
            if out.score_wrong is not None:
                out_real = out_real._replace(
                    score_wrong=out.score_wrong.view(-1, 2 * b)[:, :b].reshape(-1))
        else:
            out_real = D(real, tags, wrong)  # the trunk runs once for right and wrong tags
            out_fake = D(fake, tags)
        logs: dict[str, torch.Tensor] = {"d_real": out_real.score.detach().float().mean(),
                                         "d_fake": out_fake.score.detach().float().mean()}
        self.observe_real(out_real.score, logs)
        if out_real.score_wrong is not None:
            loss = matching_aware_d_loss(self.adv, out_real.score, out_real.score_wrong,
                                         out_fake.score, lc.wrong_weight)
            logs["d_wrong"] = out_real.score_wrong.detach().float().mean()
        else:
            loss = self.adv.d_loss(out_real.score, out_fake.score)
        logs["adv"] = loss.detach()
        loss = loss + self.lecam_term(lc.lecam, out_real.score, out_fake.score, logs)
        if lc.gp > 0:
            forward = fp32(D)
            gp = gradient_penalty(lambda x: forward(x, tags).score, real, fake)
            loss = loss + lc.gp * gp
            logs["gp"] = gp.detach()
        if out_real.aux is not None and lc.aux > 0:
            aux = aux_loss(out_real.aux, labels, self.group_sizes)
            loss = loss + lc.aux * aux
            logs["aux"] = aux.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def r1_step(self, batch: Batch) -> StepResult:
        """Lazy R1 on real images: gamma / 2 * E||grad D||^2, times the interval.

        D scores the images with their own tags, or with ``loss.r1_tags=mean`` with every
        group's tags averaged: for a projection head that is the score averaged over all
        tags, so R1 smooths D's realness and leaves its tag-specific part as sharp as the
        matching-aware loss makes it.
        """
        real, _, tags = self._inputs(batch)
        if tags is not None and self.cfg.loss.r1_tags == "mean":
            tags = mean_tags(self.group_sizes, tags)
        forward = fp32(self.models["D"])
        return lazy_r1(self.cfg, lambda x: forward(x, tags).score, real)

    def g_step(self, batch: Batch) -> StepResult:
        """G makes D call its fakes real; plus ACGAN, L1, TV, mode-seeking and feature-matching
        terms if set."""
        G, D, lc = self.models["G"], self.models["D"], self.cfg.loss
        real, labels, tags = self._inputs(batch)
        half = real.shape[0] // 2 if lc.mode_seeking > 0 and tags is not None else 0
        if half:  # rows half..2*half-1 repeat the first half's tags (and images) with new z
            idx = torch.cat([torch.arange(half), torch.arange(half),
                             torch.arange(2 * half, real.shape[0])]).to(real.device)
            real, labels, tags = real[idx], labels[idx], tags[idx]
        z = self._noise(real.shape[0], real)
        fake = G(z, tags)
        b = real.shape[0]
        k = topk_count(b, self.epoch, lc.topk_gamma, lc.topk_nu) if lc.topk_nu < 1 else b
        # loss.topk_by=realness ranks by the score under every group's tags averaged,
        # which D's head gives beside the score as if they were wrong tags (no trunk pass)
        rank_tags = (mean_tags(self.group_sizes, tags)
                     if k < b and lc.topk_by == "realness" else None)
        with frozen(D):
            if lc.joint_batch:  # as in the D phase: the fakes share a BatchNorm batch with reals
                out = D(torch.cat([real, fake]), _cat(tags, tags),
                        _cat(rank_tags, rank_tags)).split(b)[1]
            else:
                out = D(fake, tags, rank_tags)
        scores = out.score
        if k < b:  # top-k: G's adversarial loss on the k fakes ranked highest
            rank = out.score if out.score_wrong is None else out.score_wrong
            scores = scores[rank.detach().float().topk(k).indices]
        loss = self.adv.g_loss(scores)
        logs: dict[str, torch.Tensor] = {"adv": loss.detach(),
                                         "d_fake": out.score.detach().float().mean()}
        if k < b:
            logs["topk"] = out.score.new_tensor(float(k))
        if out.aux is not None and lc.aux > 0:
            aux = aux_loss(out.aux, labels, self.group_sizes)
            loss = loss + lc.aux * aux
            logs["aux"] = aux.detach()
        if lc.l1 > 0:
            l1 = l1_loss(fake, real)
            loss = loss + lc.l1 * l1
            logs["l1"] = l1.detach()
        if lc.tv > 0:
            tv = tv_excess_loss(fake, real)
            loss = loss + lc.tv * tv
            logs["tv"] = tv.detach()
        if half:
            ms = mode_seeking_loss(fake[:half], fake[half:2 * half], z[:half], z[half:2 * half],
                                   pool=lc.mode_seeking_pool)
            loss = loss + lc.mode_seeking * ms
            logs["ms"] = ms.detach()
        if lc.feature_matching > 0:
            with torch.no_grad():
                real_features = D(real, tags).features
            fm = feature_matching_loss(real_features, out.features)
            loss = loss + lc.feature_matching * fm
            logs["fm"] = fm.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def clip_d(self) -> None:
        """WGAN weight clipping: every D parameter into [-clip, clip]."""
        c = self.cfg.loss.clip
        with torch.no_grad():
            for p in self.models["D"].parameters():
                p.clamp_(-c, c)

    # -- sampling -------------------------------------------------------------
    def _tag_rows(self, first: list[int], g: torch.Generator) -> torch.Tensor:
        """One-hot rows: group 0 from ``first``, the other groups uniformly random."""
        assert self.vocab is not None
        idx = [[f] + [int(torch.randint(n, (1,), generator=g)) for n in self.group_sizes[1:]]
               for f in first]
        return torch.from_numpy(self.vocab.encode_indices(idx))

    def fixed_inputs(self, dataset, n: int, seed: int) -> dict[str, torch.Tensor]:
        """Fixed z (and tags) for the progress grid.

        Conditional: each grid row is one tag combination (the first group, e.g.
        hair colour, cycles down the rows; other groups random) and each column
        one z shared by all rows, so rows show the tags and columns the noise.
        """
        g = torch.Generator().manual_seed(seed)
        ncol = math.ceil(math.sqrt(n))
        if not self.conditional:
            return {"z": torch.randn(n, self.cfg.model.z_dim, generator=g)}
        nrows = math.ceil(n / ncol)
        z = torch.randn(ncol, self.cfg.model.z_dim, generator=g).repeat(nrows, 1)[:n]
        tags = self._tag_rows([r % self.group_sizes[0] for r in range(nrows)], g)
        return {"z": z, "tags": tags.repeat_interleave(ncol, dim=0)[:n]}

    def g_inputs(self, dataset, n: int, g: torch.Generator) -> tuple:
        """(z ~ N(0, 1), the tags of ``n`` random real images or None), as in training."""
        z = torch.randn(n, self.cfg.model.z_dim, generator=g)
        if not self.conditional:
            return z, None
        labels = dataset.labels
        return z, labels[torch.randint(len(labels), (n,), generator=g)].float()

    @torch.no_grad()
    def sample(self, G: nn.Module, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """G's images (float, CPU, [-1, 1]) for ``fixed``, and the images per grid row."""
        n = fixed["z"].shape[0]
        return self._generate(G, fixed["z"], fixed.get("tags")), math.ceil(math.sqrt(n))

    @torch.no_grad()
    def final_grids(self, G: nn.Module, dataset, seed: int) -> dict[str, tuple[torch.Tensor, int]]:
        """The reports' two experiments (report 002), for conditional models.

        ``same_tags_different_noise``: each row one tag combination, a new z per image.
        ``same_noise_different_tags``: each row one z (other groups' tags fixed),
        the columns every tag of the first group (e.g. the 12 hair colours).
        z is truncated at ``cfg.truncation`` (trainer.noise; 1 = off).
        """
        if not self.conditional:
            return {}
        g = torch.Generator().manual_seed(seed)
        zd, n0, rows, cols = self.cfg.model.z_dim, self.group_sizes[0], 8, 8
        rng = np.random.default_rng(seed)

        def noise(n: int) -> torch.Tensor:  # truncated at cfg.truncation (1 = unchanged)
            return torch.from_numpy(truncate(torch.randn(n, zd, generator=g).numpy(),
                                             self.cfg.truncation, rng))

        tags = self._tag_rows([r % n0 for r in range(rows)], g).repeat_interleave(cols, dim=0)
        same_tags = self._generate(G, noise(rows * cols), tags)
        base = self._tag_rows([0] * rows, g)  # [rows, K]; group 0 overwritten below
        tags = base.repeat_interleave(n0, dim=0)
        tags[:, :n0] = torch.eye(n0).repeat(rows, 1)
        z = noise(rows).repeat_interleave(n0, dim=0)
        same_noise = self._generate(G, z, tags)
        return {"same_tags_different_noise": (same_tags, cols),
                "same_noise_different_tags": (same_noise, n0)}

    def _generate(self, G: nn.Module, z: torch.Tensor, tags: torch.Tensor | None) -> torch.Tensor:
        with eval_mode(G) as put:
            return G(put(z), put(tags)).float().cpu()


def mean_tags(group_sizes: list[int], like: torch.Tensor) -> torch.Tensor:
    """Rows of ``like``'s shape whose every group is uniform (1 / its size on each tag)."""
    row = torch.cat([torch.full((n,), 1.0 / n) for n in group_sizes]).to(like)
    return row.expand_as(like)


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Rows of ``a`` then ``b``; None if ``a`` is None (no tags)."""
    return None if a is None else torch.cat([a, b])
