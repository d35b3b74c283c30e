"""What differs between compared runs, and the same setting over several seeds.

A GAN's score moves with the seed by as much as most settings move it (three seeds
of one preset can span 20 FID points), so one run per setting cannot rank two
settings. ``compare`` therefore reads each run's resolved config.yaml and the
options its evaluation ran with, names what differs from the first run, and
groups runs that differ only in ``seed`` into one row of means and sample
standard deviations.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

# keys a group may differ in: the training seed (what a group averages over)
GROUP_OVER = ("seed",)
# evaluation options that do not change what is measured
EVAL_IGNORED = ("cache_dir",)


def run_settings(run: Path | None, metrics: Mapping | None) -> dict[str, str]:
    """The run's config as dotted keys, plus the evaluation's options as ``--option``.

    Values are JSON strings so lists and None compare and print alike. A run
    without config.yaml contributes only its evaluation options.
    """
    out: dict[str, str] = {}
    cfg_file = run / "config.yaml" if run is not None else None
    if cfg_file is not None and cfg_file.is_file():
        try:
            cfg = OmegaConf.to_container(OmegaConf.load(cfg_file), resolve=True)
        except Exception as e:  # yaml or interpolation errors: name the file
            raise ValueError(f"{cfg_file}: not a readable config ({e})") from e
        _flatten(cfg, "", out)
    for k, v in sorted(((metrics or {}).get("options") or {}).items()):
        if k not in EVAL_IGNORED:
            out["--" + k.replace("_", "-")] = json.dumps(v)
    return out


def _flatten(node: object, prefix: str, out: dict[str, str]) -> None:
    if isinstance(node, Mapping) and node:
        for k, v in node.items():
            _flatten(v, f"{prefix}{k}.", out)
    else:
        out[prefix[:-1]] = json.dumps(node, sort_keys=True)


def differences(settings: Mapping[str, str], base: Mapping[str, str],
                ignore: Sequence[str] = ()) -> list[str]:
    """``key=value`` (``--option value`` for evaluation options) where ``settings``
    differs from ``base``; a key only in ``base`` shows as ``key=(unset)``."""
    out = []
    for k in sorted(set(settings) | set(base)):
        if k in ignore or settings.get(k) == base.get(k):
            continue
        v = settings.get(k)
        shown = "(unset)" if v is None else _plain(v)
        out.append(f"{k} {shown}" if k.startswith("--") else f"{k}={shown}")
    return out


def _plain(v: str) -> str:
    """A JSON value as a command line would write it: strings unquoted, lists compact."""
    x = json.loads(v)
    if isinstance(x, str):
        return x
    if isinstance(x, list):
        return "[" + ",".join(_plain(json.dumps(e)) for e in x) + "]"
    return json.dumps(x)


@dataclass
class Group:
    """Runs whose settings are equal but for ``GROUP_OVER``."""

    members: list[int]  # indices into the compared runs, in the order given
    seeds: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # against the first group


def group_runs(settings: Sequence[Mapping[str, str]]) -> list[Group]:
    """Groups in order of first appearance; each group's changes against the first."""
    keys: list[tuple] = []
    groups: list[Group] = []
    for i, s in enumerate(settings):
        key = tuple(sorted((k, v) for k, v in s.items() if k not in GROUP_OVER))
        if key in keys:
            groups[keys.index(key)].members.append(i)
        else:
            keys.append(key)
            groups.append(Group([i]))
    for g in groups:
        g.seeds = [_plain(settings[i].get("seed", "null")) for i in g.members]
        g.changes = differences(settings[g.members[0]], settings[groups[0].members[0]],
                                ignore=GROUP_OVER)
    return groups


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def group_summary(summaries: Sequence[Mapping | None], group: Group,
                  columns: Sequence[str]) -> dict[str, dict]:
    """Per column: mean, sd and n over the group's evaluated members (finite numbers only)."""
    out = {}
    for c in columns:
        vals = [float(s[c]) for s in (summaries[i] for i in group.members)
                if s and isinstance(s.get(c), int | float) and not isinstance(s.get(c), bool)
                and math.isfinite(s[c])]
        if vals:
            m, sd = mean_sd(vals)
            out[c] = {"mean": m, "sd": sd, "n": len(vals), "values": vals}
    return out
