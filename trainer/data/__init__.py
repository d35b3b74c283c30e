"""Datasets: read a folder in any supported format, decode once, serve uint8 tensors.

``load_dataset(path)`` detects the format (trainer.data.formats), decodes the images
once into a memory-mapped cache (trainer.data.cache) and returns an ``ImageDataset``.
The training loop turns its uint8 batches into model input with
``trainer.data.transforms.to_model_input``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from trainer.data.cache import CachedImages, cached_images, default_cache_dir, open_cache
from trainer.data.formats import (
    FORMATS,
    DataError,
    DataWarning,
    Listing,
    detect_format,
    read_listing,
)
from trainer.data.transforms import load_image, to_model_input
from trainer.data.vocab import (
    Domains,
    TagGroup,
    Vocab,
    VocabError,
    load_vocab,
    mlds_vocab,
    save_vocab,
)

if TYPE_CHECKING:
    from trainer.config import DataConfig

__all__ = ["FORMATS", "DataError", "DataWarning", "Domains", "ImageDataset", "Listing", "TagGroup",
           "Vocab", "VocabError", "default_cache_dir", "detect_format", "load_configured_dataset",
           "load_dataset", "load_image", "load_vocab", "mlds_vocab", "read_listing", "save_vocab",
           "to_model_input"]


class ImageDataset(torch.utils.data.Dataset):
    """Decoded images and their labels; ``ds[i]`` is (uint8 [3, S, S], float32 [K]).

    ``images`` is backed by the cache file, mapped copy-on-write: the file is opened
    read-only and shared between processes, and torch gets the writable buffer it wants
    (an in-place edit would stay private to the process). Pickling (DataLoader workers
    under spawn) sends the file name, not the pixels.
    """

    def __init__(self, cached: CachedImages, listing: Listing) -> None:
        self.cache_file = cached.path
        self.source = listing.root  # dataset folder
        self.format = listing.format  # detected or forced format name
        self.vocab = listing.vocab  # Vocab (tags), Domains (attributes) or None
        self.files = [listing.files[i] for i in cached.keep]  # source image of each row
        self.labels = torch.from_numpy(np.ascontiguousarray(listing.labels[cached.keep]))
        self.images = torch.from_numpy(cached.images)  # uint8 [N, 3, S, S]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "images"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        cached = open_cache(self.cache_file)
        if cached is None:
            raise DataError(f"{self.cache_file}: cache entry vanished; load the dataset again")
        self.images = torch.from_numpy(cached.images)

    def __repr__(self) -> str:
        return (f"ImageDataset({self.source}, format={self.format}, n={len(self)}, "
                f"size={self.size}, labels={list(self.labels.shape)})")


def load_dataset(path: str | Path, *, format: str = "auto", size: int = 64,
                 cache_dir: str | Path | None = None, attrs: Sequence[str] = (),
                 mlds_strict: bool = True, limit: int = 0,
                 any_of: Sequence[str] = ()) -> ImageDataset:
    """Read the dataset in ``path`` and return its images at ``size`` x ``size``.

    format: auto | avatars | adl | mlds | cartoon | cartoonset | celeba | folder.
    attrs: StarGAN attributes (list_attr columns) or Cartoon Set CSV attributes.
    mlds_strict: MLDS keeps only images with exactly one hair and one eye colour tag.
    limit: use the first ``limit`` images only (0 = all); tiny runs decode only those.
    any_of: keep only images with at least one of these ``attrs`` (before ``limit``).
    Unreadable images are skipped with one DataWarning; bad label files raise DataError.
    """
    if size <= 0:
        raise DataError(f"size={size}: must be > 0")
    listing = read_listing(path, format, attrs, mlds_strict).with_any_of(any_of).head(limit)
    cached = cached_images(listing, size, cache_dir)
    if cached.skipped:
        first = ", ".join(cached.skipped[:3]) + (", ..." if len(cached.skipped) > 3 else "")
        warnings.warn(f"{listing.root}: skipped {len(cached.skipped)} of {len(listing.files)} "
                      f"images that could not be read: {first}", DataWarning, stacklevel=2)
    return ImageDataset(cached, listing)


def load_configured_dataset(data: DataConfig, path: str | Path | None = None) -> ImageDataset:
    """The dataset a config's ``data`` section describes (trainer.config.DataConfig).

    ``path`` replaces ``data.path`` (the format is then detected again).
    """
    return load_dataset(path or data.path, format="auto" if path else data.format,
                        size=data.size, cache_dir=data.cache_dir or None, attrs=data.attrs,
                        mlds_strict=data.mlds_strict, limit=data.limit, any_of=data.any_of)
