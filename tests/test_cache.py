"""The uint8 cache: reuse, rebuild on change, source untouched, rank-safe building."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.data import DataError, load_dataset, read_listing
from trainer.data import cache as cache_mod


@pytest.fixture
def data(avatar_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the avatars, free to modify."""
    root = tmp_path / "avatars"
    shutil.copytree(avatar_dir, root)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns,
                                       hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def entries(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.glob("*.npy"))


def test_images_match_the_files(data: Path, tmp_path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning about non-writable arrays
        ds = load_dataset(data, size=32, cache_dir=tmp_path / "c")
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (96, 3, 32, 32)
    assert ds.labels.dtype == torch.float32 and len(ds) == 96
    for i in (0, 50, 95):
        png = np.asarray(Image.open(data / "images" / f"{i}.png").convert("RGB"))
        assert np.array_equal(ds.images[i].permute(1, 2, 0).numpy(), png)
        image, label = ds[i]
        assert image.equal(ds.images[i]) and label.equal(ds.labels[i])
    half = load_dataset(data, size=16, cache_dir=tmp_path / "c")
    assert half.images.shape == (96, 3, 16, 16) and len(entries(tmp_path / "c")) == 2


def test_reused_without_decoding(data: Path, tmp_path: Path, monkeypatch):
    first = load_dataset(data, size=32, cache_dir=tmp_path / "c")

    def fail(*_):
        raise AssertionError("decoded again")
    monkeypatch.setattr(cache_mod, "_decode_chunk", fail)
    again = load_dataset(data, size=32, cache_dir=tmp_path / "c")
    assert again.cache_file == first.cache_file and again.images.equal(first.images)


def test_rebuilt_when_the_source_changes(data: Path, tmp_path: Path):
    first = load_dataset(data, size=32, cache_dir=tmp_path / "c")
    old = first.cache_file
    Image.new("RGB", (32, 32), (1, 2, 3)).save(data / "images" / "7.png")
    second = load_dataset(data, size=32, cache_dir=tmp_path / "c")
    assert second.cache_file != old and not old.exists()  # stale entry removed
    assert (second.images[7] == torch.tensor([1, 2, 3])[:, None, None]).all()
    assert second.images[6].equal(first.images[6])  # the old mapping still reads fine
    os.utime(data / "images" / "3.png", ns=(1, 1))  # same bytes, other mtime
    assert load_dataset(data, size=32, cache_dir=tmp_path / "c").cache_file != second.cache_file
    assert len(entries(tmp_path / "c")) == 1


def test_a_symlinked_folder_shares_the_entry(data: Path, tmp_path: Path, monkeypatch):
    first = load_dataset(data, size=32, cache_dir=tmp_path / "c")
    link = tmp_path / "work" / "data"
    link.parent.mkdir()
    link.symlink_to(data, target_is_directory=True)

    def fail(*_):
        raise AssertionError("decoded again")
    monkeypatch.setattr(cache_mod, "_decode_chunk", fail)
    linked = load_dataset(link, size=32, cache_dir=tmp_path / "c")  # reused, not rebuilt
    assert linked.cache_file == first.cache_file and first.cache_file.exists()
    assert linked.images.equal(first.images) and len(entries(tmp_path / "c")) == 1


def test_limit_keeps_its_own_entry(data: Path, tmp_path: Path):
    full = load_dataset(data, size=32, cache_dir=tmp_path / "c")
    tiny = load_dataset(data, size=32, cache_dir=tmp_path / "c", limit=10)
    assert len(tiny) == 10 and tiny.images.equal(full.images[:10]) and full.cache_file.exists()


def test_source_folder_never_written(data: Path, tmp_path: Path):
    before = snapshot(data)
    load_dataset(data, size=32, cache_dir=tmp_path / "c")
    load_dataset(data, size=32, cache_dir=tmp_path / "c", attrs=["Blond_Hair", "Short_Hair"])
    assert snapshot(data) == before
    with pytest.raises(DataError, match="inside the dataset folder.*never written to"):
        load_dataset(data, size=32, cache_dir=data / ".cache")
    assert snapshot(data) == before


def test_default_cache_dir_from_environment(data: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TAGFACE_CACHE", str(tmp_path / "env"))
    ds = load_dataset(data, size=32)
    assert ds.cache_file.parent == tmp_path / "env"
    monkeypatch.delenv("TAGFACE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_mod.default_cache_dir() == tmp_path / "home" / ".cache" / "tagface"


def test_parallel_decoding_equals_serial(data: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(cache_mod, "CHUNK", 16)  # 6 tasks over 2 worker processes
    listing = read_listing(data)
    par = cache_mod.build_cache(listing, tmp_path / "par.npy", 32, workers=2)
    ser = cache_mod.build_cache(listing, tmp_path / "ser.npy", 32, workers=1)
    assert np.array_equal(par.images, ser.images) and par.keep.tolist() == list(range(96))


def _load_in_child(root: str, cache_dir: str, barrier, results) -> None:
    barrier.wait()  # start together, like DDP ranks
    ds = load_dataset(root, size=32, cache_dir=cache_dir)
    # numpy, not torch: a torch op in a child forked after torch used OpenMP can hang
    results.put((str(ds.cache_file), int(ds.images.numpy().sum(dtype=np.int64))))


def test_processes_starting_together_build_once(data: Path, tmp_path: Path):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_load_in_child,
                         args=(str(data), str(tmp_path / "c"), barrier, results))
             for _ in range(3)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(got)) == 1
    assert entries(tmp_path / "c") == [Path(got[0][0]).name]
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]  # no temp files


def test_broken_entry_is_rebuilt(data: Path, tmp_path: Path):
    ds = load_dataset(data, size=32, cache_dir=tmp_path / "c")
    ds.cache_file.with_suffix(".json").write_text("{not json")
    assert load_dataset(data, size=32, cache_dir=tmp_path / "c").images.equal(ds.images)
    ds.cache_file.with_suffix(".json").unlink()  # builder died before the index
    assert load_dataset(data, size=32, cache_dir=tmp_path / "c").images.equal(ds.images)


def test_in_place_edits_stay_private(data: Path, tmp_path: Path):
    ds = load_dataset(data, size=32, cache_dir=tmp_path / "c")
    digest = hashlib.sha256(ds.cache_file.read_bytes()).hexdigest()
    ds.images[0].zero_()
    assert hashlib.sha256(ds.cache_file.read_bytes()).hexdigest() == digest
    assert load_dataset(data, size=32, cache_dir=tmp_path / "c").images[0].sum() > 0


def test_pickles_by_file_name_and_feeds_a_dataloader(data: Path, tmp_path: Path):
    ds = load_dataset(data, size=32, cache_dir=tmp_path / "c")
    blob = pickle.dumps(ds)
    assert len(blob) < 96 * 3 * 32 * 32 // 4  # the pixels are not in the pickle
    back = pickle.loads(blob)
    assert back.images.equal(ds.images) and back.labels.equal(ds.labels)
    assert back.vocab == ds.vocab and back.format == "avatars"
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)))
    assert images.shape == (8, 3, 32, 32) and labels.shape == (8, 22)
