"""GAN losses on discriminator logits: adversarial registry, gradient penalty, conditional terms.

Every adversarial loss splits the D loss into a term for samples D should call
real and one for samples it should call fake, so the matching-aware loss (a
real image with wrong tags counts as fake) works with each of them. Adding a
loss is one class here and one line in ``ADVERSARIAL``: the config's choices
for ``loss.adv`` are read from it, and nothing else branches on loss names. All terms are computed in fp32 from logits (softplus, never
log(sigmoid)), so they stay finite under bf16/fp16 autocast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainer.collectives import process_sum
from trainer.modes import full_precision


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float()


class AdversarialLoss:
    """D minimises ``d_real(real) + d_fake(fake)``; G minimises ``g_loss(fake)``."""

    def d_real(self, scores: torch.Tensor) -> torch.Tensor:
        """Loss for logits D should call real."""
        raise NotImplementedError

    def d_fake(self, scores: torch.Tensor) -> torch.Tensor:
        """Loss for logits D should call fake."""
        raise NotImplementedError

    def g_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return self.d_real(real_scores) + self.d_fake(fake_scores)


class MinimaxBCE(AdversarialLoss):
    """Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))).

    G minimises log(1 - D(G(z))) (saturates when D wins early).
    """

    def d_real(self, scores):
        return F.softplus(-_f32(scores)).mean()  # -log sigmoid(s)

    def d_fake(self, scores):
        return F.softplus(_f32(scores)).mean()  # -log(1 - sigmoid(s))

    def g_loss(self, fake_scores):
        return -F.softplus(_f32(fake_scores)).mean()  # log(1 - sigmoid(s))


class NonSaturatingBCE(MinimaxBCE):
    """The practical variant (report 001 tip 2): G maximises log D(G(z))."""

    def g_loss(self, fake_scores):
        return F.softplus(-_f32(fake_scores)).mean()  # -log sigmoid(s)


class Wasserstein(AdversarialLoss):
    """WGAN (Arjovsky et al. 2017): critic maximises E[D(x)] - E[D(G(z))]; add clipping or GP."""

    def d_real(self, scores):
        return -_f32(scores).mean()

    def d_fake(self, scores):
        return _f32(scores).mean()

    def g_loss(self, fake_scores):
        return -_f32(fake_scores).mean()


class LeastSquares(AdversarialLoss):
    """LSGAN (Mao et al. 2017), a=0, b=c=1: 1/2 E[(D(x)-1)^2] + 1/2 E[D(G(z))^2]."""

    def d_real(self, scores):
        return 0.5 * (_f32(scores) - 1).square().mean()

    def d_fake(self, scores):
        return 0.5 * _f32(scores).square().mean()

    def g_loss(self, fake_scores):
        return 0.5 * (_f32(fake_scores) - 1).square().mean()


class Hinge(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; SNGAN, BigGAN): E[relu(1-D(x))] + E[relu(1+D(G(z)))]."""

    def d_real(self, scores):
        return F.relu(1 - _f32(scores)).mean()

    def d_fake(self, scores):
        return F.relu(1 + _f32(scores)).mean()

    def g_loss(self, fake_scores):
        return -_f32(fake_scores).mean()


ADVERSARIAL: dict[str, AdversarialLoss] = {
    "bce": MinimaxBCE(),
    "ns": NonSaturatingBCE(),
    "wgan": Wasserstein(),
    "lsgan": LeastSquares(),
    "hinge": Hinge(),
}


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],  # x [B, ...] -> scores [B]; must stay fp32
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,  # for the interpolation weights
    target: float = 1.0,  # the norm the penalty pulls towards (WGAN-GP: 1)
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_x D(x_hat)||_2 - target)^2].

    ``x_hat`` lies uniformly on the line between paired real and fake samples.
    Computed in fp32 with autocast disabled; ``critic`` must not re-enable it
    (pass ``trainer.modes.fp32(D)``, not an autocast-wrapped forward). The
    graph is kept so the penalty's gradient reaches D's weights. Plain
    ``autograd.grad`` is right under DDP when the loop all-reduces gradients
    itself (no reducer hooks fire on the inner gradient).
    """
    with full_precision(real.device.type):
        real, fake = real.detach().float(), fake.detach().float()
        alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator,
                           device=real.device if generator is None else generator.device)
        alpha = alpha.to(real.device)
        x_hat = torch.lerp(fake, real, alpha).requires_grad_(True)  # alpha*real + (1-alpha)*fake
        scores = critic(x_hat).float()
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
        norm = grad.flatten(1).norm(2, dim=1)  # [B]
        return (norm - target).square().mean()


def r1_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],  # x [B, ...] -> scores [B]; must stay fp32
    real: torch.Tensor,
) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||^2] on real images only.

    The caller weighs it by gamma / 2 (and, lazily, by the interval, as StyleGAN2).
    fp32 with autocast disabled, graph kept, as ``gradient_penalty``.
    """
    with full_precision(real.device.type):
        x = real.detach().float().requires_grad_(True)
        scores = critic(x).float()
        (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
        return grad.flatten(1).square().sum(dim=1).mean()


class LeCam(nn.Module):
    """LeCam regularisation (Tseng et al. 2021), for GANs trained on little data.

    Keeps moving averages of D's mean logit on real and on fake images and penalises each
    logit that lies beyond the other side's average:
    ``E[relu(D(real) - ema_fake)^2] + E[relu(ema_real - D(fake))^2]``. This discourages D
    from pushing real and fake logits ever further apart, as a D that memorises a small
    dataset does. Lives in D (buffers: saved with its checkpoint, one value on every
    process: the averages are of the means over all processes). No host sync per step.
    """

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = float(decay)
        # ema_real, ema_fake, and the number of updates (0: the first sets the averages)
        self.register_buffer("ema", torch.zeros(3))

    def extra_repr(self) -> str:
        return f"decay={self.decay}"

    def forward(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        """Update the averages with this batch's means, then the penalty (fp32)."""
        real, fake = _f32(real_scores).flatten(), _f32(fake_scores).flatten()
        with torch.no_grad():
            sums = torch.stack([real.sum(), fake.sum(),
                                torch.tensor(float(real.numel()), device=real.device),
                                torch.tensor(float(fake.numel()), device=real.device)])
            sums = process_sum(sums.to(self.ema))
            means = sums[:2] / sums[2:].clamp(min=1)
            d = (self.ema[2] > 0).to(means) * self.decay  # 0 on the first update
            self.ema[:2] = d * self.ema[:2] + (1 - d) * means
            self.ema[2] += 1
        ema_real, ema_fake = self.ema[0].detach(), self.ema[1].detach()
        return F.relu(real - ema_fake).square().mean() + F.relu(ema_real - fake).square().mean()


def matching_aware_d_loss(
    adv: AdversarialLoss,
    real_right: torch.Tensor,  # scores of (real image, its tags)
    real_wrong: torch.Tensor,  # scores of (real image, wrong tags)
    fake_right: torch.Tensor,  # scores of (fake image, the tags it was drawn for)
    wrong_weight: float = 1.0,
) -> torch.Tensor:
    """The three-case conditional D loss (reports 001/002; GAN-CLS, Reed et al. 2016).

    ``d_real(real_right) + (d_fake(fake_right) + w * d_fake(real_wrong)) / (1 + w)``:
    both kinds of mismatch count as fake, averaged so the real and the fake
    side keep equal weight (w = 1 is Reed et al.'s 1/2 + 1/2).
    """
    neg = (adv.d_fake(fake_right) + wrong_weight * adv.d_fake(real_wrong)) / (1.0 + wrong_weight)
    return adv.d_real(real_right) + neg


def group_indices(labels: torch.Tensor, group_sizes: Sequence[int]) -> torch.Tensor:
    """Per-group arg-max of concatenated one-hots: [B, K] -> long [B, n_groups], -1 if untagged."""
    out = []
    for chunk in labels.split(list(group_sizes), dim=1):
        idx = chunk.argmax(dim=1)
        out.append(torch.where(chunk.amax(dim=1) > 0, idx, torch.full_like(idx, -1)))
    return torch.stack(out, dim=1)


def wrong_tags(
    labels: torch.Tensor,  # [B, K] concatenated one-hots (the right tags)
    group_sizes: Sequence[int],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Wrong tags drawn uniformly from the vocabulary (report 002), never equal to the right ones.

    Each row gets a combination drawn uniformly from all combinations except its
    own (a uniform draw over the vocabulary, redrawn in one step if it hit the
    right one), so every group's tag is close to uniform and the rare tags of
    a skewed dataset are used as often as common ones. A row with an untagged
    group has no right combination to avoid and draws from all of them.
    """
    sizes = list(group_sizes)
    total = math.prod(sizes)
    if total < 2:
        raise ValueError(f"tag groups {sizes}: need at least two tag combinations for wrong tags")
    b, device = labels.shape[0], labels.device
    right = group_indices(labels, sizes)  # [B, G]
    tagged = (right >= 0).all(dim=1)
    code = torch.zeros(b, dtype=torch.long, device=device)
    for gi, n in enumerate(sizes):  # mixed-radix code of the right combination
        code = code * n + right[:, gi].clamp(min=0)
    gdev = generator.device if generator is not None else device
    r = torch.randint(0, total, (b,), generator=generator, device=gdev).to(device)
    r_other = torch.randint(0, total - 1, (b,), generator=generator, device=gdev).to(device)
    r_other = r_other + (r_other >= code).long()  # uniform over the other total-1 combinations
    r = torch.where(tagged, r_other, r)
    idx = torch.empty_like(right)
    for gi in reversed(range(len(sizes))):  # mixed-radix digits of the drawn combination
        idx[:, gi] = r % sizes[gi]
        r = r // sizes[gi]
    return one_hots(idx, sizes, like=labels)


def one_hots(idx: torch.Tensor, group_sizes: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """Per-group indices [B, G] (-1 = untagged) -> concatenated one-hots shaped like ``like``."""
    out = torch.zeros_like(like)
    rows = torch.arange(idx.shape[0], device=idx.device)
    offset = 0
    for gi, size in enumerate(group_sizes):
        tagged = idx[:, gi] >= 0
        out[rows[tagged], offset + idx[tagged, gi]] = 1
        offset += size
    return out


def _change_group(
    labels: torch.Tensor,  # [B, K] concatenated one-hots (the right tags)
    right: torch.Tensor,  # [B, G] their per-group indices (group_indices)
    sizes: list[int],
    group: torch.Tensor,  # long [B]: the group each row changes
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``labels`` with each row's ``group`` moved to another of its tags, drawn uniformly
    (an untagged chosen group gets any of its tags); the other groups kept."""
    b, device = labels.shape[0], labels.device
    gdev = generator.device if generator is not None else device
    rows = torch.arange(b, device=device)
    n = torch.tensor(sizes, device=device)[group]  # [B] tags in the chosen group
    cur = right[rows, group]
    u = torch.rand(b, generator=generator, device=gdev).to(device)
    other = (u * (n - 1)).long().clamp(max=n - 2)  # uniform over the n - 1 other tags
    other = other + (other >= cur).long()
    anyone = (u * n).long().clamp(max=n - 1)  # untagged: uniform over all n
    new = right.clone()
    new[rows, group] = torch.where(cur >= 0, other, anyone)
    return one_hots(new, sizes, like=labels)


def _changeable(sizes: list[int]) -> list[int]:
    """The groups a wrong tag can change: those with two or more tags."""
    groups = [gi for gi, n in enumerate(sizes) if n >= 2]
    if not groups:
        raise ValueError(f"tag groups {sizes}: need a group with two or more tags for wrong tags")
    return groups


def wrong_tags_one_group(
    labels: torch.Tensor,  # [B, K] concatenated one-hots (the right tags)
    group_sizes: Sequence[int],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Wrong tags that differ from the right ones in exactly one group (hard negatives).

    Each row changes one group, chosen uniformly among the groups with two or more
    tags, to another of its tags drawn uniformly; the other groups keep theirs
    (untagged ones stay untagged; an untagged chosen group gets any of its tags). With
    uniform draws over 12 hair x 10 eye colours the hair alone gives away 110 of the
    119 wrong combinations, so D can pass the matching-aware case without looking at
    the eyes; here half of the wrong pairs have the right hair and a wrong eye colour.
    """
    sizes = list(group_sizes)
    b = labels.shape[0]
    gdev = generator.device if generator is not None else labels.device
    can = torch.zeros(len(sizes), device=gdev)
    can[_changeable(sizes)] = 1.0
    group = torch.multinomial(can.expand(b, -1), 1, generator=generator).squeeze(1)  # [B]
    return _change_group(labels, group_indices(labels, sizes), sizes, group.to(labels.device),
                         generator)


def wrong_tags_each_group(
    labels: torch.Tensor,  # [B, K] concatenated one-hots (the right tags)
    group_sizes: Sequence[int],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One wrong draw per tag group, each changing that group only: [n * B, K], draw-major.

    Every real image is scored once with a wrong hair colour (its eyes kept) and once
    with a wrong eye colour (its hair kept), where ``one_group`` shows each image one
    of the two: every group gets the signal of every row. D's trunk still runs once;
    only its head scores the extra rows, and the loss averages over the draws.
    """
    sizes = list(group_sizes)
    right = group_indices(labels, sizes)  # [B, G], shared by the draws
    b, device = labels.shape[0], labels.device
    return torch.cat([_change_group(labels, right, sizes,
                                    torch.full((b,), gi, dtype=torch.long, device=device),
                                    generator)
                      for gi in _changeable(sizes)])


def wrong_tags_every_tag(
    labels: torch.Tensor,  # [B, K] concatenated one-hots (the right tags)
    group_sizes: Sequence[int],
    generator: torch.Generator | None = None,  # unused: nothing is drawn
) -> torch.Tensor:
    """Every wrong tag of every group, each changing that group only: [sum(n - 1) * B, K],
    draw-major (group by group, then the tags after the right one in turn).

    ``each_group`` shows each image one wrong hair colour and one wrong eye colour per
    step; here it is scored with all 11 wrong hair colours and all 9 wrong eye colours,
    so D compares every image's eyes with every other eye colour at every step, as a
    classifier's softmax does. Only D's head scores the rows (the trunk runs once), and
    the loss averages over them, so the wrong pairs weigh what they weigh with one draw.
    An untagged group is scored with all but one of its tags.
    """
    sizes = list(group_sizes)
    right = group_indices(labels, sizes)  # [B, G]
    out = []
    for gi in _changeable(sizes):
        for shift in range(1, sizes[gi]):
            new = right.clone()
            new[:, gi] = (right[:, gi].clamp(min=0) + shift) % sizes[gi]
            out.append(one_hots(new, sizes, like=labels))
    return torch.cat(out)


def wrong_tags_mixed(
    labels: torch.Tensor,  # [B, K] concatenated one-hots (the right tags)
    group_sizes: Sequence[int],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Each row drawn as ``uniform`` or as ``one_group``, with probability 1/2 each."""
    gdev = generator.device if generator is not None else labels.device
    a = wrong_tags(labels, group_sizes, generator)
    b = wrong_tags_one_group(labels, group_sizes, generator)
    pick = torch.rand(labels.shape[0], generator=generator, device=gdev).to(labels.device) < 0.5
    return torch.where(pick[:, None], a, b)


# loss.wrong_tags -> how the matching-aware case draws its wrong tags
WRONG_TAGS = {"uniform": wrong_tags, "one_group": wrong_tags_one_group,
              "mixed": wrong_tags_mixed, "each_group": wrong_tags_each_group,
              "every_tag": wrong_tags_every_tag}


def aux_loss(
    logits: Sequence[torch.Tensor],  # one [B, n_g] tensor per tag group
    labels: torch.Tensor,  # [B, K] concatenated one-hots
    group_sizes: Sequence[int],
) -> torch.Tensor:
    """Auxiliary classification (ACGAN, report 004): sum over groups of cross-entropy.

    Rows whose group is untagged (all zeros) are ignored for that group.
    """
    target = group_indices(labels, group_sizes)
    total = labels.new_zeros((), dtype=torch.float32)
    for gi, lg in enumerate(logits):
        t = target[:, gi]
        if (t >= 0).any():
            total = total + F.cross_entropy(lg.float(), t, ignore_index=-1)
    return total


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """G's extra L1 to real images of the same tags (report 000, after Text-to-Image-Synthesis)."""
    return (fake.float() - real.float()).abs().mean()


def total_variation(x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Absolute differences between neighbouring pixels, in fp32.

    ``sum``: summed per image, averaged over the batch (GANimation's smoothness term
    on a mask; per image keeps the weight batch-independent). ``mean``: per pixel and
    direction, summed over the two directions (a resolution-independent measure of
    an image's detail: ~0.18 for the avatars in [-1, 1]).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction={reduction!r}: expected 'sum' or 'mean'")
    x = x.float()
    dy, dx = (x[..., 1:, :] - x[..., :-1, :]).abs(), (x[..., :, 1:] - x[..., :, :-1]).abs()
    if reduction == "mean":
        return dy.mean() + dx.mean()
    return (dy.sum() + dx.sum()) / x.shape[0]


def tv_excess_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """G's penalty on detail beyond the data's: relu(TV(fake) - TV(real)), per-pixel TV.

    Flat-colour art has flat regions; a generator that speckles them carries more
    neighbour-to-neighbour variation than the real batch. Only the excess over the
    batch as a whole counts, so G is not pushed to draw flatter than the data on
    average; where it smooths is its own choice, and on the avatars it smooths the
    irises too (eye accuracy falls at every weight tried, docs/cgan_avatars.md).
    """
    excess = total_variation(fake, "mean") - total_variation(real, "mean").detach()
    return excess.clamp_min(0)


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """G's feature matching (Salimans et al. 2016; report 000): ||E f(real) - E f(fake)||^2 / F."""
    return (real_features.detach().float().mean(0) - fake_features.float().mean(0)).square().mean()


def topk_count(batch: int, epoch: int, gamma: float, nu: float) -> int:
    """Top-k training (Sinha et al. 2020): how many of G's ``batch`` fakes its loss keeps.

    StudioGAN's schedule: ``batch x gamma^epoch`` in data epoch ``epoch``, never fewer than
    ``nu x batch`` (rounded down, as StudioGAN's ``int``), and at least one. G then learns
    from the fakes D already finds most real; the worst, whose gradients point anywhere,
    are left out.
    """
    k = max(batch * gamma ** epoch, nu * batch)
    return max(1, min(batch, int(k + 1e-6)))  # 1e-6: 0.58 x 100 is 57.999... in floats


def mode_seeking_loss(fake_a: torch.Tensor, fake_b: torch.Tensor, z_a: torch.Tensor,
                      z_b: torch.Tensor, eps: float = 1e-5, pool: int = 1) -> torch.Tensor:
    """MSGAN (Mao et al. 2019): 1 / (mean|G(z_a, c) - G(z_b, c)| / mean|z_a - z_b| + eps).

    Pairs share their tags, so the term grows when G draws the same image for
    different z: the conditional mode collapse that tag accuracy cannot see.
    ``pool > 1`` measures the distance on images average-pooled by that factor:
    per-pixel noise that differs between z then no longer counts as variety, only
    differences of shape and colour at that scale do (MSGAN measures raw pixels).
    """
    if pool > 1:
        fake_a, fake_b = F.avg_pool2d(fake_a.float(), pool), F.avg_pool2d(fake_b.float(), pool)
    ratio = (fake_a.float() - fake_b.float()).abs().mean() / (z_a - z_b).abs().mean()
    return 1.0 / (ratio + eps)
