"""StarGAN domains: binary attributes, some mutually exclusive (hair colours), and the flips.

``Domains.apply`` is the one place where a domain is switched on or off: switching on a
member of an exclusive set switches its siblings off, as the official StarGAN test does
for hair colours. Training grids, evaluation, ``trainer.translate``, the runtime and the
demo all go through it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tagvocab.tags import VocabError

# What a StarGAN's G is told of the domains (model.g_condition, the .onnx "g_condition"
# metadata): the target vector, or target minus the input's own (source) vector.
G_CONDITIONS = ("target", "difference")

_NUMBER_KINDS = "biuf"  # numpy dtype kinds read as numbers: booleans too ([True, False] is on/off)

DomainSpec = Sequence[str] | Sequence[float] | Mapping[str, float] | str | np.ndarray


def as_vectors(spec: DomainSpec | None) -> DomainSpec | None:
    """``spec`` as a float32 array when it is numbers written as a (nested) list, else as given.

    So ``[0, 1, 0, 0, 1]`` is read as a vector, not as the domain names "0" and "1". A
    ragged list that holds a row of numbers is a ``VocabError``: rows of unequal lengths
    get their lengths, vectors mixed with names or single numbers say so.
    """
    if isinstance(spec, (list, tuple)) and spec:
        try:
            a = np.asarray(spec)
        except ValueError:  # ragged
            rows = [_number_row(r) for r in spec]
            if all(r is not None for r in rows):
                raise VocabError(
                    f"domain vectors of unequal lengths {[len(r) for r in rows]}; "
                    "each needs one 0/1 per domain") from None
            if any(r is not None for r in rows):
                raise VocabError(
                    f"{spec!r} mixes domain vectors with other items; give names, or "
                    "one 0/1 vector per row") from None
            return spec
        if a.dtype.kind in _NUMBER_KINDS:
            return a.astype(np.float32)
    return spec


def _number_row(item: object) -> np.ndarray | None:
    """``item`` as a 1-d array when it is a list, tuple or array of numbers, else None."""
    if not isinstance(item, (list, tuple, np.ndarray)):
        return None
    try:
        row = np.asarray(item)
    except ValueError:  # itself ragged
        return None
    if row.ndim != 1 or (row.size and row.dtype.kind not in _NUMBER_KINDS):
        return None
    return row


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

    def find(self, name: str) -> int | None:
        """Index of the domain ``name`` (exact, else with case and outer spaces ignored)."""
        if name in self.names:
            return self.names.index(name)
        want = str(name).strip().lower()
        return next((i for i, d in enumerate(self.names) if d.lower() == want), None)

    def index(self, name: str) -> int:
        """Index of the domain ``name`` (see find); VocabError listing the domains if none."""
        i = self.find(name)
        if i is None:
            raise VocabError(f"unknown domain {name!r}; this model's domains are "
                             f"{', '.join(self.names)}")
        return i

    def among(self, names: Iterable[str]) -> list[str]:
        """The domains among ``names`` (case ignored, unknown ones skipped), in domain order."""
        found = {i for i in (self.find(n) for n in names) if i is not None}
        return [d for i, d in enumerate(self.names) if i in found]

    def is_exclusive(self, name: str) -> bool:
        """Whether the domain ``name`` belongs to an exclusive set (switched on, never flipped)."""
        d = self.names[self.index(name)]
        return any(d in group for group in self.exclusive)

    def check_vector(self, vector: Sequence[float] | np.ndarray) -> np.ndarray:
        """``vector`` as float32 [..., n_domains]; VocabError if its last size is wrong."""
        v = np.asarray(vector, dtype=np.float32)
        if v.shape[-1] != self.n_domains:
            raise VocabError(f"domain vector has length {v.shape[-1]}, expected "
                             f"{self.n_domains} ({', '.join(self.names)})")
        return v

    def apply(self, source: Sequence[float] | np.ndarray,
              targets: Iterable[str] | Mapping[str, float]) -> np.ndarray:
        """Source attribute vector(s) [..., n] with the named domains switched on (a copy).

        ``targets``: names to switch on, or {name: on} with a false value switching the
        domain off. Switching on a member of an exclusive set switches its siblings off,
        as the official StarGAN test does for hair colours.
        """
        v = self.check_vector(source).copy()
        items = targets.items() if isinstance(targets, Mapping) else ((t, 1.0) for t in targets)
        for name, on in items:
            i = self.index(name)
            if on:
                for group in self.exclusive:
                    if self.names[i] in group:
                        for sibling in group:
                            v[..., self.names.index(sibling)] = 0.0
            v[..., i] = 1.0 if on else 0.0
        return v

    def vector(self, targets: DomainSpec, source: DomainSpec | None = None) -> np.ndarray:
        """One domain vector float32 [n]: ``source`` with ``targets`` applied.

        Either may be names (a list, or "A,B" text), {name: 0/1}, or a vector [n] (an
        array or a list of numbers); ``source`` None starts from all off. A vector
        ``targets`` is taken as it is.
        """
        targets, source = as_vectors(targets), as_vectors(source)
        if source is None:
            v = np.zeros(self.n_domains, dtype=np.float32)
        elif isinstance(source, np.ndarray):
            v = self.check_vector(source.astype(np.float32).reshape(-1))
        else:
            v = self.vector(source)
        if isinstance(targets, np.ndarray):
            return self.vector([], targets)
        if isinstance(targets, str):
            targets = [t for t in re.split(r"[,\s]+", targets) if t]
        return self.apply(v, targets)

    def grid_targets(self, source: Sequence[float] | np.ndarray,
                     names: Iterable[str] | None = None) -> list[tuple[str, np.ndarray]]:
        """(domain, target vectors) for each of ``names`` (None: every domain) from ``source``
        [..., n]: a member of an exclusive set is switched on (apply), any other domain
        flipped (on where the source lacks it, off where it has it), as the official
        StarGAN test grid does."""
        src = self.check_vector(source)
        out = []
        for name in self.names if names is None else names:
            i = self.index(name)
            d = self.names[i]
            if self.is_exclusive(d):
                out.append((d, self.apply(src, [d])))
            else:
                v = src.copy()
                v[..., i] = 1.0 - v[..., i]
                out.append((d, v))
        return out

    def to_dict(self) -> dict:
        """JSON-ready form (vocab.json; without "kind" it is the ONNX "domains" metadata)."""
        return {"kind": "domains", "names": list(self.names),
                "exclusive": [list(g) for g in self.exclusive]}

    @classmethod
    def from_dict(cls, d: Mapping) -> Domains:
        """Inverse of to_dict."""
        if d.get("kind") != "domains":
            raise VocabError(f"expected a domain list, got kind {d.get('kind')!r}")
        return cls(tuple(d["names"]), tuple(tuple(g) for g in d.get("exclusive", ())))
