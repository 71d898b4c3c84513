"""Configuration machinery: YAML files, ``key.path=value`` overrides and typed dataclasses.

Shared by the trainers (``optisr train``) and the degradation pipeline (``optisr degrade``).
The YAML layout follows BasicSR (``name``, ``model``, ``datasets: {train, val}``,
``train: {optim, scheduler, ...}``, ``val``, ``logger``, ``path``), but the schema itself —
a tree of dataclasses — belongs to each command. This module only provides the machinery:

* :func:`load_yaml_config` reads a file into a plain ``dict``;
* :func:`apply_overrides` applies command-line overrides such as ``train.optim.lr=2e-4`` or
  ``model.widths=[16,32]`` (values are parsed with ``yaml.safe_load``);
* :func:`from_dict` builds (nested) dataclasses from that ``dict`` and checks every key and type;
* :func:`to_dict` turns a dataclass back into YAML/JSON-friendly containers;
* :func:`build_config` chains the three for a trainer's ``run(args)``.

Every problem is a :class:`~optisr.errors.ConfigError` whose message starts with the dotted key
path (``train.optim.lr: expected float, got 'fast'``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from optisr.errors import ConfigError, InputFileError

T = TypeVar("T")

__all__ = [
    "apply_overrides",
    "build_config",
    "check_range",
    "from_dict",
    "load_yaml_config",
    "parse_override",
    "to_dict",
]


def check_range(name: str, pair: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    """Validate a ``(low, high)`` config pair with ``lo <= low <= high <= hi``; returns it as floats.

    ``name`` is the dotted config key used in the one-line :class:`ConfigError` (e.g. ``lr_noise.hole_rate``).
    """
    if len(pair) != 2:
        raise ConfigError(f"{name} must be a (low, high) pair, got {pair!r}")
    a, b = float(pair[0]), float(pair[1])
    if not (math.isfinite(a) and math.isfinite(b) and lo <= a <= b <= hi):
        raise ConfigError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {pair!r}")
    return a, b


def load_yaml_config(path: str | os.PathLike) -> dict:
    """Read a YAML file whose top level is a mapping.

    Returns:
        ``dict`` (an empty file gives ``{}``).

    Raises:
        InputFileError: the file is missing or unreadable.
        ConfigError: the YAML is malformed or its top level is not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read config file ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config file must be a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=value"`` into ``(["a", "b", "c"], parsed value)``.

    The value is parsed with ``yaml.safe_load``: ``4`` -> int, ``2e-4`` -> str (YAML 1.1; float
    fields accept such strings, see :func:`from_dict`), ``[16,32]`` -> list, ``null`` -> None,
    an empty value -> None.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.optim.lr=2e-4")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty component in key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {' '.join(str(exc).split())}") from exc
    return parts, value


def _schema_fields(schema: Any) -> dict[str, Any] | None:
    """Field name -> resolved type of a dataclass type, or None if ``schema`` is not one."""
    schema = _strip_optional(schema)
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        hints = typing.get_type_hints(schema)
        return {f.name: hints[f.name] for f in dataclasses.fields(schema)}
    return None


def _schema_child(schema: Any, key: str) -> Any:
    """The type of ``schema[key]``: a dataclass field, or the value type of ``dict[str, V]``."""
    if schema is None:
        return None
    fields = _schema_fields(schema)
    if fields is not None:
        return fields.get(key)
    schema = _strip_optional(schema)
    if typing.get_origin(schema) in (dict, Mapping):
        args = typing.get_args(schema)
        return args[1] if len(args) == 2 else Any
    return None


def _schema_is_open(schema: Any) -> bool:
    """True when ``schema`` accepts arbitrary keys (``dict[str, V]``, ``dict``, ``Any``)."""
    schema = _strip_optional(schema)
    return schema is Any or schema is dict or typing.get_origin(schema) in (dict, Mapping)


def _unknown_key(dotted: str, key: str, known: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    choices = f" (known keys: {', '.join(sorted(known))})" if known and len(known) <= 20 else ""
    return ConfigError(f"{dotted}: unknown key{hint}{choices}")


def apply_overrides(cfg: dict, overrides: Sequence[str], *, schema: type | None = None) -> dict:
    """Return a deep copy of ``cfg`` with ``KEY.PATH=VALUE`` overrides applied.

    Args:
        cfg: nested ``dict`` as returned by :func:`load_yaml_config`.
        overrides: strings such as ``"train.optim.lr=2e-4"``, ``"model.widths=[16,32]"`` or
            ``"datasets.train.scales=[4,8]"``; applied in order.
        schema: optional root dataclass type. A key that is absent from ``cfg`` but is a field of
            the schema (a field with a default, say) is accepted and created.

    Raises:
        ConfigError: naming the dotted key when a key exists neither in ``cfg`` nor in
            ``schema`` (with close matches from :mod:`difflib`), or when a path goes through a
            value that is not a mapping.
    """
    out = copy.deepcopy(cfg)
    for text in overrides:
        parts, value = parse_override(text)
        node: dict = out
        node_schema: Any = schema
        for i, key in enumerate(parts):
            dotted = ".".join(parts[: i + 1])
            fields = _schema_fields(node_schema) if node_schema is not None else None
            known = set(node) | set(fields or ())
            if key not in known and not (node_schema is not None and _schema_is_open(node_schema)):
                raise _unknown_key(dotted, key, sorted(known))
            child_schema = _schema_child(node_schema, key)
            if i == len(parts) - 1:
                node[key] = value
                break
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise ConfigError(
                    f"{dotted}: is a {type(child).__name__}, not a section; cannot set {'.'.join(parts)}"
                )
            node, node_schema = child, child_schema
    return out


# --------------------------------------------------------------------------- typed dataclasses

_NONE_TYPE = type(None)


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType)


def _strip_optional(tp: Any) -> Any:
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not _NONE_TYPE]
        if len(args) == 1:
            return args[0]
    return tp


def _type_name(tp: Any) -> str:
    if tp is _NONE_TYPE:
        return "null"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (list -> tuple...)."""
    where = path or "<root>"
    if tp is Any or tp is object:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None:
            if _NONE_TYPE in args:
                return None
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got null")
        errors = []
        for arg in args:
            if arg is _NONE_TYPE:
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_describe(value)}")
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if value == c and type(value) is type(c):
                return c
        raise ConfigError(f"{where}: expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected bool (true/false), got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # 1e5 written for a step count
        raise ConfigError(f"{where}: expected int, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected float, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected str, got {_describe(value)}")
    if origin in (list, Sequence) or tp in (list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        args = typing.get_args(tp)
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected a list of {len(args)} items, got {len(value)}: {value!r}")
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        args = typing.get_args(tp) or (Any, Any)
        return {
            _convert(args[0], k, f"{path}.<key>"): _convert(args[1], v, f"{path}.{k}" if path else str(k))
            for k, v in value.items()
        }
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{where}: expected {tp.__name__}, got {_describe(value)}")
    raise ConfigError(f"{where}: unsupported annotation {tp!r} in the config schema")


def from_dict(cls: type[T], d: Mapping[str, Any] | None, path: str = "") -> T:
    """Build the dataclass ``cls`` (recursively) from a mapping, validating every value.

    Supported field annotations: ``int``, ``float`` (ints and numeric strings such as ``"2e-4"``
    are accepted), ``str``, ``bool``, ``list[T]``, ``tuple[A, B]`` / ``tuple[T, ...]`` (written
    as YAML lists), ``Optional[T]`` / ``T | None``, unions, ``Literal[...]``, ``dict[str, T]``,
    ``Any`` and nested dataclasses. Dataclass ``__post_init__`` may raise ``ValueError``; it is
    re-raised as :class:`ConfigError` with the path.

    Args:
        cls: the dataclass type.
        d: the mapping (``None`` is treated as ``{}``, so an empty YAML section uses defaults).
        path: the dotted path of ``d`` in the whole config, used in messages.

    Raises:
        ConfigError: ``"<path.key>: unknown key; did you mean ...?"``, ``"<path.key>: missing
            required key"`` or ``"<path.key>: expected float, got 'x' (str)"``.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise ConfigError(f"{path or '<root>'}: expected a mapping (section), got {_describe(d)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{path}." if path else ""
    for key in d:
        if key not in fields:
            raise _unknown_key(f"{prefix}{key}", str(key), list(fields))
    kwargs = {}
    for name, f in fields.items():
        if name in d:
            kwargs[name] = _convert(hints[name], d[name], f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: missing required key")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Turn a dataclass (recursively) into plain ``dict`` / ``list`` / scalars.

    Tuples become lists so that the result is safe for ``yaml.safe_dump``, JSON and
    ``torch.load(weights_only=True)``; ``from_dict`` turns them back into tuples.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def build_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
) -> T:
    """Load ``path`` (or start from ``base`` / ``{}``), apply ``overrides`` and build ``cls``.

    This is what ``optisr train`` calls (:mod:`optisr.cli.train`)::

        cfg = build_config(engine.CONFIG_CLASS, args.config, collect_overrides(args))
    """
    data = dict(base or {})
    if path is not None:
        data.update(load_yaml_config(path))
    data = apply_overrides(data, list(overrides), schema=cls)
    return from_dict(cls, data)
