"""Drawing images from a generator and from the dataset, as uint8, reproducibly.

Every metric reads uint8 images (what a saved PNG holds), so generated and real
images go through the same quantisation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from trainer.modes import eval_mode, to_uint8
from trainer.noise import truncate


def generator_z_dim(G: nn.Module, default: int = 100) -> int:
    """z size of a DCGAN-family generator (``z_dim`` attribute, else ``default``)."""
    return int(getattr(G, "z_dim", default))


class Truncated(nn.Module):
    """A generator whose z is truncated at ``psi`` (trainer.noise) before every call.

    Every metric that draws z then measures the truncated distribution without a
    change of its own. The redraws come from a numpy stream seeded once, so an
    evaluation is repeatable.
    """

    def __init__(self, G: nn.Module, psi: float, seed: int = 0):
        super().__init__()
        self.inner = G
        self.psi = psi
        self.z_dim = generator_z_dim(G)
        self.n_cond = getattr(G, "n_cond", 0)
        self._rng = np.random.default_rng(seed)

    def forward(self, z: torch.Tensor, tags: torch.Tensor | None = None) -> torch.Tensor:
        zt = truncate(z.detach().float().cpu().numpy(), self.psi, self._rng)
        return self.inner(torch.from_numpy(zt).to(z.device, z.dtype), tags)


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, tags: torch.Tensor | None,
             batch: int = 128) -> torch.Tensor:
    """uint8 images of G(z, tags), in eval mode, ``batch`` at a time (G's mode is restored)."""
    out = []
    with eval_mode(G) as put:
        for i in range(0, len(z), batch):
            t = None if tags is None else tags[i:i + batch]
            out.append(to_uint8(G(put(z[i:i + batch]), put(t))))
    return torch.cat(out) if out else torch.zeros(0, 3, 1, 1, dtype=torch.uint8)


def iter_generate(G: nn.Module, z: torch.Tensor, tags: torch.Tensor | None,
                  batch: int = 64) -> Iterator[torch.Tensor]:
    """Like ``generate`` but one uint8 batch at a time (for streaming into FID)."""
    for i in range(0, len(z), batch):
        yield generate(G, z[i:i + batch], None if tags is None else tags[i:i + batch], batch)


@torch.no_grad()
def translate_float(G: nn.Module, images: torch.Tensor, targets: torch.Tensor | np.ndarray,
                    sources: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """StarGAN: G(images [B,3,S,S] in [-1,1], targets [B,n] or one [n] for all, the inputs'
    own domains ``sources`` likewise, for ``model.g_condition=difference``) in eval mode
    -> float [B,3,S,S] on the CPU."""
    def rows(v: torch.Tensor | np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(v, dtype=torch.float32)
        return t.expand(images.shape[0], -1) if t.dim() == 1 else t
    with eval_mode(G) as put:
        src = None if sources is None else put(rows(sources))
        return G(put(images), put(rows(targets)), src).float().cpu()


@torch.no_grad()
def translate(G: nn.Module, images: torch.Tensor, domains: torch.Tensor,
              source: torch.Tensor | None = None, batch: int = 32) -> torch.Tensor:
    """StarGAN: uint8 translations of uint8 ``images`` to ``domains`` [N, n_domains], in
    batches; ``source`` [N, n_domains]: the images' own domains (see translate_float)."""
    out = [to_uint8(translate_float(G, images[i:i + batch].float().div(127.5).sub(1.0),
                                    domains[i:i + batch],
                                    None if source is None else source[i:i + batch]))
           for i in range(0, len(images), batch)]
    return torch.cat(out) if out else torch.zeros(0, *images.shape[1:], dtype=torch.uint8)


def sample_indices(n_total: int, n: int, seed: int) -> torch.Tensor:
    """``min(n, n_total)`` distinct indices, a fixed random choice per seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:min(n, n_total)]


def real_batches(images: torch.Tensor, idx: torch.Tensor, batch: int = 64) -> Iterator[torch.Tensor]:
    """uint8 batches of ``images[idx]`` (reads the memory map lazily)."""
    for i in range(0, len(idx), batch):
        yield images[idx[i:i + batch]].contiguous()
