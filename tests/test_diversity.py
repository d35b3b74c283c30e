"""The spread and grain measures of trainer.evaluate.diversity on images built to known values."""

from __future__ import annotations

import pytest
import torch

from trainer.evaluate.diversity import grain, pixel_std, spread


def flat(k: int, value: int = 200, size: int = 16) -> torch.Tensor:
    return torch.full((k, 3, size, size), value, dtype=torch.uint8)


def speckled(k: int, amplitude: int, seed: int = 0, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(-amplitude, amplitude + 1, (k, 3, size, size), generator=g)
    return (150 + noise).clamp(0, 255).to(torch.uint8)


def test_grain_is_zero_on_flat_images_and_linear_ramps():
    assert grain(flat(2)) == 0.0
    ramp = torch.arange(16, dtype=torch.uint8).mul(10).expand(1, 3, 16, 16).contiguous()
    assert grain(ramp) == pytest.approx(0.0, abs=1e-7)  # a ramp has no second derivative


def test_grain_of_a_checkerboard():
    """+-a alternating pixels: |4a + 4a| = 8a at every interior pixel."""
    i = torch.arange(8)
    board = ((i[:, None] + i[None, :]) % 2 * 2 - 1).float()  # +-1
    img = (128 + 10 * board).to(torch.uint8).expand(1, 3, 8, 8)
    assert grain(img) == pytest.approx(8 * 10 / 255, rel=1e-5)


def test_grain_grows_with_the_noise():
    assert grain(speckled(4, 5)) < grain(speckled(4, 20)) < grain(speckled(4, 60))


def test_spread_ratios():
    real = [speckled(6, 10, seed=1), speckled(6, 10, seed=2)]
    noisy = [speckled(6, 40, seed=3), speckled(6, 40, seed=4)]
    out = spread(noisy, real, msssim=False)
    assert out["grain_ratio"] > 2  # 4x the noise amplitude
    assert out["grain_real"] == pytest.approx(
        (grain(real[0]) + grain(real[1])) / 2)
    collapsed = [flat(6), flat(6, 90)]  # every z draws the same image
    out = spread(collapsed, real, msssim=False)
    assert out["pixel_std_fake"] == 0.0 and out["pixel_std_ratio"] == 0.0
    assert out["grain_ratio"] == 0.0
    assert pixel_std(torch.stack([flat(1)[0], flat(1, 0)[0]])) > 0
