"""Noise for generators, with the truncation trick; numpy only (the runtime and demo use it too).

Truncation (Brock et al. 2019, BigGAN): coordinates of z whose magnitude exceeds
a threshold are redrawn until they fall inside, trading variety for fidelity.
``psi`` in (0, 1] is the share of each coordinate's N(0, 1) distribution that is
kept: the threshold is the two-sided ``psi`` quantile, so ``psi = 1`` is no
truncation at all, 0.9 keeps |z| <= 1.64, 0.7 keeps |z| <= 1.04 and 0.5 keeps
|z| <= 0.67. The scale is continuous and 1.0 = off, like StyleGAN's psi.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

MAX_REDRAWS = 1000  # each redraw keeps a coordinate with probability psi: never reached in practice


def truncation_threshold(psi: float) -> float:
    """|z| bound for ``psi``: inf for psi = 1 (off), else the two-sided psi quantile of N(0, 1)."""
    if not (isinstance(psi, int | float) and math.isfinite(psi) and 0.0 < psi <= 1.0):
        raise ValueError(f"truncation psi={psi!r}: expected a number in (0, 1] (1 = off)")
    if psi >= 1.0:
        return math.inf
    return NormalDist().inv_cdf(0.5 + psi / 2.0)


def truncate(z: np.ndarray, psi: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``z`` with every coordinate |z| > threshold(psi) redrawn from N(0, 1) until inside.

    Coordinates already inside are returned unchanged, so psi = 1 returns ``z`` as it is.
    """
    bound = truncation_threshold(psi)
    out = np.array(z, dtype=np.float32, copy=True)
    if math.isinf(bound):
        return out
    for _ in range(MAX_REDRAWS):
        outside = np.abs(out) > bound
        n = int(outside.sum())
        if n == 0:
            return out
        out[outside] = rng.standard_normal(n).astype(np.float32)
    out = np.clip(out, -bound, bound)  # unreachable for psi > 0.01; keeps the promise anyway
    return out


def sample_z(n: int, z_dim: int, seed: int | np.random.Generator, psi: float = 1.0) -> np.ndarray:
    """[n, z_dim] float32 noise from ``seed`` (or a Generator), truncated at ``psi`` (1 = off)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    z = rng.standard_normal((n, z_dim), dtype=np.float32)
    return truncate(z, psi, rng)


def slerp(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` noise vectors [frames, D] from ``a`` to ``b`` (both [D] or [1, D]) along
    the great circle between them, the usual latent walk for Gaussian noise: a straight
    line would pass through vectors of atypically small norm. Ends are ``a`` and ``b``."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    t = np.linspace(0.0, 1.0, frames)[:, None]
    cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:  # (anti)parallel: the circle is not defined, walk straight
        out = (1 - t) * a + t * b
    else:
        out = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    out[0], out[-1] = a, b
    return out.astype(np.float32)
