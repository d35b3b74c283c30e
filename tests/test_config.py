"""Config: presets, overrides, validation errors that name the key."""

from __future__ import annotations

import pytest

from trainer.config import (
    ConfigError,
    config_sha256,
    inert_options,
    list_presets,
    load_config,
    to_yaml,
)


def test_defaults_and_override():
    cfg = load_config(None, ["steps=7", "loss.adv=hinge", "g_optim.betas=[0.0,0.9]"])
    assert cfg.steps == 7
    assert cfg.loss.adv == "hinge"
    assert list(cfg.g_optim.betas) == [0.0, 0.9]


def test_every_preset_loads_and_validates():
    presets = list_presets()
    assert "cgan_avatars" in presets
    for name in presets:
        cfg = load_config(name)
        assert cfg.name == name


def test_the_long_preset_is_the_flagship_plus_its_regularisers():
    """cgan_avatars_long is a copy of cgan_avatars plus ADA and R1 on the averaged tags:
    a change to the flagship that is not carried over fails here."""
    long = load_config("cgan_avatars_long")
    flagship = load_config("cgan_avatars", ["loss.r1=0.1", "loss.r1_tags=mean",
                                            "aug.policy=translation,cutout", "aug.target=0.6"])
    long.name = flagship.name
    assert to_yaml(long) == to_yaml(flagship)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="stepz"):
        load_config(None, ["stepz=3"])
    with pytest.raises(ConfigError, match="model.flavour"):
        load_config(None, ["model.flavour=x"])


def test_bad_type_is_named():
    with pytest.raises(ConfigError, match="steps"):
        load_config(None, ["steps=many"])


@pytest.mark.parametrize("override, key", [
    ("loss.adv=wasserstein", "loss.adv"),
    ("model.cond=magic", "model.cond"),
    ("data.size=48", "data.size"),
    ("batch_size=0", "batch_size"),
    ("ema=1.5", "ema"),
    ("mixed_precision=fp8", "mixed_precision"),
    ("loss.wrong_tags=nearest", "loss.wrong_tags"),
    ("loss.lecam=-0.1", "loss.lecam"),
    ("loss.lecam_decay=1", "loss.lecam_decay"),
    ("loss.topk_nu=0", "loss.topk_nu"),
    ("loss.topk_gamma=1.5", "loss.topk_gamma"),
    ("loss.topk_by=worst", "loss.topk_by"),
])
def test_bad_value_is_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["steps"])


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="cgan_avatars"):
        load_config("no_such_preset")


def test_yaml_file_and_bad_yaml(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("steps: 11\nloss:\n  adv: lsgan\n")
    cfg = load_config(str(good))
    assert (cfg.steps, cfg.loss.adv, cfg.name) == (11, "lsgan", "mine")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(str(bad))


def test_matching_aware_needs_conditional_d():
    with pytest.raises(ConfigError, match="matching_aware"):
        load_config(None, ["loss.matching_aware=true", "model.cond=none"])


def test_yaml_round_trip_and_hash(tmp_path):
    cfg = load_config("cgan_avatars", ["steps=5"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    again = load_config(str(path))
    assert again == cfg
    assert config_sha256(again) == config_sha256(cfg)
    assert config_sha256(load_config("cgan_avatars", ["steps=6"])) != config_sha256(cfg)


def test_unquoted_no_means_no(tmp_path):
    assert load_config(None, ["mixed_precision=no"]).mixed_precision == "no"
    path = tmp_path / "c.yaml"
    path.write_text("mixed_precision: no\n")
    assert load_config(str(path)).mixed_precision == "no"
    assert load_config(None, ["data.path=no"]).data.path == "no"


@pytest.mark.parametrize("preset, override, option", [
    ("stargan_avatars", "loss.tv=0.5", r"loss\.tv=0\.5"),
    ("stargan_avatars", "loss.mode_seeking=1.0", r"loss\.mode_seeking=1\.0"),
    ("stargan_avatars", "loss.l1=1.0", r"loss\.l1=1\.0"),
    ("stargan_avatars", "loss.topk_nu=0.5", r"loss\.topk_nu=0\.5"),
    ("cgan_avatars", "loss.lambda_rec=5.0", r"loss\.lambda_rec=5\.0"),
    ("stargan_avatars", "loss.wrong_tags=one_group", r"loss\.wrong_tags=one_group"),
    ("cgan_avatars", "loss.cls_pos_weight.Eyeglasses=4", r"loss\.cls_pos_weight=\{'Eyeglasses': 4\.0\}"),
])
def test_loss_option_the_recipe_ignores_is_refused(preset, override, option):
    """A loss option the chosen recipe never reads is an error, not a silent no-op."""
    with pytest.raises(ConfigError, match=option + r".*recipe=\w+ does not use"):
        load_config(preset, [override])


def test_loss_options_each_recipe_reads_are_accepted():
    assert load_config("stargan_avatars", ["loss.r1=2.0", "loss.lambda_cls=2.0"]).loss.r1 == 2.0
    assert load_config("cgan_avatars", ["loss.tv=0.5", "loss.r1=1.0"]).loss.tv == 0.5
    # the option's default value is no setting at all, whatever the recipe
    assert load_config("stargan_avatars", ["loss.tv=0.0"]).loss.tv == 0.0


def test_every_loss_option_belongs_to_a_recipe():
    """A new loss.* field must be listed in some family's loss_keys, or no recipe could set it."""
    from dataclasses import fields

    from trainer.config import LossConfig
    from trainer.families import FAMILIES

    listed = set().union(*(f.loss_keys for f in FAMILIES.values()))
    assert {f.name for f in fields(LossConfig)} <= listed


def test_inert_options_are_named_and_not_refused():
    """A refinement of a switched-off option loads, and is named with the switch it needs."""
    cfg = load_config(None, ["loss.lecam_decay=0.9", "loss.topk_by=realness",
                             "model.cond=projection"])
    assert inert_options(cfg) == ["loss.lecam_decay=0.9 has no effect without loss.lecam > 0",
                                  "loss.topk_by=realness has no effect without "
                                  "loss.topk_nu < 1"]
    assert inert_options(load_config(None, ["loss.lecam_decay=0.9", "loss.lecam=0.1"])) == []
    assert inert_options(load_config(None, ["loss.topk_nu=0.5", "loss.topk_gamma=1"])) == [
        "loss.topk_nu=0.5 has no effect without loss.topk_gamma < 1 (k stays the batch)"]
    assert inert_options(load_config(None, ["aug.policy=translation", "aug.target=0.6",
                                            "aug.p=0.5", "aug.kimg=10"])) == [
        "aug.p=0.5 has no effect without aug.target=0 (ADA starts p at 0)"]
    assert inert_options(load_config(None, ["aug.policy=translation", "aug.kimg=10"])) == [
        "aug.kimg=10.0 has no effect without aug.target > 0"]


def test_an_ablation_of_a_preset_switch_warns_about_its_refinements():
    cfg = load_config("cgan_avatars_long", ["loss.r1=0", "aug.policy="])
    assert inert_options(cfg) == ["loss.r1_tags=mean has no effect without loss.r1 > 0",
                                  "aug.target=0.6 has no effect without aug.policy"]


@pytest.mark.parametrize("preset", list_presets())
def test_presets_set_no_inert_options(preset):
    assert inert_options(load_config(preset)) == []
