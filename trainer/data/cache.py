"""Decoded uint8 images, one memory-mapped .npy per dataset and resolution.

Decoding PNGs/JPEGs every epoch costs more CPU than a small GAN step, so each image
is decoded once (in parallel over cores) into ``CACHE_DIR/NAME.npy`` and memory-mapped
by every process and run that uses it: DDP ranks share the pages.

The file name holds two hashes: one of the dataset folder and the options that
change pixels (size, crop, limit), one of the image files' names, sizes and mtimes.
When the files change the second hash changes, the cache is rebuilt and the stale
entry deleted. A build happens under a file lock, into a temporary file that is
renamed into place, with the index written last: processes starting together (DDP
ranks) wait for one builder; a crashed builder leaves nothing that looks complete.
Caches never go into the source folder.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image
from tqdm import tqdm

from trainer.data.formats import DataError, Listing
from trainer.data.transforms import load_image

CACHE_VERSION = 2  # bump when decoding changes pixels (2: 16-bit greyscale scaled)
CHUNK = 256  # images per worker task
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def default_cache_dir() -> Path:
    """$TAGFACE_CACHE, else ~/.cache/tagface."""
    env = os.environ.get("TAGFACE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tagface"


@dataclass(frozen=True)
class CachedImages:
    """A cache entry: images of the listing that decoded, in listing order."""

    path: Path  # the .npy file
    images: np.ndarray  # uint8 [M, 3, S, S], memory-mapped copy-on-write (file stays read-only)
    keep: np.ndarray  # int64 [M]: listing row of each image
    skipped: list[str]  # files that could not be decoded (missing, truncated, not an image)


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def cache_name(listing: Listing, size: int) -> tuple[str, str]:
    """(stem shared by every version of this dataset+options, full file stem)."""
    root = listing.root.resolve()
    options = {"v": CACHE_VERSION, "root": str(root), "format": listing.format,
               "size": size, "crop": listing.crop, "n": len(listing.files)}
    # relative to the root as listed, not the resolved one, so that a folder reached through
    # a symlink (a dataset linked into a work tree or onto scratch) names the same files:
    # one entry, not two that evict each other (and the evaluation caches keyed on it)
    files = [[os.path.relpath(f, listing.root), *_stat(f)] for f in listing.files]
    stem = f"{root.name or 'data'}-{size}px-{_digest(options)[:10]}"
    return stem, f"{stem}-{_digest(files)[:16]}"


def open_cache(npy: Path) -> CachedImages | None:
    """The complete entry at ``npy`` (its index JSON exists and matches), else None."""
    try:
        meta = json.loads(npy.with_suffix(".json").read_text())
        images = np.load(npy, mmap_mode="c")
        keep = np.setdiff1d(np.arange(meta["n"]), meta["failed"]).astype(np.int64)
        skipped = list(meta["skipped"])
    except (OSError, ValueError, KeyError, TypeError):  # absent, half-written, foreign
        return None
    if images.shape[0] != len(keep):
        return None
    return CachedImages(npy, images, keep, skipped)


def _decode_chunk(args: tuple[str, int, Sequence[tuple[int, str]], int | None]) -> list[int]:
    """Decode (row, file) pairs into rows of the .npy at ``path``; return failed rows."""
    path, size, items, crop = args
    out = np.load(path, mmap_mode="r+")
    failed = []
    for row, file in items:
        try:
            out[row] = load_image(file, size, crop)
        except UNREADABLE:
            failed.append(row)
    out.flush()
    return failed


def cpu_count() -> int:
    """Cores this process may use (Slurm and taskset limit them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pool_context() -> multiprocessing.context.BaseContext:
    """fork on Linux: workers need PIL/numpy (or dicebear) only, and spawn would
    re-import torch in each (~3.5 s)."""
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def _decode_all(listing: Listing, size: int, tmp: Path, workers: int) -> list[int]:
    n = len(listing.files)
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
    del arr  # created and zero-filled; workers write rows
    items = [(i, str(f)) for i, f in enumerate(listing.files)]
    tasks = [(str(tmp), size, items[i:i + CHUNK], listing.crop) for i in range(0, n, CHUNK)]
    workers = min(workers or cpu_count(), len(tasks))
    bar = tqdm(total=n, desc=f"decoding {listing.root.name} at {size}px", unit="img",
               disable=None, leave=False)
    failed: list[int] = []
    with bar:
        if workers <= 1:
            for t in tasks:
                failed += _decode_chunk(t)
                bar.update(len(t[2]))
        else:
            with pool_context().Pool(workers) as pool:
                for t, f in zip(tasks, pool.imap(_decode_chunk, tasks), strict=True):
                    failed += f
                    bar.update(len(t[2]))
    return sorted(failed)


def _compact(src_path: Path, keep: np.ndarray, out_path: Path) -> None:
    """Copy the decoded rows ``keep`` to ``out_path``, without the holes of failed images."""
    src = np.load(src_path, mmap_mode="r")
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8,
                                    shape=(len(keep), *src.shape[1:]))
    for i in range(0, len(keep), 4096):
        out[i:i + 4096] = src[keep[i:i + 4096]]
    out.flush()


def build_cache(listing: Listing, npy: Path, size: int, workers: int = 0) -> CachedImages:
    """Decode every image of ``listing`` into ``npy`` (atomically; index written last)."""
    unique = f".{npy.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp, compact = npy.with_name(unique + ".npy"), npy.with_name(unique + ".compact.npy")
    root = listing.root.resolve()
    try:
        failed = _decode_all(listing, size, tmp, workers)
        skipped = [os.path.relpath(listing.files[i], listing.root) for i in failed]
        if len(failed) == len(listing.files):
            raise DataError(f"{listing.root}: none of the {len(failed)} images could be read "
                            f"(first: {', '.join(skipped[:3])})")
        keep = np.setdiff1d(np.arange(len(listing.files)), failed)
        if failed:
            _compact(tmp, keep, compact)
            os.replace(compact, tmp)
        os.replace(tmp, npy)
    finally:
        tmp.unlink(missing_ok=True)
        compact.unlink(missing_ok=True)
    meta = {"source": str(root), "format": listing.format, "size": size, "crop": listing.crop,
            "n": len(listing.files), "failed": failed, "skipped": skipped}
    index_tmp = npy.with_name(unique + ".json")
    index_tmp.write_text(json.dumps(meta))
    os.replace(index_tmp, npy.with_suffix(".json"))
    cached = open_cache(npy)
    if cached is None:
        raise DataError(f"{npy}: the cache just written cannot be read back")
    return cached


def _remove_stale(cache_dir: Path, stem: str, current: str) -> None:
    for p in cache_dir.glob(f"{stem}-*"):
        if p.stem != current and p.suffix in (".npy", ".json", ".lock"):
            p.unlink(missing_ok=True)  # processes still mapping it keep their pages


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def cached_images(listing: Listing, size: int, cache_dir: str | Path | None = None,
                  workers: int = 0) -> CachedImages:
    """The cache entry of ``listing`` at ``size``, built (once, rank-safe) if missing/stale."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if _inside(cache_dir, listing.root):
        raise DataError(f"cache folder {cache_dir} is inside the dataset folder "
                        f"{listing.root}; source folders are never written to")
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem, name = cache_name(listing, size)
    npy = cache_dir / f"{name}.npy"
    cached = open_cache(npy)
    if cached is not None:
        return cached
    with FileLock(cache_dir / f"{name}.lock"):
        cached = open_cache(npy)  # another process may have built it while we waited
        if cached is None:
            cached = build_cache(listing, npy, size, workers)
            _remove_stale(cache_dir, stem, name)
    return cached
