"""tagvocab: tag groups and StarGAN domains, the one description of a model's conditioning.

Numpy only (importing it never imports torch), so the trainer, the export metadata, the
torch-free runtime (``export.runtime``, which rebuilds both from the .onnx metadata) and
the demo share one parser, one tag lookup and one domain flip.

- ``Vocab`` / ``TagGroup`` (tagvocab.tags): groups of mutually exclusive tags (hair
  colours, eye colours), text parsing (``blue hair red eyes``), one-hot encode/decode,
  random draws.
- ``Domains`` (tagvocab.domains): StarGAN attributes, exclusive sets, ``apply``;
  ``G_CONDITIONS``, what a StarGAN's G may be told of them.
- ``load_vocab`` / ``save_vocab``: the run folder's vocab.json, either kind.

It is a top-level package rather than a ``trainer`` module so that the runtime needs
nothing of the trainer beyond ``trainer.noise`` (tests/test_export.py checks which
trainer modules it imports). ``trainer.data.vocab`` re-exports it, with the MLDS tags.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from tagvocab.domains import G_CONDITIONS, Domains, DomainSpec, as_vectors
from tagvocab.tags import RANDOM, TagGroup, Vocab, VocabError

__all__ = ["G_CONDITIONS", "RANDOM", "DomainSpec", "Domains", "TagGroup", "Vocab", "VocabError",
           "as_vectors", "load_vocab", "save_vocab", "vocab_from_dict"]


def vocab_from_dict(d: Mapping) -> Vocab | Domains:
    """A vocabulary of either kind from its to_dict form ("kind" tells which; default tags)."""
    return Domains.from_dict(d) if d.get("kind") == "domains" else Vocab.from_dict(d)


def load_vocab(path: str | Path) -> Vocab | Domains:
    """Read vocab.json (either kind)."""
    return vocab_from_dict(json.loads(Path(path).read_text()))


def save_vocab(vocab: Vocab | Domains, path: str | Path) -> None:
    """Write vocab.json: to_dict as indented JSON."""
    Path(path).write_text(json.dumps(vocab.to_dict(), indent=2) + "\n")
