"""Each loss on hand-computed inputs; the gradient penalty on critics with known gradients."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import (
    ADVERSARIAL,
    AdversarialLoss,
    LeCam,
    aux_loss,
    feature_matching_loss,
    gradient_penalty,
    group_indices,
    l1_loss,
    matching_aware_d_loss,
    mode_seeking_loss,
    r1_penalty,
    topk_count,
    total_variation,
    tv_excess_loss,
    wrong_tags,
    wrong_tags_each_group,
    wrong_tags_every_tag,
    wrong_tags_mixed,
    wrong_tags_one_group,
)

REAL = [1.0, -2.0, 0.5]
FAKE = [0.5, 3.0, -1.0]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# hand formulas: (d_loss(real, fake), g_loss(fake))
EXPECTED = {
    "bce": (mean(-math.log(sigmoid(r)) for r in REAL)
            + mean(-math.log(1 - sigmoid(f)) for f in FAKE),
            mean(math.log(1 - sigmoid(f)) for f in FAKE)),
    "ns": (mean(-math.log(sigmoid(r)) for r in REAL)
           + mean(-math.log(1 - sigmoid(f)) for f in FAKE),
           mean(-math.log(sigmoid(f)) for f in FAKE)),
    "wgan": (mean(FAKE) - mean(REAL), -mean(FAKE)),
    "lsgan": (0.5 * mean((r - 1) ** 2 for r in REAL) + 0.5 * mean(f ** 2 for f in FAKE),
              0.5 * mean((f - 1) ** 2 for f in FAKE)),
    "hinge": (mean(max(0.0, 1 - r) for r in REAL) + mean(max(0.0, 1 + f) for f in FAKE),
              -mean(FAKE)),
}


def test_registry_holds_the_five_losses():
    assert set(ADVERSARIAL) == {"bce", "ns", "wgan", "lsgan", "hinge"}
    assert all(isinstance(v, AdversarialLoss) for v in ADVERSARIAL.values())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_adversarial_losses_on_hand_computed_inputs(name):
    loss = ADVERSARIAL[name]
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    d_expected, g_expected = EXPECTED[name]
    assert loss.d_loss(real, fake).item() == pytest.approx(d_expected, rel=1e-6)
    assert loss.g_loss(fake).item() == pytest.approx(g_expected, rel=1e-6)
    assert loss.d_loss(real, fake).item() == pytest.approx(
        (loss.d_real(real) + loss.d_fake(fake)).item())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_losses_are_finite_on_extreme_logits_and_low_precision(name):
    loss = ADVERSARIAL[name]
    big = torch.tensor([1e4, -1e4], dtype=torch.bfloat16, requires_grad=True)
    d, g = loss.d_loss(big, big), loss.g_loss(big)
    assert d.dtype == g.dtype == torch.float32
    (d + g).backward()
    assert torch.isfinite(d) and torch.isfinite(g) and torch.isfinite(big.grad).all()


def test_bce_matches_torch_bce_on_probabilities():
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    ref = (torch.nn.functional.binary_cross_entropy(real.sigmoid(), torch.ones(3))
           + torch.nn.functional.binary_cross_entropy(fake.sigmoid(), torch.zeros(3)))
    assert ADVERSARIAL["ns"].d_loss(real, fake).item() == pytest.approx(ref.item(), rel=1e-6)


@pytest.mark.parametrize("w", [1.0, 0.5])
def test_matching_aware_loss_by_hand(w):
    rr, rw, fr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, -1.0]), torch.tensor([-3.0, 0.5])
    expected = (mean(softplus(-x) for x in (2.0, 0.0))
                + (mean(softplus(x) for x in (-3.0, 0.5))
                   + w * mean(softplus(x) for x in (1.0, -1.0))) / (1 + w))
    got = matching_aware_d_loss(ADVERSARIAL["ns"], rr, rw, fr, w)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    wgan = matching_aware_d_loss(ADVERSARIAL["wgan"], rr, rw, fr, w)
    assert wgan.item() == pytest.approx(-1.0 + (-1.25 + w * 0.0) / (1 + w), rel=1e-6)


# -- gradient penalty -------------------------------------------------------------
def test_gradient_penalty_of_a_linear_critic():
    a = torch.randn(3, 4, 4)
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    gp = gradient_penalty(lambda x: (x * a).flatten(1).sum(1), real, fake)
    assert gp.item() == pytest.approx((a.norm().item() - 1) ** 2, rel=1e-5)


def test_gradient_penalty_of_a_quadratic_critic_uses_the_interpolates():
    real, fake = torch.randn(6, 2, 3, 3), torch.randn(6, 2, 3, 3)
    gp = gradient_penalty(lambda x: 0.5 * x.square().flatten(1).sum(1), real, fake,
                          generator=torch.Generator().manual_seed(3))
    alpha = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(3))
    x_hat = alpha * real + (1 - alpha) * fake  # grad of 0.5||x||^2 is x
    expected = (x_hat.flatten(1).norm(dim=1) - 1).square().mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_reaches_the_critic_weights():
    critic = torch.nn.Linear(4, 1, bias=False)
    gp = gradient_penalty(lambda x: critic(x).squeeze(1), torch.randn(8, 4), torch.randn(8, 4))
    gp.backward()
    w = critic.weight.detach()
    expected = 2 * (w.norm() - 1) * w / w.norm()  # d/dw (||w|| - 1)^2
    assert torch.allclose(critic.weight.grad, expected, atol=1e-5)


def test_gradient_penalty_is_fp32_under_autocast():
    critic = torch.nn.Linear(16, 1)
    real, fake = torch.randn(4, 16), torch.randn(4, 16)
    ref = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake,
                           generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gradient_penalty(lambda x: critic(x).squeeze(1), real.bfloat16(), fake.bfloat16(),
                               generator=torch.Generator().manual_seed(0))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-2)  # inputs were rounded to bf16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        exact = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake,
                                 generator=torch.Generator().manual_seed(0))
    assert exact.item() == pytest.approx(ref.item(), rel=1e-6)


# -- tags -------------------------------------------------------------------------
GROUPS = [4, 3]


def onehots(idx: list[tuple[int, int]]) -> torch.Tensor:
    t = torch.zeros(len(idx), sum(GROUPS))
    for row, (h, e) in enumerate(idx):
        t[row, h] = 1
        t[row, GROUPS[0] + e] = 1
    return t


def test_wrong_tags_never_equal_the_right_ones_and_stay_one_hot():
    g = torch.Generator().manual_seed(0)
    right = onehots([(h, e) for h in range(4) for e in range(3)] * 200)
    wrong = wrong_tags(right, GROUPS, generator=g)
    assert wrong.shape == right.shape
    assert not (wrong == right).all(dim=1).any()
    for chunk in wrong.split(GROUPS, dim=1):
        assert torch.equal(chunk.sum(1), torch.ones(len(right)))


def test_wrong_tags_are_uniform_over_the_other_combinations():
    g = torch.Generator().manual_seed(1)
    n = 11 * 600
    wrong = wrong_tags(onehots([(2, 1)] * n), GROUPS, generator=g)
    idx = group_indices(wrong, GROUPS)
    codes = (idx[:, 0] * 3 + idx[:, 1]).bincount(minlength=12).float()
    assert codes[2 * 3 + 1] == 0
    others = torch.cat([codes[:7], codes[8:]])
    assert (others - 600).abs().max() < 0.2 * 600  # each ~600; sd ~23
    hair = idx[:, 0].bincount(minlength=4).float() / n
    assert torch.allclose(hair, torch.tensor([3, 3, 2, 3]) / 11, atol=0.03)


def test_wrong_tags_for_untagged_rows_draw_from_all_combinations():
    labels = torch.zeros(2000, sum(GROUPS))
    wrong = wrong_tags(labels, GROUPS, generator=torch.Generator().manual_seed(2))
    idx = group_indices(wrong, GROUPS)
    assert (idx >= 0).all()
    assert len(set((idx[:, 0] * 3 + idx[:, 1]).tolist())) == 12


def test_wrong_tags_are_deterministic_with_a_generator():
    right = onehots([(0, 0), (3, 2)] * 5)
    a = wrong_tags(right, GROUPS, generator=torch.Generator().manual_seed(7))
    b = wrong_tags(right, GROUPS, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_one_group_wrong_tags_change_exactly_one_group_uniformly():
    g = torch.Generator().manual_seed(3)
    n = 6000
    right = onehots([(2, 1)] * n)
    wrong = wrong_tags_one_group(right, GROUPS, generator=g)
    for chunk in wrong.split(GROUPS, dim=1):
        assert torch.equal(chunk.sum(1), torch.ones(n))
    ri, wi = group_indices(right, GROUPS), group_indices(wrong, GROUPS)
    changed = ri != wi
    assert torch.equal(changed.sum(1), torch.ones(n, dtype=torch.long))
    assert abs(changed[:, 0].float().mean() - 0.5) < 0.03  # the group: uniform
    hair = wi[changed[:, 0], 0].bincount(minlength=4).float()
    assert hair[2] == 0 and (hair[[0, 1, 3]] / hair.sum() - 1 / 3).abs().max() < 0.04
    eyes = wi[changed[:, 1], 1].bincount(minlength=3).float()
    assert eyes[1] == 0 and (eyes[[0, 2]] / eyes.sum() - 1 / 2).abs().max() < 0.04
    # deterministic with a generator
    assert torch.equal(wrong, wrong_tags_one_group(right, GROUPS,
                                                   generator=torch.Generator().manual_seed(3)))


def test_one_group_wrong_tags_keep_untagged_groups_and_skip_single_tag_groups():
    right = onehots([(1, 0)] * 400)
    right[:, GROUPS[0]:] = 0  # eyes untagged
    wi = group_indices(wrong_tags_one_group(right, GROUPS,
                                            generator=torch.Generator().manual_seed(4)), GROUPS)
    hair_changed = wi[:, 0] != 1
    assert torch.equal(wi[hair_changed, 1], torch.full((int(hair_changed.sum()),), -1))
    assert (wi[~hair_changed, 1] >= 0).all()  # the untagged group, when chosen, gets a tag
    assert 0 < hair_changed.sum() < 400
    sizes = [1, 3]  # a one-tag group cannot change: every row changes the other
    lab = torch.zeros(50, 4)
    lab[:, 0], lab[:, 1] = 1, 1
    wi = group_indices(wrong_tags_one_group(lab, sizes), sizes)
    assert (wi[:, 0] == 0).all() and (wi[:, 1] != 0).all()
    with pytest.raises(ValueError, match="two or more tags"):
        wrong_tags_one_group(torch.ones(3, 2), [1, 1])


def test_each_group_wrong_tags_are_one_draw_per_group_each_changing_that_group():
    n = 3000
    right = onehots([(2, 1)] * n)
    wrong = wrong_tags_each_group(right, GROUPS, generator=torch.Generator().manual_seed(6))
    assert wrong.shape == (len(GROUPS) * n, sum(GROUPS))
    ri = group_indices(right, GROUPS)
    for gi, draw in enumerate(wrong.split(n)):  # draw-major: block gi changes group gi only
        wi = group_indices(draw, GROUPS)
        changed = wi != ri
        assert changed[:, gi].all() and not changed[:, 1 - gi].any()
        counts = wi[:, gi].bincount(minlength=GROUPS[gi]).float()
        others = [t for t in range(GROUPS[gi]) if t != ri[0, gi]]
        assert (counts[others] / n - 1 / len(others)).abs().max() < 0.04  # uniform
    assert torch.equal(wrong, wrong_tags_each_group(right, GROUPS,
                                                    generator=torch.Generator().manual_seed(6)))
    sizes = [1, 3]  # a one-tag group has no wrong tag: one draw, for the other group
    lab = torch.zeros(50, 4)
    lab[:, 0], lab[:, 1] = 1, 1
    wi = group_indices(wrong_tags_each_group(lab, sizes), sizes)
    assert wi.shape == (50, 2) and (wi[:, 0] == 0).all() and (wi[:, 1] != 0).all()
    untagged = onehots([(1, 0)] * 20)
    untagged[:, GROUPS[0]:] = 0  # eyes untagged: the eye draw gives them a tag, hair kept
    eyes_draw = group_indices(wrong_tags_each_group(untagged, GROUPS)[20:], GROUPS)
    assert (eyes_draw[:, 0] == 1).all() and (eyes_draw[:, 1] >= 0).all()
    with pytest.raises(ValueError, match="two or more tags"):
        wrong_tags_each_group(torch.ones(3, 2), [1, 1])


def test_every_tag_wrong_tags_are_each_wrong_tag_of_each_group_once():
    right = onehots([(0, 0), (2, 1), (3, 2)])  # b = 3
    b, sizes = 3, GROUPS
    wrong = wrong_tags_every_tag(right, sizes)
    n_draws = sum(n - 1 for n in sizes)
    assert wrong.shape == (n_draws * b, sum(sizes))
    ri = group_indices(right, sizes)
    draws = [group_indices(d, sizes) for d in wrong.split(b)]
    for gi, blocks in enumerate((draws[:sizes[0] - 1], draws[sizes[0] - 1:])):
        stacked = torch.stack(blocks)  # [n_g - 1, b, G]: this group's draws
        assert (stacked[..., 1 - gi] == ri[:, 1 - gi]).all()  # the other group kept
        for row in range(b):  # each wrong tag exactly once, never the right one
            seen = sorted(stacked[:, row, gi].tolist())
            assert seen == [t for t in range(sizes[gi]) if t != ri[row, gi]]
    assert wrong.sum(dim=1).eq(2).all()  # one tag per group, still one-hot
    untagged = onehots([(1, 0)] * 2)
    untagged[:, GROUPS[0]:] = 0  # eyes untagged: scored with all but one eye tag, hair kept
    eyes = group_indices(wrong_tags_every_tag(untagged, sizes)[2 * (sizes[0] - 1):], sizes)
    assert (eyes[:, 0] == 1).all() and len(set(eyes[:, 1].tolist())) == sizes[1] - 1
    with pytest.raises(ValueError, match="two or more tags"):
        wrong_tags_every_tag(torch.ones(3, 2), [1, 1])


def test_mixed_wrong_tags_draw_half_the_rows_each_way():
    n = 6000
    right = onehots([(2, 1)] * n)
    wrong = wrong_tags_mixed(right, GROUPS, generator=torch.Generator().manual_seed(5))
    assert not (wrong == right).all(dim=1).any()
    for chunk in wrong.split(GROUPS, dim=1):
        assert torch.equal(chunk.sum(1), torch.ones(n))
    changed = (group_indices(right, GROUPS) != group_indices(wrong, GROUPS)).sum(1)
    # one_group rows change one group; uniform rows change one in 5 of 11 cases (3 other
    # hair colours with the same eyes, 2 other eye colours with the same hair)
    assert abs((changed == 1).float().mean() - (0.5 + 0.5 * 5 / 11)) < 0.03


def test_aux_loss_is_the_sum_of_per_group_cross_entropies():
    hair = torch.tensor([[2.0, 0.0, 0.0, -1.0], [0.0, 1.0, 0.0, 0.0]])
    eyes = torch.tensor([[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    labels = onehots([(0, 2), (3, 1)])

    def ce(logits: list[float], target: int) -> float:
        return -logits[target] + math.log(sum(math.exp(v) for v in logits))

    expected = (mean([ce([2.0, 0.0, 0.0, -1.0], 0), ce([0.0, 1.0, 0.0, 0.0], 3)])
                + mean([ce([0.0, 0.0, 3.0], 2), ce([1.0, 1.0, 1.0], 1)]))
    assert aux_loss([hair, eyes], labels, GROUPS).item() == pytest.approx(expected, rel=1e-6)
    labels[1, GROUPS[0]:] = 0  # second row: eyes untagged -> ignored for that group
    expected = (mean([ce([2.0, 0.0, 0.0, -1.0], 0), ce([0.0, 1.0, 0.0, 0.0], 3)])
                + ce([0.0, 0.0, 3.0], 2))
    assert aux_loss([hair, eyes], labels, GROUPS).item() == pytest.approx(expected, rel=1e-6)


def test_l1_and_feature_matching_by_hand():
    fake, real = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5, 1.0]])
    assert l1_loss(fake, real).item() == pytest.approx((0.5 + 2.0) / 2)
    rf = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean [2, 3]
    ff = torch.tensor([[0.0, 0.0], [2.0, 2.0]], requires_grad=True)  # mean [1, 1]
    fm = feature_matching_loss(rf, ff)
    assert fm.item() == pytest.approx((1.0 + 4.0) / 2)
    fm.backward()
    assert torch.allclose(ff.grad, torch.tensor([[-0.5, -1.0], [-0.5, -1.0]]))


def test_mode_seeking_by_hand():
    fa = torch.zeros(2, 3)
    fb = torch.full((2, 3), 0.5)  # mean |fa - fb| = 0.5
    za, zb = torch.zeros(2, 4), torch.full((2, 4), 2.0)  # mean |za - zb| = 2
    assert mode_seeking_loss(fa, fb, za, zb).item() == pytest.approx(1 / (0.25 + 1e-5))
    same = mode_seeking_loss(fa, fa, za, zb)  # identical images for different z: huge
    assert same.item() == pytest.approx(1e5)


def test_total_variation_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # one vertical edge: dx = 1 on 2 of 2 pairs
    assert total_variation(x).item() == 2  # summed per image
    assert total_variation(x, "mean").item() == 1  # dy mean 0 + dx mean 1
    assert total_variation(torch.ones(3, 2, 5, 5), "mean").item() == 0
    with pytest.raises(ValueError, match="reduction='max'"):
        total_variation(x, "max")


def test_tv_excess_counts_only_detail_beyond_the_real_batch():
    torch.manual_seed(0)
    real = torch.zeros(4, 3, 8, 8)
    real[..., 4:] = 1.0  # flat halves with one edge
    flat = torch.zeros(4, 3, 8, 8, requires_grad=True)  # flatter than the data: no penalty
    assert tv_excess_loss(flat, real).item() == 0
    noisy = (real + 0.3 * torch.randn_like(real)).requires_grad_(True)
    loss = tv_excess_loss(noisy, real)
    excess = total_variation(noisy, "mean") - total_variation(real, "mean")
    assert loss.item() == pytest.approx(excess.item()) and loss.item() > 0
    loss.backward()  # the gradient smooths the fake: a step against it lowers the excess
    with torch.no_grad():
        assert tv_excess_loss(noisy - 0.01 * noisy.grad / noisy.grad.abs().max(), real) < loss


def test_r1_on_a_quadratic_critic():
    """D(x) = 0.5 * sum(a * x^2): grad = a * x, so R1 = mean over images of sum (a x)^2."""
    torch.manual_seed(0)
    a = torch.rand(3, 4, 4) + 0.5
    x = torch.randn(5, 3, 4, 4)
    r1 = r1_penalty(lambda v: 0.5 * (a * v.square()).flatten(1).sum(1), x)
    assert r1.item() == pytest.approx((a * x).square().flatten(1).sum(1).mean().item(), rel=1e-5)


def test_r1_matches_finite_differences_and_reaches_d_weights():
    torch.manual_seed(1)
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(),
                            torch.nn.Linear(8, 1)).double()
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    r1 = r1_penalty(lambda v: D(v.double()).flatten(), x)
    # finite-difference gradient of D's score with respect to every input coordinate
    eps, grads = 1e-6, torch.zeros_like(x)
    with torch.no_grad():
        flat = x.reshape(4, -1)
        for j in range(flat.shape[1]):
            e = torch.zeros_like(flat)
            e[:, j] = eps
            up = D((flat + e).reshape_as(x)).flatten()
            down = D((flat - e).reshape_as(x)).flatten()
            grads.reshape(4, -1)[:, j] = (up - down) / (2 * eps)
    assert r1.item() == pytest.approx(grads.flatten(1).square().sum(1).mean().item(), rel=1e-4)
    r1.backward()  # the graph is kept: the penalty trains D's weights (biases don't shape grad_x)
    weights = [p for p in D.parameters() if p.dim() > 1]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


def test_r1_stays_fp32_under_autocast():
    D = torch.nn.Conv2d(3, 1, 3)
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r1 = r1_penalty(lambda v: D(v).flatten(1).mean(1), x)
    assert r1.dtype == torch.float32


def test_pooled_mode_seeking_does_not_count_pixel_noise_as_variety():
    base = torch.rand(2, 3, 8, 8)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2 - 1.0  # mean 0 per 2x2
    noisy = base + 0.5 * checker
    z_a, z_b = torch.zeros(2, 4), torch.ones(2, 4)
    raw = mode_seeking_loss(noisy, base, z_a, z_b)
    pooled = mode_seeking_loss(noisy, base, z_a, z_b, pool=2)
    assert raw.item() == pytest.approx(1 / (0.5 + 1e-5), rel=1e-4)  # the noise looks like variety
    assert pooled.item() > 1e4  # pooled, the two images are the same: no credit


def lecam_by_hand(real, fake, ema_real, ema_fake) -> float:
    return (mean(max(r - ema_fake, 0.0) ** 2 for r in real)
            + mean(max(ema_real - f, 0.0) ** 2 for f in fake))


def test_lecam_pulls_each_side_towards_the_other_sides_average():
    """The first call sets the averages to the batch means; later calls move them by
    1 - decay; the penalty is relu(real - ema_fake)^2 + relu(ema_real - fake)^2."""
    reg = LeCam(decay=0.75)
    out = reg(torch.tensor(REAL), torch.tensor(FAKE))
    er, ef = mean(REAL), mean(FAKE)
    assert out.item() == pytest.approx(lecam_by_hand(REAL, FAKE, er, ef), rel=1e-6)
    real2, fake2 = [3.0, 2.0], [-4.0, 0.0, -2.0, 1.0]
    out = reg(torch.tensor(real2), torch.tensor(fake2))
    er, ef = 0.75 * er + 0.25 * mean(real2), 0.75 * ef + 0.25 * mean(fake2)
    assert reg.ema.tolist() == pytest.approx([er, ef, 2.0])
    assert out.item() == pytest.approx(lecam_by_hand(real2, fake2, er, ef), rel=1e-6)


def test_lecam_gradient_reaches_the_scores_not_the_averages():
    """Only logits beyond the other side's average get a gradient: 2 (real - ema_fake) / n
    for each such real logit, -2 (ema_real - fake) / n for each such fake one; the averages
    are constants of the penalty."""
    reg = LeCam(decay=0.0)
    real = torch.tensor([2.0, -3.0], requires_grad=True)  # ema_real -0.5
    fake = torch.tensor([-2.0, 0.0], requires_grad=True)  # ema_fake -1.0
    out = reg(real, fake)
    assert out.item() == pytest.approx(lecam_by_hand([2.0, -3.0], [-2.0, 0.0], -0.5, -1.0))
    out.backward()
    assert real.grad.tolist() == pytest.approx([2 * (2.0 + 1.0) / 2, 0.0])
    assert fake.grad.tolist() == pytest.approx([-2 * (-0.5 + 2.0) / 2, 0.0])
    assert out.grad_fn is not None and reg.ema.grad is None


def test_lecam_averages_pool_every_process(monkeypatch):
    """Under DDP each process adds the others' sums before averaging: the averages are the
    means over all processes' logits, the same on each (a second process simulated)."""
    import trainer.losses as losses

    other = torch.tensor([10.0, -6.0, 2.0, 2.0])  # another process: real sum, fake sum, counts
    monkeypatch.setattr(losses, "process_sum", lambda t: t + other.to(t))
    reg = LeCam()
    reg(torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0]))
    assert reg.ema.tolist() == pytest.approx([(4.0 + 10.0) / 4, (-2.0 - 6.0) / 4, 1.0])


def test_lecam_is_fp32_under_bf16_logits():
    reg = LeCam()
    out = reg(torch.tensor(REAL, dtype=torch.bfloat16), torch.tensor(FAKE, dtype=torch.bfloat16))
    assert out.dtype == torch.float32 and reg.ema.dtype == torch.float32


def test_topk_count_decays_per_epoch_to_its_floor():
    """StudioGAN's schedule: batch x gamma^epoch, never below nu x batch, at least one."""
    assert [topk_count(16, e, 0.93, 0.75) for e in range(6)] == [16, 14, 13, 12, 12, 12]
    assert topk_count(16, 50, 1.0, 0.5) == 16  # gamma 1: no decay
    assert topk_count(16, 50, 0.5, 1.0) == 16  # nu 1: off
    assert topk_count(4, 10, 0.5, 0.01) == 1
    assert topk_count(100, 50, 0.5, 0.58) == 58  # 0.58 x 100 is 57.999... in floats
