"""The truncation trick (trainer.noise): what is redrawn, what is kept, and no torch."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from trainer.noise import sample_z, truncate, truncation_threshold


def test_threshold_scale():
    assert truncation_threshold(1.0) == math.inf
    assert truncation_threshold(0.5) == pytest.approx(0.6745, abs=1e-4)
    assert truncation_threshold(0.9) == pytest.approx(1.6449, abs=1e-4)
    assert truncation_threshold(0.3) < truncation_threshold(0.7)


@pytest.mark.parametrize("psi", [0.0, -0.5, 1.5, float("nan"), "0.7"])
def test_bad_psi_is_an_error(psi):
    with pytest.raises(ValueError, match="truncation psi"):
        truncation_threshold(psi)


@pytest.mark.parametrize("psi", [0.3, 0.7, 0.95])
def test_only_coordinates_outside_are_redrawn(psi):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((256, 64)).astype(np.float32)
    bound = truncation_threshold(psi)
    out = truncate(z, psi, np.random.default_rng(1))
    inside = np.abs(z) <= bound
    assert np.array_equal(out[inside], z[inside])  # kept exactly
    assert (out[~inside] != z[~inside]).all()  # every outside coordinate redrawn
    assert np.abs(out).max() <= bound
    assert out.shape == z.shape and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_psi_one_is_off_and_input_untouched():
    z = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    before = z.copy()
    assert np.array_equal(truncate(z, 1.0, np.random.default_rng(0)), z)
    truncate(z, 0.5, np.random.default_rng(0))
    assert np.array_equal(z, before)


def test_sample_z_is_seeded():
    a, b = sample_z(4, 10, seed=3, psi=0.6), sample_z(4, 10, seed=3, psi=0.6)
    assert np.array_equal(a, b)
    assert np.array_equal(sample_z(4, 10, seed=3),
                          np.random.default_rng(3).standard_normal((4, 10), dtype=np.float32))


def test_importing_noise_does_not_import_torch():
    code = "import sys, trainer.noise; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
