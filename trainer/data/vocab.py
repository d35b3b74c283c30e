"""Tag vocabularies and StarGAN domains: ``tagvocab`` re-exported, plus the MLDS tag set.

The implementation lives in the torch-free top-level package ``tagvocab`` (shared with
``export.runtime`` and the demo); this module keeps the old import path working and
holds the one dataset fact here, the MLDS hair and eye colours. The vocabulary is saved
as vocab.json in every run folder and travels into the ONNX metadata, so that encoding
never depends on Python code from this project.
"""

from __future__ import annotations

from tagvocab import Domains, TagGroup, Vocab, VocabError, load_vocab, save_vocab

__all__ = ["MLDS_EYES", "MLDS_HAIR", "Domains", "TagGroup", "Vocab", "VocabError",
           "load_vocab", "mlds_vocab", "save_vocab"]

MLDS_HAIR = ("orange", "white", "aqua", "gray", "green", "red", "purple",
             "pink", "blue", "black", "brown", "blonde")
MLDS_EYES = ("black", "orange", "pink", "yellow", "aqua", "purple", "green",
             "brown", "red", "blue")


def mlds_vocab() -> Vocab:
    """Hair 12 + eyes 10: the MLDS tag set, also used by the avatars."""
    return Vocab((TagGroup("hair", MLDS_HAIR), TagGroup("eyes", MLDS_EYES, ("eye",))))
