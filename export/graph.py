"""What an exported generator's graph takes and gives, and the export's errors.

``signature`` asks the run's family (trainer/families.py, ``Family.graph``) for the
input names and shapes and the output name; ``random_inputs`` draws plausible inputs
for them; ``WRAPPERS`` maps a tuple of input names to the module whose ``forward``
arguments become the ONNX input names (a family with a new set of inputs adds one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainer.config import ConfigError, TrainConfig
from trainer.data.vocab import Domains, Vocab
from trainer.families import family_of


class ExportError(ValueError):
    """A run folder, checkpoint or option that cannot be exported; the message says why."""


class ParityError(ExportError):
    """ONNX Runtime disagrees with PyTorch beyond the tolerance."""


class NonFiniteOutput(ExportError):
    """The generator gives NaN/inf before export: a broken model is never written."""


# -- what the graph takes ------------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    kind: str  # the model family (trainer/families.py): "gan" | "stargan"
    inputs: dict[str, tuple[int, ...]]  # name -> shape without the batch axis, in order
    output: str
    group_sizes: tuple[int, ...] = ()  # tag groups (GAN) for valid random one-hots


def signature(cfg: TrainConfig, vocab: Vocab | Domains | None) -> Signature:
    """Inputs and output of the exported generator of ``cfg`` (its family's ``graph``)."""
    family = family_of(cfg)
    try:
        io = family.graph(cfg, vocab)
    except ConfigError as e:  # labels that do not fit the family
        raise ExportError(str(e)) from None
    return Signature(family.name, dict(io.inputs), io.output, io.group_sizes)


def random_inputs(sig: Signature, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Plausible inputs: z ~ N(0, 1), valid one-hot tags, images in [-1, 1], 0/1 domains
    (target and source alike)."""
    out: dict[str, np.ndarray] = {}
    for name, shape in sig.inputs.items():
        if name == "z":
            out[name] = rng.standard_normal((batch, *shape), dtype=np.float32)
        elif name == "tags":
            t = np.zeros((batch, *shape), dtype=np.float32)
            offset = 0
            for size in sig.group_sizes:
                t[np.arange(batch), offset + rng.integers(size, size=batch)] = 1.0
                offset += size
            out[name] = t
        elif name == "image":
            out[name] = rng.uniform(-1, 1, (batch, *shape)).astype(np.float32)
        else:
            out[name] = rng.integers(0, 2, (batch, *shape)).astype(np.float32)
    return out


class _Unconditional(nn.Module):
    """G(z): the argument names of these forwards become the ONNX input names."""

    def __init__(self, g: nn.Module):
        super().__init__()
        self.g = g

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.g(z)


class _Conditional(_Unconditional):
    def forward(self, z: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.g(z, tags)


class _StarGAN(_Unconditional):
    def forward(self, image: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.g(image, domains)


class _StarGANSource(_Unconditional):
    """model.g_condition=difference: G also takes the input's own domains."""

    def forward(self, image: torch.Tensor, domains: torch.Tensor,  # type: ignore[override]
                source: torch.Tensor) -> torch.Tensor:
        return self.g(image, domains, source)


WRAPPERS: dict[tuple[str, ...], type[_Unconditional]] = {
    ("z",): _Unconditional, ("z", "tags"): _Conditional, ("image", "domains"): _StarGAN,
    ("image", "domains", "source"): _StarGANSource}


def wrap(model: nn.Module, sig: Signature) -> nn.Module:
    """The wrapper whose forward takes the signature's inputs, by name."""
    return WRAPPERS[tuple(sig.inputs)](model).eval()
