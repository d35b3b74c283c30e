"""StarGAN (Choi et al. 2018) as a recipe: G and D, their optimizers, the D and G phases.

Losses and schedule as the official solver (yunjey/stargan, solver.py), with
the weights and intervals in the config:

- D: adversarial (``loss.adv``, official WGAN) on real vs G(real, target),
  ``loss.gp`` x gradient penalty (fp32, trainer.losses), and
  ``loss.lambda_cls`` x ``loss.d_cls_scale`` (1, official) x domain classification
  BCE of real images against their own labels.
- G (every ``g_every`` = n_critic iterations): adversarial on G(real, target)
  + ``lambda_cls`` x classification of the fake as the target domains
  + ``lambda_rec`` x L1 cycle G(G(real, target), source) vs real
  + ``lambda_id`` x L1 of G(real, source) vs real (off by default; CycleGAN's
  identity loss: asked for the domains it already has, G changes nothing, so
  what it learns for one domain does not leak into images that do not ask for it).
- With ``model.g_output=attention`` (GANimation's blend, trainer.models.stargan),
  G also pays ``loss.lambda_mask`` x the mean attention (against keeping the
  input everywhere), ``loss.lambda_mask_tv`` x its total variation, and
  ``loss.lambda_change`` x the mean of 1 - A, the share of the image it repaints
  (against changes spilling onto what the target does not ask for).
- Targets (``loss.targets``): ``permute`` takes the labels of the same batch in a
  random permutation, as the official code does, so they follow the data's
  attribute distribution (a domain 20% of images have is asked for about as
  often); ``balanced`` draws each image's target afresh, one member of each
  exclusive set uniformly and every other domain on with probability 1/2, so
  rare attributes are asked for as often as common ones.
- G is given the source domains too wherever it runs (the cycle's source is the
  target), for ``model.g_condition=difference``, which feeds it target - source.
- The linear lr decay over the second half is the loop's (``lr_decay_start``).

The classification loss is the official one: BCE summed over domains and
averaged over the batch (not averaged over domains). ``loss.cls_pos_weight``
(e.g. ``{Eyeglasses: 4}``) multiplies a domain's positive term, for D on real
images and G on its fakes: a domain that a fifth of the images have and that
is drawn in a few pixels (glasses) is otherwise the last one D learns to see,
and G gets no signal to draw it until D does.
``loss.g_cls_pos_weight`` sets G's weights apart (over ``cls_pos_weight``'s),
so D can be taught to see a domain at one weight while G is pushed to draw it at
another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import ConfigError, TrainConfig, domain_weights
from trainer.data.vocab import Domains
from trainer.losses import ADVERSARIAL, gradient_penalty, l1_loss, total_variation
from trainer.models import build_discriminator
from trainer.models.stargan import build_stargan_generator
from trainer.modes import eval_mode, fp32
from trainer.recipes.base import Batch, Phase, Recipe, StepResult
from trainer.recipes.common import adversarial_phases, check_image_size, lazy_r1, set_pair


def domain_classification_loss(logits: torch.Tensor, target: torch.Tensor,
                                pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Official StarGAN: BCE with logits, summed over domains, mean over the batch (fp32);
    ``pos_weight`` [K] multiplies each domain's positive term (None = 1 everywhere)."""
    if pos_weight is not None:
        pos_weight = pos_weight.to(logits.device)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(),
                                              pos_weight=pos_weight,
                                              reduction="sum") / logits.shape[0]


def positive_weights(weights: dict[str, float], domains: Domains,
                     key: str = "loss.cls_pos_weight") -> torch.Tensor | None:
    """``weights`` (the option ``key``) as a [K] tensor in the domains' order (None when
    empty), checked by ``trainer.config.domain_weights``."""
    return torch.tensor(domain_weights(weights, domains, key)) if weights else None


def domain_accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of (image, domain) pairs whose logit sign matches the 0/1 target."""
    return ((logits.detach() > 0) == (target > 0.5)).float().mean()


def permuted_targets(labels: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """Target domains: the batch's own labels in a random order (official StarGAN)."""
    device = generator.device if generator is not None else labels.device
    perm = torch.randperm(labels.shape[0], generator=generator, device=device)
    return labels[perm.to(labels.device)]


def balanced_targets(labels: torch.Tensor, domains: Domains,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Target domains drawn independently of the batch: one member of each exclusive set
    uniformly, every other domain on with probability 1/2 (shape and dtype of ``labels``)."""
    device = generator.device if generator is not None else labels.device
    n, k = labels.shape
    out = (torch.rand(n, k, generator=generator, device=device) < 0.5).float()
    for group in domains.exclusive:
        idx = torch.tensor([domains.index(d) for d in group], device=device)
        pick = torch.randint(len(group), (n,), generator=generator, device=device)
        out[:, idx] = F.one_hot(pick, len(group)).float()
    return out.to(device=labels.device, dtype=labels.dtype)


TARGET_SAMPLERS = {
    "permute": lambda labels, domains, generator=None: permuted_targets(labels, generator),
    "balanced": balanced_targets,
}


class StarGanRecipe(Recipe):
    """Networks, optimizers and phases of StarGAN (see the module docstring)."""

    strip_cols = 0  # a sample row is one input and all its translations: keep it whole

    def __init__(self, cfg: TrainConfig, domains: Domains, image_size: int):
        if not isinstance(domains, Domains):
            raise ConfigError(f"recipe=stargan needs attribute domains (data.attrs=[...]); "
                              f"got {type(domains).__name__}")
        check_image_size(cfg, image_size)
        self.cfg = cfg
        self.domains = domains
        self.adv = ADVERSARIAL[cfg.loss.adv]
        self.sample_targets = TARGET_SAMPLERS[cfg.loss.targets]
        self.pos_weight = positive_weights(dict(cfg.loss.cls_pos_weight), domains)
        g_own = dict(cfg.loss.g_cls_pos_weight)  # over cls_pos_weight's, for G only
        self.g_pos_weight = positive_weights({**cfg.loss.cls_pos_weight, **g_own}, domains,
                                             "loss.g_cls_pos_weight") if g_own else self.pos_weight
        # D through the model zoo, so aug.policy augments its every input as in the GAN recipe.
        set_pair(self, build_stargan_generator(cfg, domains.n_domains),
                 build_discriminator(cfg, [domains.n_domains]), cfg)

    def phases(self) -> list[Phase]:
        """D, lazy R1 if ``loss.r1``, then G every ``g_every`` iterations (n_critic)."""
        return adversarial_phases(self.cfg, self.d_step, self.g_step, self.r1_step)

    # -- phases ---------------------------------------------------------------
    def d_step(self, batch: Batch) -> StepResult:
        """D: real vs translated fakes, gradient penalty, domain classification of reals."""
        G, D, lc = self.models["G"], self.models["D"], self.cfg.loss
        real, src_labels = batch["image"], batch["labels"]
        target = self.sample_targets(src_labels, self.domains)
        with torch.no_grad():
            fake = G(real, target, src_labels)
        src_real, cls_real = D(real)  # [B,1,h,w], [B,K]
        src_fake, _ = D(fake)
        adv = self.adv.d_loss(src_real, src_fake)
        cls = domain_classification_loss(cls_real, src_labels, self.pos_weight)
        loss = adv + lc.lambda_cls * lc.d_cls_scale * cls
        logs = {"adv": adv.detach(), "cls": cls.detach(),
                "d_real": src_real.detach().float().mean(),
                "d_fake": src_fake.detach().float().mean(),
                "cls_acc": domain_accuracy(cls_real, src_labels)}
        self.observe_real(src_real, logs)
        loss = loss + self.lecam_term(lc.lecam, src_real, src_fake, logs)
        if lc.gp > 0:
            forward = fp32(D)
            gp = gradient_penalty(lambda x: forward(x)[0], real, fake)
            loss = loss + lc.gp * gp
            logs["gp"] = gp.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def r1_step(self, batch: Batch) -> StepResult:
        """Lazy R1 on real images: gamma / 2 * E||grad_x mean src(x)||^2, times the interval."""
        forward = fp32(self.models["D"])
        return lazy_r1(self.cfg, lambda x: forward(x)[0].flatten(1).mean(1), batch["image"])

    def g_step(self, batch: Batch) -> StepResult:
        """G: fool D, be classified as the target domains, and translate back to the source."""
        G, D, lc = self.models["G"], self.models["D"], self.cfg.loss
        real, src_labels = batch["image"], batch["labels"]
        target = self.sample_targets(src_labels, self.domains)
        fake, att = G(real, target, src_labels, with_attention=True)
        src_fake, cls_fake = D(fake)  # the loop keeps D's weights out of this backward
        adv = self.adv.g_loss(src_fake)
        cls = domain_classification_loss(cls_fake, target, self.g_pos_weight)
        rec = l1_loss(G(fake, src_labels, target), real)
        loss = adv + lc.lambda_cls * cls + lc.lambda_rec * rec
        logs = {"adv": adv.detach(), "cls": cls.detach(), "rec": rec.detach(),
                "cls_acc": domain_accuracy(cls_fake, target)}
        if lc.lambda_id:
            same = l1_loss(G(real, src_labels, src_labels), real)
            loss = loss + lc.lambda_id * same
            logs["id"] = same.detach()
        if att is not None:
            mean_att = att.float().mean()
            logs["attention"] = mean_att.detach()
            if lc.lambda_mask:
                loss = loss + lc.lambda_mask * mean_att
            if lc.lambda_change:
                loss = loss + lc.lambda_change * (1 - mean_att)
            if lc.lambda_mask_tv:
                tv = total_variation(att)
                loss = loss + lc.lambda_mask_tv * tv
                logs["mask_tv"] = tv.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    # -- sampling -------------------------------------------------------------
    def fixed_inputs(self, dataset, n: int, seed: int) -> dict[str, torch.Tensor]:
        """``n // (1 + n_domains)`` real images (at least one) and their labels, fixed by seed."""
        from trainer.data.transforms import to_model_input

        rows = max(1, min(len(dataset), n // (1 + self.domains.n_domains)))
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(dataset), generator=g)[:rows].sort().values
        return {"image": to_model_input(dataset.images[idx], flip=False),
                "labels": dataset.labels[idx].float()}

    def g_inputs(self, dataset, n: int, g: torch.Generator) -> tuple:
        """(``n`` random real images, targets drawn from their labels as in training, the
        labels: G's source domains)."""
        from trainer.data.transforms import to_model_input

        idx = torch.randint(len(dataset), (n,), generator=g)
        labels = dataset.labels[idx].float()
        targets = self.sample_targets(labels, self.domains, g)
        return to_model_input(dataset.images[idx], flip=False), targets, labels

    @torch.no_grad()
    def sample(self, G: nn.Module, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Rows: a fixed real image, then its translation to each domain (Domains.grid_targets)."""
        images, nrow = translation_grid(G, self.domains, fixed["image"], fixed["labels"])
        return images, nrow


@torch.no_grad()
def translation_grid(G: nn.Module, domains: Domains, images: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """[R*(1+K), 3, S, S] (CPU float, [-1, 1]): each input followed by its K translations.

    Targets as the official test: a hair colour (exclusive set) switches its
    siblings off, any other attribute is flipped. G runs in eval mode.
    """
    targets = domains.grid_targets(labels.float().cpu().numpy())  # K x (name, [R, K])
    with eval_mode(G) as put:
        x = put(images)
        source = put(labels.float())
        outs = [x] + [G(x, put(torch.from_numpy(t)), source) for _, t in targets]
    grid = torch.stack(outs, dim=1)  # [R, 1+K, 3, S, S]
    return grid.flatten(0, 1).float().cpu(), grid.shape[1]
