"""The sweep's grid: ``--grid key=v1,v2,...`` and ``--seeds`` -> points, each with a stable run name.

Run names and the order of runs are a pure function of the grid and the seeds::

    spec = SweepSpec("smoke", parse_grid(["optim.lr=1.5e-3,3e-3", "model.patch_embed.frozen=false,true"]), [0, 1])
    [p.name for p in expand(spec)][:3]
    # ['lr=1.5e-3_frozen=false_seed=0', 'lr=1.5e-3_frozen=true_seed=0', 'lr=3e-3_frozen=false_seed=0']

Order: seed-major (every point of the first seed, then the next seed), then the grid keys as given (the
first key outermost), values as listed. A name joins ``<short key>=<value>`` with ``_``, the seed last; the
short key is the last dotted component (more components where two keys would share it); a value keeps
``[A-Za-z0-9._+-]`` and turns anything else into ``-`` (a short hash is added where that would make two
values of a key look alike, or the value is long). Values are the text as written: ``1.2e-2`` stays
``lr=1.2e-2`` and is passed to the run as ``--set optim.lr=1.2e-2``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ssl_vit.config import load_config
from ssl_vit.config.loading import apply_overrides, parse_set
from ssl_vit.errors import SslvitError

#: Prepended to every run's overrides: the final kNN of ``pretrain`` on the full test split (a recipe's
#: ``eval.max_train`` / ``eval.max_test`` caps are for speed; a ``--set`` or ``--grid`` of these keys wins).
EVAL_DEFAULTS = ("eval.max_train=0", "eval.max_test=0")
#: Keys the sweep sets itself.
RESERVED = {"seed": "--seeds", "train.threads": "--threads"}
SPEC_VERSION = 1
_MAX_TOKEN = 48


@dataclass(frozen=True)
class Axis:
    key: str
    values: Tuple[str, ...]


@dataclass
class SweepSpec:
    """What makes a sweep: the recipe, the grid, the seeds and the fixed ``--set`` overrides (in order)."""

    recipe: str
    grid: List[Axis]
    seeds: List[int]
    sets: List[str] = field(default_factory=list)
    command: str = "pretrain"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "version": SPEC_VERSION,
            "command": self.command,
            "recipe": self.recipe,
            "grid": [{"key": a.key, "values": list(a.values)} for a in self.grid],
            "seeds": list(self.seeds),
            "sets": list(self.sets),
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SweepSpec":
        return cls(
            str(d["recipe"]),
            [Axis(str(a["key"]), tuple(str(v) for v in a["values"])) for a in d["grid"]],
            [int(s) for s in d["seeds"]],
            [str(s) for s in d.get("sets", [])],
            str(d.get("command", "pretrain")),
        )

    @property
    def keys(self) -> List[str]:
        return [a.key for a in self.grid]

    def difference(self, other: "SweepSpec") -> Optional[str]:
        """The first way ``other`` differs from this spec, as 'what: this -> other' (None when the same)."""
        if self.recipe != other.recipe:
            return f"recipe {self.recipe} -> {other.recipe}"
        if self.keys != other.keys:
            return f"grid keys {','.join(self.keys)} -> {','.join(other.keys)}"
        for a, b in zip(self.grid, other.grid):
            if a.values != b.values:
                return f"--grid {a.key}={','.join(a.values)} -> {','.join(b.values)}"
        if self.seeds != other.seeds:
            return f"--seeds {_seeds_text(self.seeds)} -> {_seeds_text(other.seeds)}"
        if self.sets != other.sets:
            return f"--set {' '.join(self.sets) or '(none)'} -> {' '.join(other.sets) or '(none)'}"
        if self.command != other.command:
            return f"command {self.command} -> {other.command}"
        return None


@dataclass(frozen=True)
class Point:
    """One run of the sweep: grid values (raw text, in grid order) and a seed."""

    index: int
    name: str
    values: Tuple[Tuple[str, str], ...]
    seed: int

    @property
    def grid_sets(self) -> List[str]:
        return [f"{k}={v}" for k, v in self.values]

    def arm(self, lr_key: Optional[str]) -> str:
        """The point's arm: its grid values other than ``lr_key`` (``all`` when there are none)."""
        rest = [(k, v) for k, v in self.values if k != lr_key]
        return " ".join(f"{short_names([k for k, _ in self.values])[k]}={v}" for k, v in rest) or "all"


# ----------------------------------------------------------------------------------------- parsing
def split_values(text: str) -> List[str]:
    """Split on commas outside brackets and quotes: ``'1,[0.2,1.0],"a,b"'`` -> ``['1', '[0.2,1.0]', '"a,b"']``."""
    out, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_grid(items: Sequence[str]) -> List[Axis]:
    """``["optim.lr=1e-3,3e-3", ...]`` -> axes; one-line errors for a missing ``=``, an empty value list or
    value, a key given twice or a value listed twice, and keys the sweep sets itself."""
    axes: List[Axis] = []
    for item in items:
        if "=" not in item:
            raise SslvitError(f"--grid '{item}' has no '='; write --grid key=v1,v2, e.g. --grid optim.lr=1e-3,3e-3")
        key, raw = (s.strip() for s in item.split("=", 1))
        if not key:
            raise SslvitError(
                f"--grid '{item}' has an empty key; write --grid key=v1,v2, e.g. --grid optim.lr=1e-3,3e-3"
            )
        if key in RESERVED:
            raise SslvitError(
                f"--grid {key}: {key} is set by the sweep's {RESERVED[key]} option; use "
                f"{RESERVED[key]} instead of --grid {key}"
            )
        if any(a.key == key for a in axes):
            raise SslvitError(
                f"--grid {key} is given twice; give each key once with all its values, e.g. --grid {key}=v1,v2,v3"
            )
        values = split_values(raw) if raw else []
        if not values or not any(values):
            raise SslvitError(f"--grid {key} has no values (empty grid); list them after '=', e.g. --grid {key}=v1,v2")
        if "" in values:
            raise SslvitError(f"--grid {key}={raw} has an empty value; drop the extra comma")
        dup = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if dup is not None:
            raise SslvitError(f"--grid {key} lists {dup} twice; list each value once")
        axes.append(Axis(key, tuple(values)))
    return axes


def parse_seeds(text: Optional[str]) -> Optional[List[int]]:
    """``"0,1,2"`` (or ``"0-2"``) -> ``[0, 1, 2]``; None -> None (the recipe's seed)."""
    if text is None:
        return None
    seeds: List[int] = []
    for part in split_values(text):
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            vals = list(range(int(m[1]), int(m[2]) + 1)) if m else [int(part)]
        except ValueError:
            raise SslvitError(
                f"--seeds '{text}' is not a list of integers; write e.g. --seeds 0,1,2 (or 0-2)"
            ) from None
        seeds += vals
    if not seeds:
        raise SslvitError(f"--seeds '{text}' lists no seed; write e.g. --seeds 0,1")
    dup = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if dup is not None:
        raise SslvitError(f"--seeds lists {dup} twice; list each seed once")
    return seeds


def check_sets(sets: Sequence[str], axes: Sequence[Axis]) -> None:
    """Fixed overrides must not set what the grid or the sweep sets."""
    for s in sets:
        key, _ = parse_set(s)
        if key in RESERVED:
            raise SslvitError(
                f"--set {s}: {key} is set by the sweep's {RESERVED[key]} option; drop it from --set "
                f"and use {RESERVED[key]}"
            )
        if key in [a.key for a in axes]:
            raise SslvitError(f"--set {s}: {key} is also a --grid key; drop one of them")


# ----------------------------------------------------------------------------------------- names
def short_names(keys: Sequence[str]) -> Dict[str, str]:
    """Shortest dotted suffix of each key that is unique among the keys (and not ``seed``)."""
    parts = {k: k.split(".") for k in keys}
    n = {k: 1 for k in keys}
    while True:
        names = {k: ".".join(parts[k][-n[k] :]) for k in keys}
        clash = [
            k for k in keys if (list(names.values()).count(names[k]) > 1 or names[k] == "seed") and n[k] < len(parts[k])
        ]
        if not clash:
            return names
        for k in clash:
            n[k] += 1


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def value_tokens(values: Sequence[str]) -> Dict[str, str]:
    """Filesystem-safe, distinct tokens for the values of one key."""

    def clean(v):
        t = re.sub(r"[^A-Za-z0-9._+-]+", "-", v).strip("-")
        t = re.sub(r"^\.+", "", t)
        if len(t) > _MAX_TOKEN:
            t = t[: _MAX_TOKEN - 7].rstrip("-") + "-" + _hash(v)
        return t

    tok = {v: clean(v) for v in values}
    counts = Counter(tok.values())
    for v in values:
        if not tok[v] or counts[tok[v]] > 1:
            tok[v] = (tok[v] + "-" if tok[v] else "") + _hash(v)
    return tok


def expand(spec: SweepSpec) -> List[Point]:
    """All points, seed-major, then the grid keys as given (first key outermost)."""
    keys = spec.keys
    short = short_names(keys)
    tokens = {a.key: value_tokens(a.values) for a in spec.grid}
    points = []
    for seed in spec.seeds:
        for combo in itertools.product(*[a.values for a in spec.grid]):
            name = "_".join(f"{short[k]}={tokens[k][v]}" for k, v in zip(keys, combo)) + f"_seed={seed}"
            points.append(Point(len(points), name, tuple(zip(keys, combo)), seed))
    return points


def run_overrides(spec: SweepSpec, point: Point, threads: int) -> List[str]:
    """Every ``--set`` of a point's run, in order (later wins): the eval defaults, the fixed ``--set``s, the
    grid values, the seed and the thread count."""
    return [*EVAL_DEFAULTS, *spec.sets, *point.grid_sets, f"seed={point.seed}", f"train.threads={threads}"]


# ----------------------------------------------------------------------------------------- validation
def config_value(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def validate(spec: SweepSpec, threads: int) -> Dict[str, Any]:
    """Load every point's config through the config loader with its overrides (nothing runs). Returns
    ``{run name: Config}``; raises a one-line :class:`SslvitError` naming the bad key / value / point."""

    if not spec.grid:
        raise SslvitError("empty grid: give at least one --grid key=v1,v2, e.g. --grid optim.lr=1.5e-3,3e-3")
    check_sets(spec.sets, spec.grid)
    base = load_config(spec.recipe, [*EVAL_DEFAULTS, *spec.sets])  # recipe and --set errors as they are
    for a in spec.grid:
        for v in a.values:
            try:
                apply_overrides(base, [f"{a.key}={v}"])
            except SslvitError as e:
                raise SslvitError(f"--grid {a.key}={v}: {e}") from None
    cfgs = {}
    for p in expand(spec):
        try:
            cfgs[p.name] = load_config(spec.recipe, run_overrides(spec, p, threads))
        except SslvitError as e:
            raise SslvitError(f"run {p.name}: {e}") from None
    return cfgs


def resolved_values(cfg, keys: Sequence[str]) -> Dict[str, Any]:
    """The typed config values of the grid keys (tuples as lists: JSON)."""
    out = {}
    for k in keys:
        v = config_value(cfg, k)
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def numeric_key(spec: SweepSpec, cfgs: Dict[str, Any], preferred: str = "optim.lr") -> Optional[str]:
    """The lr axis of the plot / sensitivity: ``optim.lr`` if swept, else the first grid key whose values
    are numbers (not booleans); None if there is none."""
    if preferred in spec.keys:
        return preferred
    any_cfg = next(iter(cfgs.values()), None)
    for k in spec.keys:
        v = config_value(any_cfg, k) if any_cfg is not None else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return k
    return None


def _seeds_text(seeds: Sequence[int]) -> str:
    return ",".join(str(s) for s in seeds)


__all__ = [
    "Axis",
    "SweepSpec",
    "Point",
    "EVAL_DEFAULTS",
    "parse_grid",
    "parse_seeds",
    "split_values",
    "short_names",
    "value_tokens",
    "expand",
    "run_overrides",
    "validate",
    "resolved_values",
    "numeric_key",
    "config_value",
]
