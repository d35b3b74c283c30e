"""Shared data fixtures: a tiny avatar dataset rendered once, and an isolated cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.data.avatars import generate_avatars

AVATAR_COUNT, AVATAR_SIZE = 96, 32


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory: pytest.TempPathFactory):
    """Every test session decodes into its own cache, never ~/.cache/tagface.

    Set in os.environ so that subprocesses (training runs) inherit it.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGFACE_CACHE", str(tmp_path_factory.mktemp("tagface_cache")))
        yield


@pytest.fixture(scope="session")
def avatar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 avatars at 32 px (seed 0), rendered once per session (~2 s). Do not modify."""
    out = tmp_path_factory.mktemp("data") / "avatars"
    generate_avatars(out, AVATAR_COUNT, AVATAR_SIZE, seed=0, workers=2, progress=False)
    return out
