"""Typed training configuration: named presets plus ``key=value`` overrides.

Parse -> build & validate -> run: ``load_config`` merges the defaults below, a
preset (trainer/configs/NAME.yaml) or a YAML file, and dotted overrides, then
validates values. An unknown key or a bad value raises ConfigError naming it.
The resolved config is written to the run folder as config.yaml.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names it."""


@dataclass
class DataConfig:
    path: str = "data/avatars"  # dataset folder (format auto-detected)
    format: str = "auto"  # auto | avatars | adl | mlds | cartoon | cartoonset | celeba | folder
    size: int = 64  # training resolution (square)
    cache_dir: str = ""  # uint8 cache; "" = $TAGFACE_CACHE or ~/.cache/tagface
    flip: bool = True  # random horizontal flips
    attrs: list[str] = field(default_factory=list)  # StarGAN domains / CelebA attributes to use
    mlds_strict: bool = True  # MLDS: keep only images with exactly one hair and one eye tag
    limit: int = 0  # use at most this many images (0 = all)
    any_of: list[str] = field(default_factory=list)  # keep images with one of these attrs


@dataclass
class ModelConfig:
    arch: str = "dcgan"  # dcgan | ml2020 | resnet | stargan
    z_dim: int = 100  # noise size
    g_ch: int = 64  # generator width (channels of the last hidden layer)
    d_ch: int = 64  # discriminator width (channels of the first layer)
    tag_embed: int = 64  # G tag projection Linear->BN->LeakyReLU width (0: raw one-hot)
    cond: str = "none"  # D head: none | spatial | dense | projection | acgan | projection_acgan
    d_tag_embed: int = 64  # D tag projection width, spatial / dense conditioning (0: raw one-hot)
    d_hidden: int = 256  # D hidden dense width: dense head, ACGAN classifiers (report 004: 128)
    spectral_norm: bool = False  # spectral norm on every D weight
    d_dropout: float = 0.0  # dropout after each D block
    d_bn: bool = True  # normalisation in D (off for WGAN-GP and SN)
    d_norm: str = "batch"  # dcgan D with d_bn: batch | layer | group (per-image GroupNorm)
    minibatch_std: bool = False  # minibatch standard deviation feature before D's head
    repeat_num: int = 6  # StarGAN: residual blocks in G
    d_repeat_num: int = 6  # StarGAN: stride-2 convs in D
    norm_stats: str = "running"  # StarGAN inference InstanceNorm statistics: running | instance
    g_output: str = "image"  # StarGAN G output: image (official) | attention (GANimation blend)
    g_condition: str = "target"  # StarGAN G's domain input: target (official) | difference
    #                              (target - source, as STGAN)
    g_upsample: str = "transposed"  # dcgan, stargan G: transposed (4x4 stride 2) | nearest (+ 3x3 conv)
    #                                  | nearest_last (resize-conv for the output layer only)
    #                                  | bilinear_last (output conv at S/2, bilinear 2x)
    g_skip: bool = False  # dcgan G: StyleGAN2 skip outputs (RGB at every scale, summed)
    g_palette: int = 0  # dcgan G: paint pixels from K per-image colours (0 = RGB output)
    g_palette_pick: str = "soft"  # with g_palette, how a pixel's colour is chosen when
    #                                sampling: soft (softmax mix) | hard (its most likely
    #                                colour) | vote (most likely over its 3x3 neighbourhood)
    #                                | vote_lines (the same, its own vote x5: keeps lines)
    #                                | mix_lines (the nearer of its two likeliest colours
    #                                to the soft mix, then the vote_lines vote)
    g_palette_noise: float = 0.0  # with g_palette: Gumbel noise x this on the palette logits
    #                                while training (Gumbel-softmax), so a pixel left between
    #                                two colours flickers in what D sees; sampling unchanged
    hier_z: bool = False  # resnet G: split z over the blocks' conditional BatchNorms (BigGAN)


@dataclass
class LossConfig:
    adv: str = "ns"  # bce (minimax) | ns (non-saturating) | wgan | lsgan | hinge
    gp: float = 0.0  # gradient penalty weight (WGAN-GP: 10), computed in fp32
    clip: float = 0.0  # WGAN weight clipping bound for D (0 = off)
    matching_aware: bool = False  # add the (real image, wrong tags) case to D
    wrong_weight: float = 1.0  # weight of that case
    wrong_tags: str = "uniform"  # uniform | one_group (one tag changed) | mixed | each_group
    #                               | every_tag (all the wrong tags of every group)
    aux: float = 1.0  # ACGAN auxiliary classification weight (D and G)
    l1: float = 0.0  # G: L1 between fake and real images of the same tags (report 000)
    feature_matching: float = 0.0  # G: L2 between mean D features of real and fake
    mode_seeking: float = 0.0  # G: MSGAN term against z being ignored (pairs share tags)
    mode_seeking_pool: int = 1  # average-pool images by this factor before the MSGAN distance
    tv: float = 0.0  # G: weight of the fakes' total variation beyond the real batch's (speckle)
    joint_batch: bool = False  # D scores real and fake images in one forward (one BatchNorm
    # batch, minibatch-std groups within each half); the G phase adds the real batch for that
    lambda_cls: float = 1.0  # StarGAN domain classification
    d_cls_scale: float = 1.0  # StarGAN: D's classification term is lambda_cls x this (1 official)
    lambda_rec: float = 10.0  # StarGAN cycle reconstruction
    lambda_id: float = 0.0  # StarGAN: L1 of G(x, x's own domains) against x (identity mapping)
    lambda_mask: float = 0.0  # StarGAN g_output=attention: mean attention (GANimation 0.1)
    lambda_mask_tv: float = 0.0  # StarGAN g_output=attention: attention total variation (1e-5)
    lambda_change: float = 0.0  # StarGAN g_output=attention: mean of 1 - A, the share G repaints
    targets: str = "permute"  # StarGAN target domains: permute (official) | balanced
    cls_pos_weight: dict[str, float] = field(default_factory=dict)  # StarGAN: weight of a
    # domain's positive term in the classification BCE, e.g. {Eyeglasses: 4} (absent = 1)
    g_cls_pos_weight: dict[str, float] = field(default_factory=dict)  # StarGAN: G's own
    # weights, over cls_pos_weight's for G only (e.g. {Eyeglasses: 1}: D alone weighs them)
    r1: float = 0.0  # R1 penalty weight gamma on real images (Mescheder et al. 2018), fp32
    r1_every: int = 16  # lazy R1 (StyleGAN2): every k-th iteration, scaled by k
    r1_tags: str = "right"  # tag-conditioned D: R1 on the score with the image's own tags
    #                         (right) or with each group's tags averaged (mean: the part of a
    #                         projection score that does not depend on the tags)
    lecam: float = 0.0  # LeCam (Tseng et al. 2021): weight of the pull of D's logits towards
    #                     the other side's moving average (0 = off; trainer.losses.LeCam)
    lecam_decay: float = 0.99  # decay of those moving averages
    topk_nu: float = 1.0  # top-k G updates (Sinha et al. 2020; StudioGAN's apply_topk): G's
    #                       loss keeps the k fakes D scores highest, k = batch x
    #                       topk_gamma^epoch, never below topk_nu x batch (1 = off: all kept)
    topk_gamma: float = 0.99  # decay of k per data epoch
    topk_by: str = "score"  # rank the fakes by D's score with their tags (score) or with
    #                         each group's tags averaged (realness: a projection D's score
    #                         apart from the tags, so fakes with the wrong colours still train)


@dataclass
class AugConfig:
    policy: str = ""  # differentiable augmentation of D's inputs: e.g. color,translation,cutout
    p: float = 1.0  # probability of each op per image (DiffAugment: 1)
    target: float = 0.0  # ADA: adjust p so that E[sign(D(real))] stays here (0 = fixed p)
    interval: int = 4  # ADA: D steps between adjustments of p
    kimg: float = 50.0  # ADA: thousands of real images for p to move by 1


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | sgd | rmsprop
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # Adam
    momentum: float = 0.0  # SGD / RMSprop
    weight_decay: float = 0.0


@dataclass
class TrainConfig:
    name: str = "default"  # preset name (informational)
    recipe: str = "gan"  # model family (trainer/families.py): gan | stargan
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    g_optim: OptimConfig = field(default_factory=OptimConfig)
    d_optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 64  # per process
    steps: int = 1000  # training iterations (one real batch each)
    minutes: float = 0.0  # also stop after this wall time (0 = no limit); resumable
    d_every: int = 1  # D phase runs on every k-th iteration
    d_repeat: int = 1  # D steps per iteration (each on its own batch)
    g_every: int = 1  # G phase runs on every k-th iteration (n_critic 5: g_every=5)
    g_repeat: int = 1  # G steps per iteration (G:D 2:1: g_repeat=2)
    lr_decay_start: int = 0  # linear lr decay to 0 from this step to the end (0 = off)
    # EMA decay of the G copy used for samples and export: min(ema, (1+t)/(10+t)) at step t,
    # so the warm-up decides until step (10*ema-1)/(1-ema) (0.999: 8,990; 0.99: 890)
    ema: float = 0.999
    ema_start: int = 0  # copy G into EMA until this step
    ema_bn_batches: int = 32  # measure the EMA G's BatchNorm statistics on this many batches
    # before it is sampled or saved (trainer/standing_stats.py; 0 = copy G's statistics)
    mixed_precision: str = "auto"  # auto (trainer.precision decides per machine) | no | fp16 | bf16
    channels_last: bool = True  # NHWC memory format (faster convs on CPU and tensor cores)
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 1000
    keep_ckpts: int = 2  # older checkpoints are deleted
    n_samples: int = 64  # fixed samples in each progress grid
    truncation: float = 1.0  # psi of the final grids' z (trainer.noise; 1 = off)
    eval_every: int = 0  # optional in-training evaluation (0 = off)
    eval_fid: bool = True  # in-training evaluation includes FID/KID on 256 images (the slow part)
    workers: int = 0  # DataLoader workers (the uint8 cache rarely needs any)


def choices() -> dict[str, tuple[str, ...]]:
    """Every enumerated key's allowed values, read from the registries that implement them.

    ``recipe`` and the model options from trainer/families.py (``model.arch`` from
    ``TRUNKS``, ``model.cond`` from ``HEADS``, the StarGAN option lists), ``loss.adv``
    from ``trainer.losses.ADVERSARIAL``, the optimizers from ``trainer.recipes.common``,
    ``data.format`` from ``trainer.data.formats.FORMATS``: adding one there is enough.
    Read at every validation (imports torch), so a registry entry added at run time counts.
    """
    from trainer.data.formats import FORMATS
    from trainer.families import family_choices
    from trainer.losses import ADVERSARIAL, WRONG_TAGS
    from trainer.precision import CHOICES
    from trainer.recipes.common import OPTIMIZERS

    return {**family_choices(), "data.format": ("auto", *FORMATS),
            "loss.adv": tuple(ADVERSARIAL), "g_optim.name": tuple(OPTIMIZERS),
            "d_optim.name": tuple(OPTIMIZERS), "mixed_precision": ("auto", *CHOICES),
            "loss.wrong_tags": tuple(WRONG_TAGS), "loss.r1_tags": ("right", "mean"),
            "loss.topk_by": ("score", "realness")}


class _Choices(Mapping):
    """A read-only view of ``choices()``, computed on every access."""

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return choices()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(choices())

    def __len__(self) -> int:
        return len(choices())


ENUMS: Mapping[str, tuple[str, ...]] = _Choices()  # config key -> allowed values (live)

POSITIVE = ("data.size", "batch_size", "steps", "d_every", "d_repeat", "g_every", "g_repeat",
            "log_every", "sample_every", "ckpt_every", "keep_ckpts", "n_samples",
            "model.z_dim", "model.g_ch", "model.d_ch", "g_optim.lr", "d_optim.lr",
            "loss.r1_every", "aug.interval", "aug.kimg", "loss.mode_seeking_pool")


# Options that refine another: (the refinements, the switch they need, whether it is on).
_REFINEMENTS: tuple[tuple[tuple[str, ...], str, Callable[[TrainConfig], bool]], ...] = (
    (("loss.lecam_decay",), "loss.lecam > 0", lambda c: c.loss.lecam > 0),
    (("loss.r1_every", "loss.r1_tags"), "loss.r1 > 0", lambda c: c.loss.r1 > 0),
    (("aug.p", "aug.target", "aug.interval", "aug.kimg"), "aug.policy",
     lambda c: bool(c.aug.policy.strip())),
    (("aug.p",), "aug.target=0 (ADA starts p at 0)", lambda c: c.aug.target == 0),
    (("aug.interval", "aug.kimg"), "aug.target > 0", lambda c: c.aug.target > 0),
    (("loss.topk_gamma", "loss.topk_by"), "loss.topk_nu < 1", lambda c: c.loss.topk_nu < 1),
    (("loss.topk_nu",), "loss.topk_gamma < 1 (k stays the batch)",
     lambda c: c.loss.topk_gamma < 1),
    (("loss.wrong_weight", "loss.wrong_tags"), "loss.matching_aware=true",
     lambda c: c.loss.matching_aware),
    (("loss.mode_seeking_pool",), "loss.mode_seeking > 0", lambda c: c.loss.mode_seeking > 0),
)


def inert_options(cfg: TrainConfig) -> list[str]:
    """Options set away from their defaults that do nothing, because the option they refine
    is off: one line each, naming both. Warnings, not errors: an ablation such as
    ``--config cgan_avatars_long loss.r1=0`` turns a preset's switch off and leaves the
    preset's refinements of it set."""
    defaults = TrainConfig()
    out = []
    for keys, switch, on in _REFINEMENTS:
        if on(cfg):
            continue
        for key in keys:
            value = _get(cfg, key)
            if value != _get(defaults, key):
                out.append(f"{key}={value} has no effect without {switch}")
    return out


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _preset_or_file(name: str) -> DictConfig:
    path = Path(name)
    if not path.suffix:
        path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"--config {name!r}: no such preset or YAML file; presets are "
                          f"{', '.join(list_presets())}")
    try:
        loaded = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError carries the line number
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    if "name" not in loaded:
        loaded.name = path.stem
    return loaded


def _override_layer(base: DictConfig, overrides: list[str]) -> DictConfig:
    """``key=value`` strings as a config layer; values of string keys stay strings.

    YAML would read ``mixed_precision=no`` as the boolean false.
    """
    layer = OmegaConf.create()
    for o in overrides:
        key, value = o.split("=", 1)
        default = OmegaConf.select(base, key.strip(), default=None)
        if isinstance(default, ListConfig) and not value.strip().startswith("["):
            raise ConfigError(f"override {o!r}: {key.strip()} is a list; write "
                              f"{key.strip()}=[{value}] (several: [a,b])")
        if isinstance(default, str):
            OmegaConf.update(layer, key.strip(), value, force_add=True)
        else:
            layer = OmegaConf.merge(layer, OmegaConf.from_dotlist([o]))
    return layer


def load_config(config: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults <- preset or YAML <- ``key=value`` overrides; validated."""
    base = OmegaConf.structured(TrainConfig)
    layers: list[DictConfig] = []
    if config:
        layers.append(_preset_or_file(config))
    for o in overrides or []:
        if "=" not in o:
            raise ConfigError(f"override {o!r}: expected key=value, e.g. steps=200")
    try:
        if overrides:
            layers.append(_override_layer(base, overrides))
        merged = OmegaConf.merge(base, *layers)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        src = f" (in {config})" if config else ""
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"config key {key!r}{src}: {first}") from None
    cfg: TrainConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(cfg)
    return cfg


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def domain_weights(weights: Mapping[str, float], domains: Any, key: str,
                   where: str = "") -> list[float]:
    """``weights`` (the option ``key``: domain name -> weight) as one weight per domain of
    ``domains`` (a ``Domains``), in their order, 1 where absent; ConfigError naming the key
    for an unknown domain (``where`` says what the names were checked against) or a weight
    that is not > 0. The one check behind ``loss.cls_pos_weight`` and ``g_cls_pos_weight``,
    at config load and when the StarGAN recipe is built."""
    out = [1.0] * domains.n_domains
    for name, w in weights.items():
        i = domains.find(name)
        if i is None:
            raise ConfigError(f"{key}: unknown domain {name!r}; expected one "
                              f"of {', '.join(domains.names)}{where}")
        if not w > 0:
            raise ConfigError(f"{key}.{name}={w}: expected a weight > 0")
        out[i] = float(w)
    return out


def check_domain_weights(cfg: TrainConfig) -> None:
    """``loss.cls_pos_weight`` / ``g_cls_pos_weight`` name domains of ``data.attrs`` when it
    is set, so a typo is refused at config load, before any data is read (the recipe
    checks again against the dataset's own domains)."""
    attrs = list(cfg.data.attrs)
    if not attrs or len(set(attrs)) != len(attrs):
        return
    from tagvocab.domains import Domains

    domains = Domains(tuple(attrs))
    for key in ("cls_pos_weight", "g_cls_pos_weight"):
        domain_weights(getattr(cfg.loss, key), domains, f"loss.{key}", " (data.attrs)")


def validate(cfg: TrainConfig) -> None:
    """Check values that types alone cannot; raise ConfigError naming the key."""
    if cfg.mixed_precision in ("False", "false"):  # YAML's unquoted `no` is a boolean
        cfg.mixed_precision = "no"
    for key, allowed in choices().items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(allowed)}")
    for key in POSITIVE:
        if not _get(cfg, key) > 0:
            raise ConfigError(f"{key}={_get(cfg, key)!r}: must be > 0")
    for key in ("g_optim.lr", "d_optim.lr", "ema", "minutes"):
        if not math.isfinite(_get(cfg, key)):
            raise ConfigError(f"{key}={_get(cfg, key)!r}: expected a finite number")
    if cfg.data.size not in (32, 64, 128, 256):
        raise ConfigError(f"data.size={cfg.data.size}: expected 32, 64, 128 or 256")
    from trainer.families import check_family

    check_family(cfg)  # model.arch belongs to the recipe's family
    check_domain_weights(cfg)
    if not 0.0 <= cfg.ema < 1.0:
        raise ConfigError(f"ema={cfg.ema}: expected 0 <= ema < 1")
    if cfg.ema_bn_batches < 0:
        raise ConfigError(f"ema_bn_batches={cfg.ema_bn_batches}: expected 0 (off) or a number "
                          f"of batches")
    for key in ("g_optim.betas", "d_optim.betas"):
        betas = _get(cfg, key)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"{key}={list(betas)}: expected two numbers in [0, 1)")
    if not 0.0 <= cfg.loss.lecam_decay < 1.0:
        raise ConfigError(f"loss.lecam_decay={cfg.loss.lecam_decay}: expected 0 <= decay < 1")
    for key, at_one in (("loss.topk_nu", "off"),
                        ("loss.topk_gamma", "no decay, so k stays the batch")):
        if not 0.0 < _get(cfg, key) <= 1.0:
            raise ConfigError(f"{key}={_get(cfg, key)}: expected a fraction in (0, 1] "
                              f"(1 = {at_one})")
    if not 0.0 <= cfg.model.d_dropout < 1.0:
        raise ConfigError(f"model.d_dropout={cfg.model.d_dropout}: expected 0 <= p < 1")
    for key in ("loss.gp", "loss.clip", "loss.lambda_cls", "loss.d_cls_scale",
                "loss.lambda_rec", "loss.lambda_id", "loss.lambda_mask", "loss.lambda_change",
                "loss.lambda_mask_tv", "loss.r1", "loss.tv", "loss.lecam"):
        if _get(cfg, key) < 0:
            raise ConfigError(f"{key}={_get(cfg, key)}: must be >= 0")
    if ((cfg.loss.lambda_mask or cfg.loss.lambda_mask_tv or cfg.loss.lambda_change)
            and cfg.model.g_output != "attention"):
        raise ConfigError("loss.lambda_mask, loss.lambda_mask_tv and loss.lambda_change weigh "
                          "the attention mask: they need model.g_output=attention")
    if cfg.aug.policy.strip():
        from trainer.augment import parse_policy  # the op registry (imports torch)

        try:
            parse_policy(cfg.aug.policy)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if not 0.0 < cfg.truncation <= 1.0:
        raise ConfigError(f"truncation={cfg.truncation}: expected psi in (0, 1] (1 = off)")
    if not 0.0 <= cfg.aug.p <= 1.0:
        raise ConfigError(f"aug.p={cfg.aug.p}: expected a probability in [0, 1]")
    if not 0.0 <= cfg.aug.target < 1.0:
        raise ConfigError(f"aug.target={cfg.aug.target}: expected 0 (fixed p) or a target "
                          f"in (0, 1), e.g. 0.6 as ADA")
    if cfg.model.g_upsample != "transposed" and cfg.model.arch not in ("dcgan", "stargan"):
        raise ConfigError(f"model.g_upsample={cfg.model.g_upsample!r} applies to the dcgan "
                          f"and stargan generators; model.arch={cfg.model.arch!r} has its own "
                          f"upsampling")
    if cfg.model.d_norm != "batch" and (cfg.model.arch not in ("dcgan", "ml2020")
                                         or not cfg.model.d_bn):
        raise ConfigError(f"model.d_norm={cfg.model.d_norm!r} applies to the dcgan and ml2020 "
                          f"discriminators with model.d_bn=true (got model.arch="
                          f"{cfg.model.arch!r}, model.d_bn={cfg.model.d_bn})")
    if cfg.model.g_skip and cfg.model.arch != "dcgan":
        raise ConfigError(f"model.g_skip applies to the dcgan trunk (got model.arch="
                          f"{cfg.model.arch!r})")
    if cfg.model.g_palette and (cfg.model.arch != "dcgan" or cfg.model.g_skip
                                or cfg.model.g_palette < 2):
        raise ConfigError(f"model.g_palette={cfg.model.g_palette}: expected 0 (RGB output) or "
                          f"K >= 2 colours, on the dcgan trunk without model.g_skip (got "
                          f"model.arch={cfg.model.arch!r}, model.g_skip={cfg.model.g_skip})")
    if not cfg.model.g_palette_noise >= 0:  # also refuses nan
        raise ConfigError(f"model.g_palette_noise={cfg.model.g_palette_noise}: expected >= 0 "
                          f"(0 = off)")
    if cfg.model.g_palette_noise and not cfg.model.g_palette:
        raise ConfigError(f"model.g_palette_noise={cfg.model.g_palette_noise} needs a palette "
                          f"output (model.g_palette=K)")
    if cfg.model.g_palette_pick != "soft" and not cfg.model.g_palette:
        raise ConfigError(f"model.g_palette_pick={cfg.model.g_palette_pick!r} needs a palette "
                          f"output (model.g_palette=K)")
    if cfg.model.hier_z and cfg.model.arch != "resnet":
        raise ConfigError(f"model.hier_z needs model.arch=resnet (got {cfg.model.arch!r})")
    if cfg.model.arch == "resnet" and cfg.data.size > 128:
        raise ConfigError(f"data.size={cfg.data.size}: model.arch=resnet supports 32, 64, 128")
    from trainer.models.conditional import HEADS

    if (cfg.loss.topk_nu < 1 and cfg.loss.topk_by == "realness"
            and cfg.model.cond not in ("projection", "projection_acgan")):
        raise ConfigError(f"loss.topk_by=realness ranks fakes by a projection D's score apart "
                          f"from the tags: it needs model.cond=projection or projection_acgan "
                          f"(got {cfg.model.cond!r}; use loss.topk_by=score)")
    if cfg.loss.matching_aware and not HEADS[cfg.model.cond].scores_tags:
        scoring = ", ".join(name for name, head in HEADS.items() if head.scores_tags)
        raise ConfigError(f"loss.matching_aware needs a conditional D (model.cond is "
                          f"{cfg.model.cond!r}; use {scoring})")


def to_yaml(cfg: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def config_sha256(cfg: TrainConfig) -> str:
    """Hash of the resolved config, recorded in checkpoints and ONNX metadata."""
    return hashlib.sha256(to_yaml(cfg).encode()).hexdigest()


def load_run_config(path: str | Path) -> TrainConfig:
    """Read a run folder's config.yaml (or the file itself), validated."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no config.yaml; is this a tagface run folder?")
    return load_config(str(path))
