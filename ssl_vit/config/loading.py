"""YAML recipes -> typed dataclasses, dotted ``--set`` overrides, and dumping back to YAML.

Every error is an :class:`SslvitError` with one line naming the key, the problem and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import yaml

from ssl_vit.config.schema import Config
from ssl_vit.config.validate import validate
from ssl_vit.core.atomic import atomic_write_text
from ssl_vit.core.lists import split_list
from ssl_vit.core.suggest import did_you_mean
from ssl_vit.errors import SslvitError

RECIPES_ENV = "SSLVIT_RECIPES"


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping (PyYAML keeps the last one silently, so
    a second ``train:`` section would drop the first)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: PyYAML reports it below
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' appears twice (first at line {first.start_mark.line + 1}), keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


def safe_load(text: str):
    """``yaml.safe_load`` with duplicate keys as an error (:class:`StrictLoader`)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


# ----------------------------------------------------------------------------- recipe discovery
def recipe_dirs() -> List[Path]:
    """Where `--recipe NAME` looks: $SSLVIT_RECIPES, ./recipes, then the project's own recipes/."""
    dirs = []
    if os.environ.get(RECIPES_ENV):
        dirs.append(Path(os.environ[RECIPES_ENV]))
    dirs.append(Path.cwd() / "recipes")
    dirs.append(Path(__file__).resolve().parents[2] / "recipes")
    out: List[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def available_recipes() -> List[str]:
    names = set()
    for d in recipe_dirs():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def find_recipe(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not p.is_file():
            raise SslvitError(
                f"recipe file '{name_or_path}' not found; pass an existing .yaml or one of: "
                f"{', '.join(available_recipes())}"
            )
        return p
    for d in recipe_dirs():
        cand = d / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    raise SslvitError(
        f"unknown recipe '{name_or_path}'"
        + did_you_mean(name_or_path, available_recipes())
        + f"; available: {', '.join(available_recipes())}"
    )


# ----------------------------------------------------------------------------- typed assignment
def _hints(cls) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(cls=Config, prefix: str = "") -> List[str]:
    """All dotted leaf keys of a dataclass tree, e.g. ['seed', 'data.dataset', ...]."""
    keys = []
    for f in dataclasses.fields(cls):
        t = _hints(cls)[f.name]
        if dataclasses.is_dataclass(t):
            keys += valid_keys(t, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def _one_of(choices) -> str:
    """('a', 'b', 'c') -> 'a, b or c'."""
    names = [str(c) for c in choices]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _choice(value: Any, choices: Tuple, key: str, what: Optional[str] = None) -> Any:
    """``value`` if it is one of the ``Literal`` choices (a YAML boolean by its name: ``fused_attn: true``), else a
    one-line error (``what``, default '<key> must be a or b, not ...') with 'did you mean'."""
    if isinstance(value, bool) and str(value).lower() in choices:
        return str(value).lower()
    if isinstance(value, str) and value in choices:
        return value
    raise SslvitError((what or f"{key} must be {_one_of(choices)}, not '{value}'") + did_you_mean(value, choices))


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _split_list(text: str) -> List[Any]:
    """'0.01,0.1' or '[0.01, 0.1]' -> [0.01, 0.1] (each item read as YAML)."""
    return [safe_load(v) for v in split_list(text)]


def coerce(value: Any, t, key: str) -> Any:
    """Check/convert a YAML value to the annotated type ``t``; raise a one-line error otherwise.
    ``Literal[...]``: one of the choices ('did you mean' otherwise). ``Tuple[X, ...]``: one or more values, from a
    YAML list, a comma-separated string ('0.01,0.1', the form older configs stored) or a single value."""
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], key)
    if origin is typing.Literal:
        return _choice(value, args, key)
    if origin in (tuple, Tuple) and len(args) == 2 and args[1] is Ellipsis:  # Tuple[X, ...]
        raw = value
        value = (
            _split_list(value)
            if isinstance(value, str)
            else list(value)
            if isinstance(value, (list, tuple))
            else [value]
        )
        item = args[0]
        if typing.get_origin(item) is typing.Literal:
            choices = typing.get_args(item)
            what = f"{key} must be one or more of {', '.join(choices)} (comma-separated), got '{raw}'"
            value = [_choice(v, choices, key, what) for v in value]
        elif item in (int, float) and not all(_is_number(v) for v in value):
            raise SslvitError(f"{key} must be comma-separated numbers like 0.01,0.1, got {raw!r}")
        if not value:
            raise SslvitError(f"{key} needs at least one value, e.g. {key}=a,b")
        return tuple(coerce(v, item, key) for v in value)
    if origin in (tuple, Tuple):
        if isinstance(value, str):
            value = _split_list(value)
        if not isinstance(value, (list, tuple)) or (args and len(value) != len(args)):
            raise SslvitError(f"{key}: expected a list of {len(args)} values like [a, b], got {value!r}")
        return tuple(coerce(v, a, key) for v, a in zip(value, args))
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise SslvitError(f"{key}: expected true or false, got {value!r}")
    if t is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not value.is_integer())
        ):
            if isinstance(value, str):
                try:
                    return int(value)
                except ValueError:
                    pass
            raise SslvitError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if t is float:
        if isinstance(value, bool):
            raise SslvitError(f"{key}: expected a number, got {value!r}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise SslvitError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(value):
            raise SslvitError(
                f"{key}: expected a finite number, got {value}; nan and inf are not settings, give a real value"
            )
        return value
    if t is str:
        if isinstance(value, (dict, list)):
            raise SslvitError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _unknown_key(key: str, section_cls, prefix: str) -> SslvitError:
    keys = valid_keys(section_cls, prefix)
    return SslvitError(
        f"unknown config key '{key}'"
        + did_you_mean(key, keys)
        + f"; valid keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(keys)}"
    )


def from_dict(cls, data: Dict[str, Any], prefix: str = ""):
    """Build dataclass ``cls`` from a nested dict, checking keys and types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SslvitError(f"'{prefix.rstrip('.') or 'recipe'}' must be a mapping of keys to values, got {data!r}")
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    for k, v in data.items():
        if k not in names:
            raise _unknown_key(prefix + str(k), cls, prefix)
        t = hints[k]
        if dataclasses.is_dataclass(t):
            kwargs[k] = from_dict(t, v, prefix + k + ".")
        else:
            kwargs[k] = coerce(v, t, prefix + k)
    return cls(**kwargs)


def to_dict(cfg) -> Dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML / JSON / checkpoints."""

    def conv(v):
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(dataclasses.asdict(cfg))


def parse_set(item: str) -> Tuple[str, Any]:
    if "=" not in item:
        raise SslvitError(f"--set '{item}' has no '='; write --set key=value, e.g. --set train.max_steps=100")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise SslvitError(f"--set '{item}' has an empty key; write --set key=value")
    try:
        value = safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def setting_type(key: str):
    """The annotated type of the dotted leaf key ``key``; an unknown key or a section is the one-line error
    ``--set`` gives for it."""
    cls, prefix = Config, ""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part not in {f.name for f in dataclasses.fields(cls)}:
            raise _unknown_key(key, cls, prefix)
        t = _hints(cls)[part]
        if not dataclasses.is_dataclass(t):
            if i < len(parts) - 1:
                raise SslvitError(f"'{'.'.join(parts[: i + 1])}' is a value, not a section; check the key '{key}'")
            return t
        cls, prefix = t, prefix + part + "."
    raise SslvitError(
        f"'{key}' is a section, not a value; set one of its keys, e.g. {valid_keys(cls, key + '.')[0]}=..."
    )


def apply_overrides(cfg: Config, overrides: Iterable[str]) -> Config:
    """Return a new config with ``key=value`` overrides applied (the input is not mutated)."""
    data = to_dict(cfg)
    for item in overrides:
        key, value = parse_set(item)
        parts = key.split(".")
        node, cls, prefix = data, Config, ""
        for i, part in enumerate(parts):
            fields = {f.name: f for f in dataclasses.fields(cls)}
            if part not in fields:
                raise _unknown_key(key, cls, prefix)
            t = _hints(cls)[part]
            last = i == len(parts) - 1
            if dataclasses.is_dataclass(t):
                if last:
                    raise SslvitError(
                        f"'{key}' is a section, not a value; set one of its keys, e.g. "
                        f"{valid_keys(t, key + '.')[0]}=..."
                    )
                node, cls, prefix = node[part], t, prefix + part + "."
            else:
                if not last:
                    raise SslvitError(f"'{'.'.join(parts[: i + 1])}' is a value, not a section; check the key '{key}'")
                coerce(value, t, key)  # type check now, for a precise message
                node[part] = value
    return from_dict(Config, data)


def load_yaml(path: Path) -> Dict[str, Any]:
    """A recipe or a run's config.yaml -> its mapping. Unreadable, non-UTF-8, invalid YAML, duplicate keys
    and anything but a mapping at the top are one-line errors."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise SslvitError(f"cannot read recipe '{path}': {e.strerror}; check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SslvitError(
            f"recipe '{path}' is not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line}); save it as UTF-8"
        ) from None
    try:
        data = safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise SslvitError(f"recipe '{path}' is not valid YAML{where}: {problem}; fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SslvitError(
            f"recipe '{path}' holds a YAML {type(data).__name__}, not a mapping of sections (seed:, "
            f"data:, model:, train: ...); fix the file (see recipes/smoke.yaml)"
        )
    return data


def load_config(recipe: Optional[str] = None, overrides: Iterable[str] = (), validate_cfg: bool = True) -> Config:
    """Recipe (name or path) + overrides -> validated :class:`Config`."""
    if recipe:
        path = find_recipe(recipe)
        data = load_yaml(path)
        data.pop("recipe_name", None)
        cfg = from_dict(Config, data)
    else:
        cfg = Config()
    cfg = apply_overrides(cfg, overrides)
    if validate_cfg:
        validate(cfg)
    return cfg


def dump_yaml(cfg, path: Path, header: str = "") -> None:
    """Write the resolved config; ``header`` lines become YAML comments (run facts that are not config)."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    atomic_write_text(Path(path), comments + yaml.safe_dump(to_dict(cfg), sort_keys=False))


def config_from_dict(data: Dict[str, Any]) -> Config:
    """Rebuild a config stored in a checkpoint (keys unknown to this version are an error)."""
    return from_dict(Config, data)


def diff_configs(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> List[str]:
    """Leaf differences between two config dicts as 'key: old -> new'."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_configs(a, b, prefix + k + ".")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out
