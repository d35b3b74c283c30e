"""The model families behind ``recipe=``: the one place that tells a tag GAN from StarGAN.

A ``Family`` holds everything the rest of the code would otherwise ask "GAN or
StarGAN?" about:

- ``choices``: the config values it implements (``model.arch`` and its own options);
  ``trainer.config`` validates against them, and a ``model.arch`` pairs with the
  family that lists it;
- ``accepts`` / ``labels`` / ``n_cond``: which labels (vocab.json) its runs train on;
- ``generator`` / ``discriminator`` / ``recipe``: its networks and training recipe;
- ``graph``: what its exported ONNX generator takes and gives;
- ``evaluation``: the module with its metrics (``probe``, ``evaluate``,
  ``during_training``; trainer/evaluate/pipeline.py calls them);
- ``loss_keys``: the ``loss.*`` options its recipe reads; setting any other one is a
  ConfigError instead of a silently ignored option.

Adding a family is one entry in ``FAMILIES`` plus its recipe and models. The
entries import their code when called, so reading the registry stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from trainer.config import ConfigError, LossConfig, TrainConfig

if TYPE_CHECKING:
    from torch import nn

    from trainer.recipes.base import Recipe

Labels = Any  # trainer.data.vocab.Vocab | Domains | None


@dataclass(frozen=True)
class GraphIO:
    """What an exported generator takes and gives (shapes without the batch axis)."""

    inputs: dict[str, tuple[int, ...]]  # ONNX input name -> shape, in argument order
    output: str  # ONNX output name
    group_sizes: tuple[int, ...] = ()  # tag groups, for valid random one-hot inputs


@dataclass(frozen=True)
class Family:
    """One model family (``cfg.recipe``); see the module docstring."""

    name: str
    choices: Callable[[], dict[str, tuple[str, ...]]]  # config key -> values it implements
    accepts: Callable[[Labels], bool]  # whether a run folder's labels are of this family
    labels: Callable[[TrainConfig, Any], Labels]  # (cfg, dataset) -> the labels it trains on
    n_cond: Callable[[Labels], int]  # length of the generator's condition vector
    generator: Callable[[TrainConfig, int], nn.Module]  # (cfg, n_cond)
    discriminator: Callable[[TrainConfig, list[int], Any], nn.Module]  # (cfg, groups, augment)
    recipe: Callable[[TrainConfig, Labels, int], Recipe]  # (cfg, labels, image size)
    graph: Callable[[TrainConfig, Labels], GraphIO]  # ConfigError if the labels do not fit
    evaluation: str  # module with probe(), evaluate(), during_training()
    loss_keys: tuple[str, ...] = ()  # the ``loss.*`` options its recipe reads

    def archs(self) -> tuple[str, ...]:
        """The ``model.arch`` values of this family."""
        return self.choices()["model.arch"]


def _mismatch(cfg: TrainConfig) -> ConfigError:
    return ConfigError(f"recipe={cfg.recipe} does not fit the labels of {cfg.data.path}; "
                       f"StarGAN needs data.attrs=[...], tag GANs need tag groups")


def _found(labels: Labels) -> str:
    return type(labels).__name__ if labels else "none"


# -- tag-conditioned GANs (DCGAN, WGAN, cGAN, ACGAN, ResNet, ...) --------------------------
def _gan_choices() -> dict[str, tuple[str, ...]]:
    from trainer.models.conditional import HEADS, TRUNKS
    from trainer.models.dcgan import UPSAMPLE
    from trainer.models.layers import D_NORMS, PALETTE_PICKS

    return {"model.arch": tuple(TRUNKS), "model.cond": tuple(HEADS),
            "model.g_upsample": tuple(UPSAMPLE), "model.d_norm": D_NORMS,
            "model.g_palette_pick": PALETTE_PICKS,
            "model.g_condition": ("target",)}  # a tag G has no source to subtract


def _gan_accepts(labels: Labels) -> bool:
    from trainer.data.vocab import Vocab

    return labels is None or isinstance(labels, Vocab)


def _gan_labels(cfg: TrainConfig, dataset: Any) -> Labels:
    from trainer.models import is_conditional

    if not is_conditional(cfg):
        return None  # unconditional: tags, if any, are ignored
    if dataset.vocab is None:
        raise ConfigError(f"model.cond={cfg.model.cond!r} needs tags, but {cfg.data.path} "
                          f"({dataset.format}) has none")
    if not _gan_accepts(dataset.vocab):
        raise _mismatch(cfg)
    return dataset.vocab


def _gan_graph(cfg: TrainConfig, labels: Labels) -> GraphIO:
    from trainer.models import is_conditional

    z = {"z": (cfg.model.z_dim,)}
    if not is_conditional(cfg):
        return GraphIO(z, "image")
    if labels is None or not _gan_accepts(labels):
        raise ConfigError(f"a conditional GAN run (model.cond={cfg.model.cond}) needs vocab.json "
                          f"with its tag groups (found {_found(labels)})")
    return GraphIO({**z, "tags": (labels.n_tags,)}, "image", tuple(labels.group_sizes))


def _gan_generator(cfg: TrainConfig, n_cond: int) -> nn.Module:
    from trainer.models.conditional import build_tag_generator

    return build_tag_generator(cfg, n_cond)


def _gan_discriminator(cfg: TrainConfig, group_sizes: list[int], augment: Any) -> nn.Module:
    from trainer.models.conditional import build_tag_discriminator

    return build_tag_discriminator(cfg, group_sizes, augment)


def _gan_recipe(cfg: TrainConfig, labels: Labels, image_size: int) -> Recipe:
    from trainer.recipes.gan import GanRecipe

    return GanRecipe(cfg, labels, image_size)


# -- StarGAN: image-to-image translation between attribute domains -------------------------
def _stargan_choices() -> dict[str, tuple[str, ...]]:
    from tagvocab import G_CONDITIONS
    from trainer.models.stargan import G_OUTPUTS, G_UPSAMPLE, NORM_STATS
    from trainer.recipes.stargan import TARGET_SAMPLERS

    return {"model.arch": ("stargan",), "model.norm_stats": NORM_STATS,
            "model.g_output": G_OUTPUTS, "model.g_upsample": G_UPSAMPLE,
            "model.g_condition": G_CONDITIONS, "loss.targets": tuple(TARGET_SAMPLERS)}


def _stargan_accepts(labels: Labels) -> bool:
    from trainer.data.vocab import Domains

    return isinstance(labels, Domains)


def _stargan_labels(cfg: TrainConfig, dataset: Any) -> Labels:
    if dataset.vocab is None:
        raise ConfigError(f"recipe=stargan needs attribute domains (data.attrs=[...]), but "
                          f"{cfg.data.path} ({dataset.format}) has no labels")
    if not _stargan_accepts(dataset.vocab):
        raise _mismatch(cfg)
    return dataset.vocab


def _stargan_graph(cfg: TrainConfig, labels: Labels) -> GraphIO:
    if not _stargan_accepts(labels):
        raise ConfigError(f"a StarGAN run needs vocab.json listing its domains "
                          f"(found {_found(labels)})")
    s, n = cfg.data.size, labels.n_domains
    inputs = {"image": (3, s, s), "domains": (n,)}
    if cfg.model.g_condition == "difference":  # G is told domains - source: it needs both
        inputs["source"] = (n,)
    # ONNX forbids an output named like an input: the translated image is "translated".
    return GraphIO(inputs, "translated")


def _stargan_generator(cfg: TrainConfig, n_cond: int) -> nn.Module:
    from trainer.models.stargan import build_stargan_generator

    return build_stargan_generator(cfg, n_cond)


def _stargan_discriminator(cfg: TrainConfig, group_sizes: list[int], augment: Any) -> nn.Module:
    from trainer.models.stargan import build_stargan_discriminator

    D = build_stargan_discriminator(cfg, sum(group_sizes))
    D.augment = augment
    return D


def _stargan_recipe(cfg: TrainConfig, labels: Labels, image_size: int) -> Recipe:
    from trainer.recipes.stargan import StarGanRecipe

    return StarGanRecipe(cfg, labels, image_size)


# loss.* options each recipe reads (trainer/recipes/gan.py, stargan.py; common.py's lazy R1, LeCam)
_SHARED_LOSS = ("adv", "gp", "r1", "r1_every", "lecam", "lecam_decay")
_GAN_LOSS = (*_SHARED_LOSS, "clip", "matching_aware", "wrong_weight", "wrong_tags", "aux",
             "l1", "feature_matching", "mode_seeking", "mode_seeking_pool", "tv", "joint_batch",
             "r1_tags", "topk_nu", "topk_gamma", "topk_by")
_STARGAN_LOSS = (*_SHARED_LOSS, "lambda_cls", "d_cls_scale", "lambda_rec", "lambda_id",
                 "lambda_mask", "lambda_mask_tv", "lambda_change", "targets", "cls_pos_weight",
                 "g_cls_pos_weight")

FAMILIES: dict[str, Family] = {
    "gan": Family("gan", _gan_choices, _gan_accepts, _gan_labels,
                  lambda labels: 0 if labels is None else labels.n_tags,
                  _gan_generator, _gan_discriminator, _gan_recipe, _gan_graph,
                  "trainer.evaluate.gan_metrics", _GAN_LOSS),
    "stargan": Family("stargan", _stargan_choices, _stargan_accepts, _stargan_labels,
                      lambda labels: 0 if labels is None else labels.n_domains,
                      _stargan_generator, _stargan_discriminator, _stargan_recipe,
                      _stargan_graph, "trainer.evaluate.stargan_metrics", _STARGAN_LOSS),
}


def family_of(cfg: TrainConfig) -> Family:
    """The family of a (validated) config: ``FAMILIES[cfg.recipe]``."""
    return FAMILIES[cfg.recipe]


def family_for_labels(labels: Labels) -> Family:
    """The family whose runs carry these labels (a run folder's vocab.json)."""
    for family in FAMILIES.values():
        if family.accepts(labels):
            return family
    raise ConfigError(f"no model family trains on labels of type {type(labels).__name__}")


def family_choices() -> dict[str, tuple[str, ...]]:
    """``recipe`` and every family's config choices, merged in registry order."""
    out: dict[str, tuple[str, ...]] = {"recipe": tuple(FAMILIES)}
    for family in FAMILIES.values():
        for key, values in family.choices().items():
            out[key] = tuple(dict.fromkeys((*out.get(key, ()), *values)))
    return out


def check_family(cfg: TrainConfig) -> None:
    """ConfigError unless ``model.arch`` belongs to the family ``recipe`` names, every
    other choice the family lists is one of its own values (a key two families share,
    such as ``model.g_upsample``, may take fewer values in one of them), and every
    ``loss.*`` option set away from its default is one that family's recipe reads."""
    family = family_of(cfg)
    if cfg.model.arch not in family.archs():
        owner = next((f.name for f in FAMILIES.values() if cfg.model.arch in f.archs()), "?")
        raise ConfigError(f"model.arch={cfg.model.arch!r} needs recipe={owner}; recipe="
                          f"{cfg.recipe} takes model.arch {', '.join(family.archs())}")
    for key, values in family.choices().items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if key != "model.arch" and value not in values:
            raise ConfigError(f"{key}={value!r}: recipe={cfg.recipe} takes one of "
                              f"{', '.join(values)}")
    defaults = LossConfig()
    for f in fields(LossConfig):
        value = getattr(cfg.loss, f.name)
        if f.name in family.loss_keys or value == getattr(defaults, f.name):
            continue
        users = [g.name for g in FAMILIES.values() if f.name in g.loss_keys]
        raise ConfigError(f"loss.{f.name}={value}: recipe={cfg.recipe} does not use this option "
                          f"(recipe={' / '.join(users) or '?'} does); remove it or set it to "
                          f"its default {getattr(defaults, f.name)}")
