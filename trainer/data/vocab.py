"""Tag vocabularies: named groups of mutually exclusive tags, and StarGAN domains.

A conditional generator takes the concatenated one-hot vector of every group
(hair 12 + eyes 10 = 22 for MLDS and the avatars). The vocabulary is saved as
vocab.json in every run folder and travels into the ONNX metadata, so that
encoding never depends on Python code from this project.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MLDS_HAIR = ("orange", "white", "aqua", "gray", "green", "red", "purple",
             "pink", "blue", "black", "brown", "blonde")
MLDS_EYES = ("black", "orange", "pink", "yellow", "aqua", "purple", "green",
             "brown", "red", "blue")


class VocabError(ValueError):
    """A tag, group or domain name that the vocabulary does not know."""


@dataclass(frozen=True)
class TagGroup:
    """One group of mutually exclusive tags, e.g. hair colours.

    In text a tag is written before its group word: ``blue hair``.
    """

    name: str  # group word as written in text, e.g. "hair", "eyes"
    tags: tuple[str, ...]  # tag names in one-hot order
    aliases: tuple[str, ...] = ()  # other words for the group, e.g. "eye"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if len(set(self.tags)) != len(self.tags):
            raise VocabError(f"group {self.name!r} lists a tag twice: {self.tags}")
        if not self.tags:
            raise VocabError(f"group {self.name!r} has no tags")


@dataclass(frozen=True)
class Vocab:
    """Ordered tag groups; encodes to and decodes from concatenated one-hots."""

    groups: tuple[TagGroup, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))  # hashable even from a list
        words = [w for g in self.groups for w in (g.name, *g.aliases)]
        repeated = sorted({w for w in words if words.count(w) > 1})
        if repeated:
            raise VocabError(f"group word(s) {repeated} name more than one group")
        clashes = sorted({t for g in self.groups for t in g.tags if t in words})
        if clashes:
            raise VocabError(f"tag(s) {clashes} are also group words; text could not be parsed")

    @property
    def n_tags(self) -> int:
        return sum(len(g.tags) for g in self.groups)

    @property
    def group_sizes(self) -> list[int]:
        return [len(g.tags) for g in self.groups]

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    def group(self, name: str) -> TagGroup:
        for g in self.groups:
            if name == g.name or name in g.aliases:
                return g
        raise VocabError(f"unknown tag group {name!r}; groups are {self.group_names}")

    def offsets(self) -> list[int]:
        """Start index of each group in the one-hot vector."""
        out, o = [], 0
        for g in self.groups:
            out.append(o)
            o += len(g.tags)
        return out

    def valid_tags(self) -> str:
        return "; ".join(f"{g.name}: {', '.join(g.tags)}" for g in self.groups)

    # -- encoding -----------------------------------------------------------
    def indices(self, tags: Mapping[str, str]) -> list[int]:
        """Index within each group of the given tags, e.g. {"hair": "blue", "eyes": "red"}."""
        unknown = [k for k in tags if k not in self.group_names
                   and not any(k in g.aliases for g in self.groups)]
        if unknown:
            raise VocabError(f"unknown tag group {unknown[0]!r}; groups are {self.group_names}")
        out = []
        for g in self.groups:
            value = next((tags[k] for k in (g.name, *g.aliases) if k in tags), None)
            if value is None:
                raise VocabError(f"no {g.name} tag given; valid tags are {self.valid_tags()}")
            if value not in g.tags:
                raise VocabError(f"unknown {g.name} tag {value!r}; valid {g.name} tags are "
                                 f"{', '.join(g.tags)}")
            out.append(g.tags.index(value))
        return out

    def encode_indices(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """One-hot vector(s) from per-group indices: [G] -> [n_tags] or [N, G] -> [N, n_tags]."""
        idx = np.asarray(idx, dtype=np.int64)
        flat = idx.reshape(-1, len(self.groups))
        out = np.zeros((flat.shape[0], self.n_tags), dtype=np.float32)
        rows = np.arange(flat.shape[0])
        for gi, (off, g) in enumerate(zip(self.offsets(), self.groups, strict=True)):
            if (flat[:, gi] < 0).any() or (flat[:, gi] >= len(g.tags)).any():
                raise VocabError(f"{g.name} index out of range 0..{len(g.tags) - 1}")
            out[rows, off + flat[:, gi]] = 1.0
        return out.reshape(*idx.shape[:-1], self.n_tags)

    def encode(self, tags: Mapping[str, str]) -> np.ndarray:
        """Concatenated one-hot float32 vector [n_tags] for one tag per group."""
        return self.encode_indices(self.indices(tags))

    def decode(self, vector: Sequence[float] | np.ndarray) -> dict[str, str]:
        """The arg-max tag of each group of a (possibly soft) vector."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.n_tags:
            raise VocabError(f"tag vector has length {v.shape[0]}, expected {self.n_tags}")
        return {g.name: g.tags[int(np.argmax(v[o:o + len(g.tags)]))]
                for o, g in zip(self.offsets(), self.groups, strict=True)}

    def all_combinations(self) -> list[dict[str, str]]:
        """Every combination of one tag per group, in group order."""
        combos: list[dict[str, str]] = [{}]
        for g in self.groups:
            combos = [{**c, g.name: t} for c in combos for t in g.tags]
        return combos

    # -- text ---------------------------------------------------------------
    def parse(self, text: str, allow_missing: bool = False) -> dict[str, str]:
        """Parse free text such as ``blue hair red eyes`` into {group: tag}.

        Raises VocabError naming an unknown or repeated word and listing the valid tags.
        """
        words = re.findall(r"[a-z0-9_]+", text.lower())  # digits: Cartoon Set tags are indices
        found: dict[str, str] = {}
        pending: list[str] = []
        for w in words:
            group = next((g for g in self.groups if w == g.name or w in g.aliases), None)
            if group is None:
                pending.append(w)
                continue
            if not pending:
                raise VocabError(f"{w!r} in {text!r} has no tag before it; "
                                 f"valid tags are {self.valid_tags()}")
            tag = " ".join(pending)
            pending = []
            if tag not in group.tags:
                raise VocabError(f"unknown {group.name} tag {tag!r} in {text!r}; valid "
                                 f"{group.name} tags are {', '.join(group.tags)}")
            if group.name in found:
                raise VocabError(f"{text!r} is ambiguous: {group.name} given twice "
                                 f"({found[group.name]!r} and {tag!r}); valid {group.name} "
                                 f"tags are {', '.join(group.tags)}")
            found[group.name] = tag
        if pending:
            raise VocabError(f"unknown word(s) {' '.join(pending)!r} in {text!r}; "
                             f"write tags as '<tag> <group>', valid tags are {self.valid_tags()}")
        missing = [g.name for g in self.groups if g.name not in found]
        if missing and not allow_missing:
            raise VocabError(f"{text!r} gives no {' or '.join(missing)} tag; "
                             f"valid tags are {self.valid_tags()}")
        return found

    def format(self, tags: Mapping[str, str]) -> str:
        """Inverse of parse: ``blue hair red eyes``."""
        return " ".join(f"{tags[g.name]} {g.name}" for g in self.groups if g.name in tags)

    def parse_testing_tags(self, path: str | Path) -> list[tuple[str, dict[str, str]]]:
        """Read an MLDS testing_tags.txt (``1,blue hair blue eyes`` per line)."""
        out = []
        for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            if "," not in line:
                raise VocabError(f"{path}:{lineno}: expected 'id,<tags>', got {line!r}")
            ident, text = line.split(",", 1)
            try:
                out.append((ident.strip(), self.parse(text)))
            except VocabError as e:
                raise VocabError(f"{path}:{lineno}: {e}") from None
        return out

    # -- persistence --------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": "tags",
                "groups": [{"name": g.name, "tags": list(g.tags), "aliases": list(g.aliases)}
                           for g in self.groups]}

    @classmethod
    def from_dict(cls, d: Mapping) -> Vocab:
        if d.get("kind", "tags") != "tags":
            raise VocabError(f"expected a tag vocabulary, got kind {d.get('kind')!r}")
        return cls(tuple(TagGroup(g["name"], tuple(g["tags"]), tuple(g.get("aliases", ())))
                         for g in d["groups"]))


@dataclass(frozen=True)
class Domains:
    """StarGAN target domains: binary attributes, some mutually exclusive (hair colours)."""

    names: tuple[str, ...]
    exclusive: tuple[tuple[str, ...], ...] = field(default=())  # e.g. the hair colours

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "exclusive", tuple(tuple(g) for g in self.exclusive))
        if len(set(self.names)) != len(self.names):
            raise VocabError(f"a domain is listed twice: {list(self.names)}")
        for group in self.exclusive:
            for n in group:
                if n not in self.names:
                    raise VocabError(f"exclusive domain {n!r} is not one of {list(self.names)}")

    @property
    def n_domains(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise VocabError(f"unknown domain {name!r}; this model's domains are "
                             f"{', '.join(self.names)}")
        return self.names.index(name)

    def check_vector(self, vector: Sequence[float] | np.ndarray) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32)
        if v.shape[-1] != self.n_domains:
            raise VocabError(f"domain vector has length {v.shape[-1]}, expected "
                             f"{self.n_domains} ({', '.join(self.names)})")
        return v

    def apply(self, source: Sequence[float] | np.ndarray, targets: Iterable[str]) -> np.ndarray:
        """Source attribute vector with the named domains switched on.

        Switching on a member of an exclusive set switches its siblings off, as
        the official StarGAN test does for hair colours.
        """
        v = self.check_vector(source).copy()
        for name in targets:
            i = self.index(name)
            for group in self.exclusive:
                if name in group:
                    for sibling in group:
                        v[..., self.names.index(sibling)] = 0.0
            v[..., i] = 1.0
        return v

    def grid_targets(self, source: Sequence[float] | np.ndarray) -> list[tuple[str, np.ndarray]]:
        """One target per domain: exclusive members set, other attributes flipped."""
        src = self.check_vector(source)
        out = []
        for i, name in enumerate(self.names):
            if any(name in g for g in self.exclusive):
                out.append((name, self.apply(src, [name])))
            else:
                v = src.copy()
                v[..., i] = 1.0 - v[..., i]
                out.append((name, v))
        return out

    def to_dict(self) -> dict:
        return {"kind": "domains", "names": list(self.names),
                "exclusive": [list(g) for g in self.exclusive]}

    @classmethod
    def from_dict(cls, d: Mapping) -> Domains:
        if d.get("kind") != "domains":
            raise VocabError(f"expected a domain list, got kind {d.get('kind')!r}")
        return cls(tuple(d["names"]), tuple(tuple(g) for g in d.get("exclusive", ())))


def mlds_vocab() -> Vocab:
    """Hair 12 + eyes 10: the MLDS tag set, also used by the avatars."""
    return Vocab((TagGroup("hair", MLDS_HAIR), TagGroup("eyes", MLDS_EYES, ("eye",))))


def load_vocab(path: str | Path) -> Vocab | Domains:
    """Read vocab.json (either kind)."""
    d = json.loads(Path(path).read_text())
    return Domains.from_dict(d) if d.get("kind") == "domains" else Vocab.from_dict(d)


def save_vocab(vocab: Vocab | Domains, path: str | Path) -> None:
    Path(path).write_text(json.dumps(vocab.to_dict(), indent=2) + "\n")
