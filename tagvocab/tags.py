"""Tag groups and vocabularies: text parsing, tag lookup, one-hot encode/decode, random draws.

A conditional generator takes the concatenated one-hot vector of every group (hair 12
+ eyes 10 = 22 for MLDS and the avatars). The trainer, the ONNX metadata, the runtime
and the demo all describe tags with ``Vocab``, so there is one parser and one lookup:
words and tags match with case ignored, and callers that let a group be drawn at random
(the runtime, the demo) pass ``random=RANDOM``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RANDOM = "random"  # a tag value meaning "draw this group's tag at random" (runtime, demo)
WORD = re.compile(r"[a-z0-9_]+")  # digits: Cartoon Set tags are indices; _: "eye_angle"


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

    @property
    def words(self) -> tuple[str, ...]:
        """The words that name this group in text and as mapping keys."""
        return (self.name, *self.aliases)

    def lookup(self, value: str, random: str | None = None, where: str = "") -> str:
        """The tag ``value`` names (case and outer spaces ignored), or ``random`` itself.

        ``random``: the word accepted for "any tag" (None: not accepted). ``where`` is
        added to the error, e.g. " in 'bleu hair'".
        """
        v = str(value).strip().lower()
        if random is not None and v == random:
            return random
        for t in self.tags:
            if t.lower() == v:
                return t
        raise VocabError(f"unknown {self.name} tag {value!r}{where}; valid {self.name} tags "
                         f"are {', '.join(self.tags)}" + (f" (or {random})" if random else ""))


@dataclass(frozen=True)
class Vocab:
    """Ordered tag groups; encodes to and decodes from concatenated one-hots."""

    groups: tuple[TagGroup, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))  # hashable even from a list
        words = [w for g in self.groups for w in g.words]
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

    def find_group(self, word: str) -> TagGroup | None:
        """The group ``word`` names (its name or an alias, case ignored), else None."""
        w = str(word).strip().lower()
        return next((g for g in self.groups if w in (x.lower() for x in g.words)), None)

    def group(self, word: str) -> TagGroup:
        """The group ``word`` names; VocabError listing the groups if none."""
        g = self.find_group(word)
        if g is None:
            raise VocabError(f"unknown tag group {word!r}; groups are "
                             f"{', '.join(self.group_names)}")
        return g

    def offsets(self) -> list[int]:
        """Start index of each group in the one-hot vector."""
        out, o = [], 0
        for g in self.groups:
            out.append(o)
            o += len(g.tags)
        return out

    def valid_tags(self) -> str:
        """Every group and its tags, for error messages: ``hair: orange, ...; eyes: ...``."""
        return "; ".join(f"{g.name}: {', '.join(g.tags)}" for g in self.groups)

    # -- choosing tags ------------------------------------------------------
    def resolve(self, tags: Mapping[str, str | None], *, random: str | None = None,
                default: str | None = None, ignore_unknown: bool = False) -> dict[str, str]:
        """{group: tag} in group order from a mapping such as {"hair": "Blue", "eye": "red"}.

        Keys are group names or aliases (case ignored); the first non-empty value of a
        group counts. ``random``: the word accepted for "draw this group" (None: only
        real tags). Groups not given take ``default`` if set, else raise VocabError.
        ``ignore_unknown``: skip keys of groups this vocabulary lacks (the demo sends
        every dropdown, including those of other models).
        """
        found: dict[str, str] = {}
        for key, value in tags.items():
            g = self.find_group(key)
            if g is None:
                if ignore_unknown:
                    continue
                raise VocabError(f"unknown tag group {key!r}; groups are "
                                 f"{', '.join(self.group_names)}")
            if g.name not in found and value is not None and str(value).strip():
                found[g.name] = g.lookup(value, random)
        return self._complete(found, dict(tags), random=random, default=default)

    def _complete(self, found: dict[str, str], given: object, *, random: str | None,
                  default: str | None = None, allow_missing: bool = False) -> dict[str, str]:
        """``found`` in group order, with the groups it lacks filled or reported."""
        missing = [g.name for g in self.groups if g.name not in found]
        if missing and default is not None:
            found = {**found, **dict.fromkeys(missing, default)}
        elif missing and not allow_missing:
            need = " or ".join(missing)
            if random is None and not isinstance(given, str):
                raise VocabError(f"no {need} tag given; valid tags are {self.valid_tags()}")
            hint = f" (use {random!r} for any)" if random is not None else ""
            raise VocabError(f"{given!r} gives no {need} tag{hint}; valid tags are "
                             f"{self.valid_tags()}")
        return {g.name: found[g.name] for g in self.groups if g.name in found}

    def parse(self, text: str, allow_missing: bool = False,
              random: str | None = None) -> dict[str, str]:
        """Parse free text such as ``blue hair red eyes`` into {group: tag}, in group order.

        A tag is written before its group word; case and punctuation are ignored. With
        ``random`` set, that word is accepted as a tag and the text ``random`` alone
        means every group. Raises VocabError naming an unknown or repeated word and
        listing the valid tags; a group not given is an error unless ``allow_missing``.
        """
        if random is not None and text.strip().lower() == random:
            return {g.name: random for g in self.groups}
        found: dict[str, str] = {}
        pending: list[str] = []
        for w in WORD.findall(text.lower()):
            group = self.find_group(w)
            if group is None:
                pending.append(w)
                continue
            if not pending:
                raise VocabError(f"{w!r} in {text!r} has no tag before it; "
                                 f"valid tags are {self.valid_tags()}")
            tag = group.lookup(" ".join(pending), random, where=f" in {text!r}")
            pending = []
            if group.name in found:
                raise VocabError(f"{text!r} gives {group.name} twice, which is ambiguous: "
                                 f"{group.name} given twice ({found[group.name]!r} and "
                                 f"{tag!r}); valid {group.name} tags are "
                                 f"{', '.join(group.tags)}")
            found[group.name] = tag
        if pending:
            raise VocabError(f"unknown word(s) {' '.join(pending)!r} in {text!r}; "
                             f"write tags as '<tag> <group>', valid tags are {self.valid_tags()}")
        return self._complete(found, text, random=random, allow_missing=allow_missing)

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

    # -- encoding -----------------------------------------------------------
    def indices(self, tags: Mapping[str, str]) -> list[int]:
        """Index within each group of the given tags, e.g. {"hair": "blue", "eyes": "red"}."""
        choice = self.resolve(tags)
        return [g.tags.index(choice[g.name]) for g in self.groups]

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

    # -- random draws -------------------------------------------------------
    def draw_indices(self, choice: Mapping[str, str], n: int, rng: np.random.Generator,
                     random: str = RANDOM) -> np.ndarray:
        """Per-group indices int64 [n, G] for a resolved ``choice``: its tag, or for a
        ``random`` group one ``rng.integers(len(tags), size=n)`` draw, group by group.

        The runtime's random tags and the demo's grids both draw here, so a seed gives
        the same tags in both.
        """
        idx = np.empty((n, len(self.groups)), dtype=np.int64)
        for gi, g in enumerate(self.groups):
            value = choice[g.name]
            idx[:, gi] = (rng.integers(len(g.tags), size=n) if value == random
                          else g.tags.index(value))
        return idx

    def draw(self, choice: Mapping[str, str], n: int, rng: np.random.Generator,
             random: str = RANDOM) -> list[dict[str, str]]:
        """``n`` {group: tag} dicts: draw_indices as tag names."""
        return [{g.name: g.tags[int(i)] for g, i in zip(self.groups, row, strict=True)}
                for row in self.draw_indices(choice, n, rng, random)]

    # -- persistence --------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready form (vocab.json; its "groups" are the ONNX "tag_groups" metadata)."""
        return {"kind": "tags",
                "groups": [{"name": g.name, "tags": list(g.tags), "aliases": list(g.aliases)}
                           for g in self.groups]}

    @classmethod
    def from_dict(cls, d: Mapping) -> Vocab:
        """Inverse of to_dict; a missing "kind" means tags, a missing "aliases" none."""
        if d.get("kind", "tags") != "tags":
            raise VocabError(f"expected a tag vocabulary, got kind {d.get('kind')!r}")
        return cls(tuple(TagGroup(g["name"], tuple(g["tags"]), tuple(g.get("aliases", ())))
                         for g in d["groups"]))
