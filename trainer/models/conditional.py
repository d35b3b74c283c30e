"""Tag-conditioned DCGAN: the generator and the discriminator with its conditioning heads.

G (reports 000/001): tags -> Linear -> BatchNorm1d -> LeakyReLU(0.2) (width
``tag_embed``; 0 keeps the raw one-hot as in report 001's 122-dim input),
concatenated with z and fed to a DCGAN or ML2020 trunk.

D: a trunk down to 4x4 features, an optional minibatch-std channel, then one
head per conditioning mode (registry ``HEADS``, chosen by ``model.cond``):

- ``none``: a 4x4 conv to one logit (pytorch/examples).
- ``spatial`` (report 000): projected tags replicated over the 4x4 map,
  concatenated as channels, then the 4x4 conv.
- ``dense`` (report 002): features flattened, projected tags appended, then two
  dense layers. The tags do not outweigh the image, which report 002 found to
  stop the collapse of the spatial variant.
- ``projection`` (Miyato & Koyama 2018; report 001 scores the inner product of a
  22-dim output with the label): logit = psi(phi(x)) + <V y, phi(x)>, with phi(x)
  the flattened 4x4 features, so the tag term can look at where hair and eyes are.
- ``acgan`` (report 004): the unconditional logit plus one classifier per tag
  group (bottleneck 4x4 conv + LeakyReLU, then Linear -> LeakyReLU -> Linear).
- ``projection_acgan``: the projection logit plus ``acgan``'s classifiers, so D
  both scores the (image, tags) pair and names each group's tag; the classifiers'
  loss (``loss.aux``) gives G a direct per-group signal on every fake.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.config import ConfigError, ModelConfig, TrainConfig
from trainer.models.dcgan import DCGANEncoder, DCGANGenerator, ML2020Encoder, ML2020Generator
from trainer.models.layers import DOutput, MinibatchStd, dcgan_init, maybe_sn
from trainer.models.resnet import ResNetEncoder, ResNetGenerator

# model.arch -> (generator trunk, discriminator body). A trunk with ``conditional_norm``
# takes (z, tag embedding) and uses the embedding in its normalisation layers; the
# others take [z | embedding] as one vector.
TRUNKS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "dcgan": (DCGANGenerator, DCGANEncoder),
    "ml2020": (ML2020Generator, ML2020Encoder),
    "resnet": (ResNetGenerator, ResNetEncoder),
}


class TagProjection(nn.Module):
    """tags [B, K] -> Linear -> (BatchNorm1d) -> LeakyReLU(0.2) -> [B, width].

    ``width=0`` is the identity: the raw one-hot is used as is.
    """

    def __init__(self, n_tags: int, width: int, bn: bool = True, sn: bool = False):
        super().__init__()
        self.out_dim = width if width > 0 else n_tags
        if width > 0:
            layers: list[nn.Module] = [maybe_sn(nn.Linear(n_tags, width), sn)]
            if bn:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.LeakyReLU(0.2, True))
            self.main: nn.Module = nn.Sequential(*layers)
        else:
            self.main = nn.Identity()

    def forward(self, tags: torch.Tensor) -> torch.Tensor:
        return self.main(tags)


class TagEmbedding(nn.Module):
    """tags [B, K] -> [B, width]: the sum over tag groups of one learnt vector per tag.

    A bias-free linear map of the concatenated one-hots is exactly that sum; an
    untagged group (all zeros) adds nothing. ``width=0``: the raw one-hot.
    """

    def __init__(self, n_tags: int, width: int):
        super().__init__()
        self.out_dim = width if width > 0 else n_tags
        self.main = nn.Linear(n_tags, width, bias=False) if width > 0 else nn.Identity()

    def forward(self, tags: torch.Tensor) -> torch.Tensor:
        return self.main(tags)


class Generator(nn.Module):
    """G(z [B, z_dim], tags [B, n_cond] | None) -> image [B, 3, S, S] in [-1, 1].

    DCGAN / ML2020 trunks take [z | TagProjection(tags)] as one vector (reports
    000/001); the ResNet trunk takes z and a summed tag embedding that drives its
    conditional BatchNorms (SNGAN-projection, BigGAN).
    """

    def __init__(self, cfg: ModelConfig, image_size: int, n_cond: int = 0):
        super().__init__()
        self.z_dim = cfg.z_dim
        self.n_cond = n_cond  # 0: unconditional (tags ignored)
        self.image_size = image_size
        trunk, _ = TRUNKS[cfg.arch]
        self.joint = not getattr(trunk, "conditional_norm", False)  # z and tags as one vector
        proj_cls = TagProjection if self.joint else TagEmbedding
        self.proj = proj_cls(n_cond, cfg.tag_embed) if n_cond else None
        e_dim = self.proj.out_dim if self.proj is not None else 0
        if self.joint:
            self.net = trunk(cfg.z_dim + e_dim, image_size, cfg.g_ch,
                             upsample=cfg.g_upsample, skip=cfg.g_skip,
                             palette=cfg.g_palette,
                             palette_pick=cfg.g_palette_pick,
                             palette_noise=cfg.g_palette_noise)  # initialises itself
        else:
            self.net = trunk(cfg.z_dim, e_dim, image_size, cfg.g_ch, hier_z=cfg.hier_z)
        if self.proj is not None:
            self.proj.apply(dcgan_init)

    def forward(self, z: torch.Tensor, tags: torch.Tensor | None = None) -> torch.Tensor:
        e = None
        if self.proj is not None:
            if tags is None:
                raise ValueError(f"this generator is conditional: pass tags [B, {self.n_cond}]")
            e = self.proj(tags.to(z.dtype))  # [B, E]
        if not self.joint:
            return self.net(z, e)
        return self.net(z if e is None else torch.cat([z, e], dim=1))  # [B, z_dim + E]


# -- discriminator heads ------------------------------------------------------
class Head(nn.Module):
    """Maps 4x4 features h [B, C, 4, 4] (and tags) to (score [B], aux | None).

    A new head is a subclass and one line in ``HEADS`` (its name becomes a
    ``model.cond`` choice). ``conditional``: G takes tags (every head but ``none``);
    ``scores_tags``: the score depends on the tags, so D needs them and the
    matching-aware loss can use wrong ones.
    """

    conditional: bool = True
    scores_tags: bool = True

    def __init__(
        self,
        in_ch: int,  # channels of h (trunk channels, +1 with minibatch std)
        group_sizes: list[int],  # tags per group; sum = K
        cfg: ModelConfig,
        bias: bool,  # bias on the final 4x4 conv (ML2020 yes, DCGAN no)
    ):
        super().__init__()

    def forward(self, h: torch.Tensor,
                tags: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        raise NotImplementedError

    def score(self, h: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """The score alone: what the matching-aware case reads for wrong tags."""
        return self(h, tags)[0]


class UnconditionalHead(Head):
    conditional = scores_tags = False

    def __init__(self, in_ch, group_sizes, cfg, bias):
        super().__init__(in_ch, group_sizes, cfg, bias)
        self.out = maybe_sn(nn.Conv2d(in_ch, 1, 4, 1, 0, bias=bias), cfg.spectral_norm)  # [B,1,1,1]

    def forward(self, h, tags):
        return self.out(h).flatten(), None


class SpatialHead(Head):
    def __init__(self, in_ch, group_sizes, cfg, bias):
        super().__init__(in_ch, group_sizes, cfg, bias)
        self.proj = TagProjection(sum(group_sizes), cfg.d_tag_embed, bn=cfg.d_bn,
                                  sn=cfg.spectral_norm)
        self.out = maybe_sn(nn.Conv2d(in_ch + self.proj.out_dim, 1, 4, 1, 0, bias=bias),
                            cfg.spectral_norm)

    def forward(self, h, tags):
        e = self.proj(tags.to(h.dtype))[:, :, None, None].expand(-1, -1, *h.shape[2:])  # [B,E,4,4]
        return self.out(torch.cat([h, e], dim=1)).flatten(), None


class DenseHead(Head):
    def __init__(self, in_ch, group_sizes, cfg, bias):
        super().__init__(in_ch, group_sizes, cfg, bias)
        sn = cfg.spectral_norm
        self.proj = TagProjection(sum(group_sizes), cfg.d_tag_embed, bn=cfg.d_bn, sn=sn)
        layers: list[nn.Module] = [
            maybe_sn(nn.Linear(in_ch * 16 + self.proj.out_dim, cfg.d_hidden), sn),  # [B, hidden]
            nn.LeakyReLU(0.2, True),
        ]
        if cfg.d_dropout > 0:
            layers.append(nn.Dropout(cfg.d_dropout))
        layers.append(maybe_sn(nn.Linear(cfg.d_hidden, 1), sn))  # [B, 1]
        self.mlp = nn.Sequential(*layers)

    def forward(self, h, tags):
        x = torch.cat([h.flatten(1), self.proj(tags.to(h.dtype))], dim=1)  # [B, C*16 + E]
        return self.mlp(x).flatten(), None


class ProjectionHead(Head):
    def __init__(self, in_ch, group_sizes, cfg, bias):
        super().__init__(in_ch, group_sizes, cfg, bias)
        self.out = maybe_sn(nn.Conv2d(in_ch, 1, 4, 1, 0, bias=bias), cfg.spectral_norm)  # psi
        self.embed = maybe_sn(nn.Linear(sum(group_sizes), in_ch * 16, bias=False),  # V
                              cfg.spectral_norm)

    def forward(self, h, tags):
        inner = (self.embed(tags.to(h.dtype)) * h.flatten(1)).sum(dim=1)  # <V y, phi(x)> [B]
        return self.out(h).flatten() + inner, None


def _add_classifiers(head: Head, in_ch: int, group_sizes: list[int], cfg: ModelConfig) -> None:
    """ACGAN's tag classifiers on ``head`` (report 004): ``bottleneck`` Conv2d(C, C, 4) +
    LeakyReLU -> [B, C], then per group Linear -> LeakyReLU -> Linear (``classifiers``)."""
    sn = cfg.spectral_norm
    head.bottleneck = nn.Sequential(maybe_sn(nn.Conv2d(in_ch, in_ch, 4, 1, 0), sn),
                                    nn.LeakyReLU(0.2, True))
    head.classifiers = nn.ModuleList(
        nn.Sequential(maybe_sn(nn.Linear(in_ch, cfg.d_hidden), sn),
                      nn.LeakyReLU(0.2, True),
                      maybe_sn(nn.Linear(cfg.d_hidden, n), sn))  # [B, n_g] logits
        for n in group_sizes)


def _classify(head: Head, h: torch.Tensor) -> list[torch.Tensor]:
    b = head.bottleneck(h).flatten(1)  # [B, C]
    return [c(b) for c in head.classifiers]


class ACGANHead(Head):
    scores_tags = False  # the tags are classified, not scored

    def __init__(self, in_ch, group_sizes, cfg, bias):
        super().__init__(in_ch, group_sizes, cfg, bias)
        self.out = maybe_sn(nn.Conv2d(in_ch, 1, 4, 1, 0, bias=bias), cfg.spectral_norm)
        _add_classifiers(self, in_ch, group_sizes, cfg)

    def forward(self, h, tags):
        return self.out(h).flatten(), _classify(self, h)


class ProjectionACGANHead(ProjectionHead):
    """The projection score plus ACGAN's per-group classifiers."""

    def __init__(self, in_ch, group_sizes, cfg, bias):
        super().__init__(in_ch, group_sizes, cfg, bias)
        _add_classifiers(self, in_ch, group_sizes, cfg)

    def forward(self, h, tags):
        return self.score(h, tags), _classify(self, h)

    def score(self, h, tags):  # the classifiers' output would be dropped: not run
        return super().forward(h, tags)[0]


HEADS: dict[str, type[Head]] = {
    "none": UnconditionalHead,
    "spatial": SpatialHead,
    "dense": DenseHead,
    "projection": ProjectionHead,
    "acgan": ACGANHead,
    "projection_acgan": ProjectionACGANHead,
}


class Discriminator(nn.Module):
    """D(image [B, 3, S, S], tags [B, K] | None) -> DOutput(score [B], aux, features [B, F])."""

    def __init__(self, cfg: ModelConfig, image_size: int, group_sizes: list[int],
                 augment: nn.Module | None = None):
        super().__init__()
        self.augment = augment  # differentiable augmentation of every input (trainer.augment)
        self.cond = cfg.cond
        self.group_sizes = list(group_sizes)
        _, body = TRUNKS[cfg.arch]
        norm = {"norm": cfg.d_norm} if cfg.d_norm != "batch" else {}  # the dcgan trunks
        self.body = body(image_size, cfg.d_ch, bn=cfg.d_bn, dropout=cfg.d_dropout,
                         sn=cfg.spectral_norm, **norm)
        self.mbstd = MinibatchStd() if cfg.minibatch_std else None
        in_ch = self.body.out_ch + (1 if self.mbstd is not None else 0)
        self.head = HEADS[cfg.cond](in_ch, self.group_sizes, cfg, bias=self.body.bias)
        self.head.apply(dcgan_init)  # the body initialises itself

    def forward(self, x: torch.Tensor, tags: torch.Tensor | None = None,
                wrong_tags: torch.Tensor | None = None) -> DOutput:
        """Scores ``x`` under ``tags``, and under ``wrong_tags`` too if given.

        The matching-aware loss scores real images with their own and with wrong
        tags; the image trunk (nearly all of D's cost) runs once for both.
        ``wrong_tags`` may hold several draws, [n * B, K] draw-major: the head then
        scores the same features under each, and ``score_wrong`` is [n * B].
        """
        if tags is None and self.head.scores_tags:
            raise ValueError(f"model.cond={self.cond!r}: D needs tags [B, {sum(self.group_sizes)}]")
        if self.augment is not None and self.training:
            x = self.augment(x)
        h = self.body(x)  # [B, C, 4, 4]
        features = h.flatten(1)  # [B, C*16]
        if self.mbstd is not None:
            h = self.mbstd(h)  # [B, C+1, 4, 4]
        score, aux = self.head(h, tags)
        score_wrong = None
        if wrong_tags is not None:
            draws, rest = divmod(wrong_tags.shape[0], h.shape[0])
            if rest or not draws:
                raise ValueError(f"wrong_tags has {wrong_tags.shape[0]} rows; expected a "
                                 f"multiple of the {h.shape[0]} images")
            score_wrong = self.head.score(h.repeat(draws, 1, 1, 1) if draws > 1 else h,
                                          wrong_tags)
        return DOutput(score, aux, features, score_wrong)


def is_conditional(cfg: TrainConfig) -> bool:
    """Whether the tag-GAN generator takes tags: its D head (``model.cond``) is conditional."""
    return HEADS[cfg.model.cond].conditional


def _needs_tags(cfg: TrainConfig) -> ConfigError:
    return ConfigError(f"model.cond={cfg.model.cond!r} needs a dataset with tags; this one "
                       f"has none (use model.cond=none)")


def build_tag_generator(cfg: TrainConfig, n_cond: int) -> Generator:
    """The tag GAN's generator; ``n_cond`` (tags) is ignored when unconditional."""
    if is_conditional(cfg) and n_cond <= 0:
        raise _needs_tags(cfg)
    return Generator(cfg.model, cfg.data.size, n_cond if is_conditional(cfg) else 0)


def build_tag_discriminator(cfg: TrainConfig, group_sizes: list[int],
                            augment: nn.Module | None = None) -> Discriminator:
    """The tag GAN's discriminator over ``group_sizes`` tags per group."""
    if is_conditional(cfg) and not group_sizes:
        raise _needs_tags(cfg)
    return Discriminator(cfg.model, cfg.data.size, list(group_sizes), augment=augment)
