"""GanRecipe: phase steps on a tiny batch, the clipping hook, intervals, optimizers, samples."""

from __future__ import annotations

import types

import pytest
import torch

from trainer.config import ConfigError, load_config
from trainer.data.vocab import mlds_vocab
from trainer.losses import gradient_penalty, group_indices
from trainer.modes import bare_forward
from trainer.recipes.gan import GanRecipe, mean_tags

VOCAB = mlds_vocab()
TINY = ["data.size=32", "model.g_ch=8", "model.d_ch=8", "model.z_dim=16", "model.tag_embed=8",
        "model.d_tag_embed=8", "model.d_hidden=16"]

SETUPS = {
    "dcgan": [],
    "cgan_dense_hinge_sn": ["model.cond=dense", "loss.adv=hinge", "model.spectral_norm=true",
                            "model.d_bn=false", "model.minibatch_std=true",
                            "loss.matching_aware=true"],
    "cgan_spatial_bce": ["model.cond=spatial", "loss.adv=bce", "loss.matching_aware=true"],
    "projection_lsgan_l1_fm": ["model.cond=projection", "loss.adv=lsgan", "loss.l1=1.0",
                               "loss.feature_matching=1.0", "model.arch=ml2020"],
    "acgan_wgan_gp": ["model.cond=acgan", "loss.adv=wgan", "loss.gp=10", "model.d_bn=false"],
    "projection_joint_batch": ["model.cond=projection", "loss.matching_aware=true",
                               "model.minibatch_std=true", "loss.joint_batch=true",
                               "loss.mode_seeking=1.0"],
    "projection_acgan_each_group": ["model.cond=projection_acgan", "loss.matching_aware=true",
                                    "loss.wrong_tags=each_group", "model.minibatch_std=true"],
    "wgan_clip": ["loss.adv=wgan", "loss.clip=0.01", "g_optim.name=rmsprop",
                  "d_optim.name=rmsprop", "g_optim.lr=5e-5", "d_optim.lr=5e-5"],
}


def make(*overrides: str, vocab=VOCAB) -> GanRecipe:
    return GanRecipe(load_config(None, TINY + list(overrides)), vocab, 32)


def batch(b: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randint(12, (b,), generator=g),
                       torch.randint(10, (b,), generator=g)], dim=1)
    return {"image": torch.rand(b, 3, 32, 32, generator=g) * 2 - 1,
            "labels": torch.from_numpy(VOCAB.encode_indices(idx.numpy()))}


def run_phase(recipe: GanRecipe, name: str, data) -> dict[str, torch.Tensor]:
    phase = next(p for p in recipe.phases() if p.name == name)
    for m in recipe.models.values():
        m.zero_grad(set_to_none=True)
    loss, logs = phase.step(data)
    loss.backward()
    recipe.optimizers[phase.model].step()
    if phase.after is not None:
        phase.after()
    return logs


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_one_d_and_one_g_step_give_finite_losses(setup):
    torch.manual_seed(0)
    recipe = make(*SETUPS[setup])
    D_before = [p.detach().clone() for p in recipe.models["D"].parameters()]
    logs = run_phase(recipe, "D", batch())
    assert any(not torch.equal(a, p) for a, p in zip(D_before, recipe.models["D"].parameters(),
                                                     strict=True))
    for k, v in logs.items():
        assert v.dim() == 0 and not v.requires_grad and torch.isfinite(v), k
    assert {"loss", "adv", "d_real", "d_fake"} <= logs.keys()
    cfg = recipe.cfg
    assert ("d_wrong" in logs) == cfg.loss.matching_aware
    assert ("gp" in logs) == (cfg.loss.gp > 0)
    assert ("aux" in logs) == cfg.model.cond.endswith("acgan")

    logs = run_phase(recipe, "G", batch(seed=1))
    for k, v in logs.items():
        assert v.dim() == 0 and not v.requires_grad and torch.isfinite(v), k
    assert all(p.grad is None for p in recipe.models["D"].parameters())  # G phase leaves D alone
    assert all(p.grad is not None for p in recipe.models["G"].parameters())
    assert all(p.requires_grad for p in recipe.models["D"].parameters())
    if cfg.loss.l1:
        assert {"l1", "fm"} <= logs.keys()


def test_clip_hook_clips_every_d_weight():
    recipe = make(*SETUPS["wgan_clip"])
    d_phase = recipe.phases()[0]
    with torch.no_grad():
        for p in recipe.models["D"].parameters():
            p.normal_(0, 1)
    d_phase.after()
    assert all(p.abs().max() <= 0.01 for p in recipe.models["D"].parameters())
    assert make().phases()[0].after is None


def test_phase_intervals_come_from_the_config():
    d, g = make("d_every=2", "d_repeat=3", "g_every=5", "g_repeat=2").phases()
    assert (d.name, d.model, d.every, d.repeat) == ("D", "D", 2, 3)
    assert (g.name, g.model, g.every, g.repeat) == ("G", "G", 5, 2)


def test_optimizers_follow_the_config():
    r = make("g_optim.name=sgd", "g_optim.lr=0.01", "g_optim.momentum=0.9",
             "d_optim.betas=[0.0,0.9]", "d_optim.lr=1e-4")
    g, d = r.optimizers["G"], r.optimizers["D"]
    assert isinstance(g, torch.optim.SGD) and isinstance(d, torch.optim.Adam)
    assert g.param_groups[0]["lr"] == 0.01 and g.param_groups[0]["momentum"] == 0.9
    assert d.param_groups[0]["betas"] == (0.0, 0.9) and d.param_groups[0]["lr"] == 1e-4
    rms = make("d_optim.name=rmsprop").optimizers["D"]
    assert isinstance(rms, torch.optim.RMSprop)
    n_g = sum(p.numel() for p in r.models["G"].parameters())
    assert sum(p.numel() for grp in g.param_groups for p in grp["params"]) == n_g


def test_conditional_config_needs_a_tag_vocabulary():
    with pytest.raises(ConfigError, match="model.cond"):
        make("model.cond=dense", vocab=None)
    assert make(vocab=None).models["G"].n_cond == 0


def test_gradient_penalty_bypasses_an_autocast_patched_forward():
    """Accelerate wraps forward in autocast; the recipe's penalty must stay fp32."""
    recipe = make(*SETUPS["acgan_wgan_gp"])
    D = recipe.models["D"]
    real, fake = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    tags = batch()["labels"]

    def gp(critic):  # target 0: the mean squared gradient norm, sensitive to precision
        return gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0),
                                target=0.0)

    ref = gp(lambda x: D(x, tags).score)
    original = type(D).forward

    def autocast_forward(self, *a, **k):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return original(self, *a, **k)

    D.forward = types.MethodType(autocast_forward, D)
    lowp = gp(lambda x: D(x, tags).score)
    fwd = bare_forward(torch.nn.DataParallel(D))  # wrappers are skipped too
    exact = gp(lambda x: fwd(x, tags).score)
    assert exact.item() == pytest.approx(ref.item(), rel=1e-5)
    assert lowp.item() != pytest.approx(ref.item(), rel=1e-5)  # the patch really lowers precision


def test_fixed_inputs_are_deterministic_and_leave_the_global_rng_alone():
    r = make("model.cond=dense")
    state = torch.get_rng_state()
    a, b = r.fixed_inputs(None, 64, seed=3), r.fixed_inputs(None, 64, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a["z"], b["z"]) and torch.equal(a["tags"], b["tags"])
    z, tags = a["z"].reshape(8, 8, -1), a["tags"].reshape(8, 8, -1)
    assert torch.equal(z[0], z[5])  # each column one z
    assert torch.equal(tags[:, 0], tags[:, 7])  # each row one tag combination
    hair = tags[:, 0, :12].argmax(1)
    assert hair.tolist() == list(range(8))  # hair colour cycles down the rows
    assert not torch.equal(r.fixed_inputs(None, 64, seed=4)["z"], a["z"])
    u = make().fixed_inputs(None, 10, seed=0)
    assert set(u) == {"z"} and u["z"].shape == (10, 16)


def test_sample_and_final_grids():
    r = make("model.cond=dense")
    G = r.models["G"]
    G.train()
    images, nrow = r.sample(G, r.fixed_inputs(None, 64, seed=0))
    assert images.shape == (64, 3, 32, 32) and nrow == 8
    assert images.dtype == torch.float32 and images.abs().max() <= 1
    assert G.training  # mode restored
    grids = r.final_grids(G, None, seed=0)
    same_tags, n1 = grids["same_tags_different_noise"]
    same_noise, n2 = grids["same_noise_different_tags"]
    assert same_tags.shape == (64, 3, 32, 32) and n1 == 8
    assert same_noise.shape == (8 * 12, 3, 32, 32) and n2 == 12
    assert make().final_grids(make().models["G"], None, seed=0) == {}


def test_wrong_tags_reuse_the_trunk_and_score_as_a_separate_call():
    r = make(*SETUPS["cgan_dense_hinge_sn"])
    D = r.models["D"].eval()  # eval: no power iteration, so repeated calls are comparable
    data = batch(8)
    tags = data["labels"].float()
    wrong = torch.roll(tags, 1, dims=0)
    both = D(data["image"], tags, wrong)
    assert torch.allclose(both.score, D(data["image"], tags).score, atol=1e-6)
    assert torch.allclose(both.score_wrong, D(data["image"], wrong).score, atol=1e-6)
    assert D(data["image"], tags).score_wrong is None


def test_several_wrong_draws_share_the_trunk_and_score_draw_major():
    r = make(*SETUPS["cgan_dense_hinge_sn"])
    D = r.models["D"].eval()
    data = batch(6)
    tags = data["labels"].float()
    w1, w2 = torch.roll(tags, 1, dims=0), torch.roll(tags, 2, dims=0)
    out = D(data["image"], tags, torch.cat([w1, w2]))
    assert out.score_wrong.shape == (12,)
    assert torch.allclose(out.score_wrong[:6], D(data["image"], w1).score, atol=1e-6)
    assert torch.allclose(out.score_wrong[6:], D(data["image"], w2).score, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of the 6 images"):
        D(data["image"], tags, tags[:4])


def d_phase_with_wrong_tags(r, b: int) -> tuple[dict, tuple]:
    """Run ``r``'s D phase on ``b`` images; its logs and D's one call with wrong tags
    (images, right tags, wrong tags, output)."""
    D, seen = r.models["D"], []
    forward = D.forward

    def spy(x, tags=None, wrong_tags=None):
        out = forward(x, tags, wrong_tags)
        if wrong_tags is not None:
            seen.append((x, tags, wrong_tags, out))
        return out

    D.forward = spy
    logs = run_phase(r, "D", batch(b))
    (call,) = seen
    return logs, call


@pytest.mark.parametrize("setup", ["cgan_spatial_bce", "projection_joint_batch"])
def test_each_group_scores_every_real_image_once_per_group(setup):
    r = make(*SETUPS[setup], "loss.wrong_tags=each_group")
    b = 8
    logs, (x, tags, wrong, out) = d_phase_with_wrong_tags(r, b)
    n = x.shape[0]  # b, or 2b when real and fake share D's batch
    assert wrong.shape[0] == 2 * n  # one draw per tag group (hair, eyes)
    draws = wrong.split(n)
    for gi, w in enumerate(draws):  # each draw changes its own group of the real rows only
        changed = group_indices(tags[:b], r.group_sizes) != group_indices(w[:b], r.group_sizes)
        assert changed[:, gi].all() and not changed[:, 1 - gi].any()
    # the logged wrong score averages the real rows of both draws (fake rows dropped)
    real_rows = out.score_wrong.view(2, n)[:, :b]
    assert torch.allclose(logs["d_wrong"], real_rows.mean(), atol=1e-6)


@pytest.mark.parametrize("setup", ["cgan_spatial_bce", "projection_joint_batch"])
def test_every_tag_scores_each_real_image_with_all_its_wrong_tags(setup):
    r = make(*SETUPS[setup], "loss.wrong_tags=every_tag")
    b = 8
    logs, (x, tags, wrong, out) = d_phase_with_wrong_tags(r, b)
    n, draws = x.shape[0], sum(k - 1 for k in r.group_sizes)
    assert wrong.shape[0] == draws * n
    right = group_indices(tags[:b], r.group_sizes)
    per_row = torch.stack([group_indices(w[:b], r.group_sizes) for w in wrong.split(n)])
    for gi, k in enumerate(r.group_sizes):  # every other tag of the group once per image
        only_gi = (per_row[..., gi] != right[:, gi]) & (per_row[..., 1 - gi] == right[:, 1 - gi])
        for row in range(b):
            tags_seen = sorted(per_row[only_gi[:, row], row, gi].tolist())
            assert tags_seen == [t for t in range(k) if t != right[row, gi]]
    real_rows = out.score_wrong.view(draws, n)[:, :b]
    assert torch.allclose(logs["d_wrong"], real_rows.mean(), atol=1e-6)


@pytest.mark.parametrize("draw, max_changed", [("uniform", 2), ("one_group", 1)])
def test_the_d_phase_draws_wrong_tags_as_loss_wrong_tags_says(draw, max_changed):
    r = make(*SETUPS["cgan_spatial_bce"], f"loss.wrong_tags={draw}")
    logs, (_, tags, wrong, _) = d_phase_with_wrong_tags(r, 64)
    changed = (group_indices(tags, r.group_sizes) != group_indices(wrong, r.group_sizes)).sum(1)
    assert (changed >= 1).all() and changed.max() == max_changed and "d_wrong" in logs


def test_mode_seeking_pairs_share_tags_and_the_term_is_logged():
    r = make(*SETUPS["cgan_dense_hinge_sn"], "loss.mode_seeking=1.0")
    seen = {}
    G = r.models["G"]
    forward = G.forward

    def spy(z, tags=None):
        seen["z"], seen["tags"] = z, tags
        return forward(z, tags)

    G.forward = spy
    logs = run_phase(r, "G", batch(9))
    t = seen["tags"]
    assert torch.equal(t[:4], t[4:8]) and t.shape[0] == 9  # odd row keeps its own tags
    assert not torch.equal(seen["z"][:4], seen["z"][4:8])
    assert torch.isfinite(logs["ms"]) and logs["ms"] > 0
    assert "ms" not in run_phase(make(*SETUPS["cgan_dense_hinge_sn"]), "G", batch(8))


def test_tv_term_is_logged_and_off_by_default():
    logs = run_phase(make(*SETUPS["cgan_dense_hinge_sn"], "loss.tv=2.0"), "G", batch(8))
    assert torch.isfinite(logs["tv"]) and logs["tv"] >= 0
    assert "tv" not in run_phase(make(*SETUPS["cgan_dense_hinge_sn"]), "G", batch(8))


def test_joint_batch_scores_real_and_fake_in_one_batchnorm_batch():
    """loss.joint_batch: each phase calls D once on [real; fake] (2B rows), and in train mode
    D's scores of the fakes depend on the reals beside them (shared BatchNorm statistics)."""
    torch.manual_seed(0)
    r = make(*SETUPS["projection_joint_batch"])
    D = r.models["D"]
    rows = []
    forward = D.forward

    def spy(x, tags=None, wrong_tags=None):
        rows.append(x.shape[0])
        return forward(x, tags, wrong_tags)

    D.forward = spy
    logs = run_phase(r, "D", batch(8))
    assert rows == [16] and "d_wrong" in logs
    rows.clear()
    run_phase(r, "G", batch(8, seed=1))
    assert rows == [16], "the G phase scores its fakes beside a real batch"
    assert all(p.grad is not None for p in r.models["G"].parameters())

    D.forward = forward
    data = batch(8)
    tags = data["labels"].float()
    fake = torch.rand(8, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a = D(torch.cat([data["image"], fake]), torch.cat([tags, tags])).split(8)[1].score
        b = D(torch.cat([torch.zeros_like(fake), fake]), torch.cat([tags, tags])).split(8)[1].score
    assert not torch.allclose(a, b), "the reals' statistics must reach the fakes' scores"


def test_d_output_split_cuts_every_field():
    from trainer.models import DOutput

    out = DOutput(torch.arange(6.0), [torch.arange(12.0).reshape(6, 2)], torch.ones(6, 3), None)
    first, rest = out.split(2)
    assert torch.equal(first.score, torch.arange(2.0)) and rest.score.shape == (4,)
    assert first.aux[0].shape == (2, 2) and rest.aux[0].shape == (4, 2)
    assert first.features.shape == (2, 3) and first.score_wrong is None and rest.score_wrong is None


def test_r1_on_mean_tags_penalises_the_score_averaged_over_every_tag():
    """loss.r1_tags=mean: for a projection head, D at the averaged tags is D's score averaged
    over all 120 (hair, eyes) pairs, and R1 is taken on that, not on the image's own tags."""
    torch.manual_seed(0)
    recipe = make("model.cond=projection", "loss.matching_aware=true", "loss.r1=1.0",
                  "loss.r1_tags=mean")
    D = recipe.models["D"].eval()
    data = batch()
    x = data["image"]
    pairs = torch.cartesian_prod(torch.arange(12), torch.arange(10)).numpy()
    every = torch.from_numpy(VOCAB.encode_indices(pairs)).float()  # [120, 22]
    with torch.no_grad():
        averaged = torch.stack([D(x, row.expand(len(x), -1)).score for row in every]).mean(0)
        at_mean = D(x, mean_tags(recipe.group_sizes, data["labels"].float())).score
    torch.testing.assert_close(at_mean, averaged, rtol=1e-4, atol=1e-5)

    def r1_of(overrides: list[str]) -> float:
        r = make("model.cond=projection", "loss.matching_aware=true", "loss.r1=1.0", *overrides)
        r.models["D"].load_state_dict(recipe.models["D"].state_dict())
        r.models["D"].eval()
        return next(p for p in r.phases() if p.name == "D_reg").step(data)[1]["r1"].item()

    mean_tags_r1 = r1_of(["loss.r1_tags=mean"])
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        D(x, mean_tags(recipe.group_sizes, data["labels"].float())).score.sum(), x)
    assert mean_tags_r1 == pytest.approx(grad.flatten(1).square().sum(1).mean().item(), rel=1e-4)
    assert mean_tags_r1 != pytest.approx(r1_of([]), rel=1e-3)  # the own tags' R1 differs


def test_r1_tags_is_checked():
    with pytest.raises(ConfigError, match="loss.r1_tags"):
        make("loss.r1_tags=average")


def test_lecam_lives_in_d_only_when_set_and_its_term_is_logged():
    """With loss.lecam D carries the averages (so its checkpoint does) and the D phase logs
    the term; without it D's state is as before, so older checkpoints load unchanged."""
    plain = make()
    assert plain.lecam is None
    assert not any("lecam" in k for k in plain.models["D"].state_dict())
    assert "lecam" not in run_phase(plain, "D", batch())
    r = make("loss.lecam=0.1")
    assert "lecam.ema" in r.models["D"].state_dict()
    logs = run_phase(r, "D", batch())
    assert torch.isfinite(logs["lecam"]) and float(r.lecam.ema[2]) == 1


def _g_loss_by_hand(recipe: GanRecipe, data, k: int, rank_tags) -> float:
    """G's non-saturating loss on the k fakes ranked highest by D under ``rank_tags``."""
    G, D = recipe.models["G"], recipe.models["D"]
    tags = data["labels"].float()
    with torch.no_grad():
        fake = G(torch.randn(tags.shape[0], recipe.cfg.model.z_dim), tags)
        score = D(fake, tags).score
        rank = score if rank_tags is None else D(fake, rank_tags(tags)).score
    keep = rank.topk(k).indices
    return recipe.adv.g_loss(score[keep]).item()


@pytest.mark.parametrize("by", ["score", "realness"])
def test_topk_g_loss_keeps_the_fakes_d_ranks_highest(by):
    """From the first epoch on, G's adversarial loss is the mean over the k fakes that D ranks
    highest: by their score (StudioGAN) or by the score with each group's tags averaged."""
    r = make("model.cond=projection", "loss.matching_aware=true", "loss.topk_nu=0.5",
             "loss.topk_gamma=0.5", f"loss.topk_by={by}")
    data = batch(8, seed=3)
    rank_tags = None if by == "score" else (lambda t: mean_tags(r.group_sizes, t))
    for epoch, k in ((0, 8), (1, 4), (5, 4)):
        r.epoch = epoch
        torch.manual_seed(0)
        _, logs = r.g_step(data)
        torch.manual_seed(0)
        assert logs["adv"].item() == pytest.approx(_g_loss_by_hand(r, data, k, rank_tags),
                                                   rel=1e-5)
        assert ("topk" in logs) == (k < 8) and float(logs.get("topk", 8)) == k
    # the two rankings pick different fakes here, so each branch is the one measured
    torch.manual_seed(0)
    by_score = _g_loss_by_hand(r, data, 4, None)
    torch.manual_seed(0)
    by_realness = _g_loss_by_hand(r, data, 4, lambda t: mean_tags(r.group_sizes, t))
    assert by_score != pytest.approx(by_realness, rel=1e-4)


def test_topk_by_realness_needs_a_projection_head():
    with pytest.raises(ConfigError, match="loss.topk_by=realness.*projection"):
        make("model.cond=dense", "loss.topk_by=realness", "loss.topk_nu=0.5")
    make("model.cond=projection_acgan", "loss.topk_by=realness", "loss.topk_nu=0.5")
    make("model.cond=dense", "loss.topk_by=realness")  # top-k off: inert, warned, not refused
