"""Typed config trees: dataclasses whose fields carry help, choices and ranges, built from plain dicts.

`from_dict` validates a nested dict against a dataclass and names the dotted key path of any problem,
with a "did you mean" for misspelled keys; `to_dict` turns the tree back into plain YAML-ready data.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from mlpcli.errors import ConfigError, quote

MAX_TEXT = 4096   # characters in a config string (paths and names included)
BAD_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")   # control characters and lone surrogates


def option(default: Any, help: str, *, choices: Callable[[], list[str]] | list[str] | None = None,
           min: float | None = None, max: float | None = None, above: float | None = None,
           below: float | None = None, length: int | None = None, max_length: int | None = None,
           parse: Callable | None = None, dump: Callable | None = None) -> Any:
    """A config field: its default, one line of help, and the values it allows.

    `choices` may be a callable (a registry looked up lazily); `min`/`max` bound numbers (and each item
    of a list) inclusively, `above`/`below` exclusively (where the math divides by zero at the bound);
    `length` fixes a list's length and `max_length` caps it; `parse(value, path)` and `dump(value)`
    replace the generic validation for fields whose values are not plain types. Float fields take
    finite numbers only; string fields no control characters or lone surrogates.
    """
    meta = {"help": help, "choices": choices, "min": min, "max": max, "above": above, "below": below,
            "length": length, "max_length": max_length, "parse": parse, "dump": dump}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def choices_of(f: dataclasses.Field) -> list[str] | None:
    choices = f.metadata.get("choices")
    return choices() if callable(choices) else choices


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass `cls` from `data` (a dict, or None for all defaults), validating every key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(path)}expected a mapping of keys, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(unknown_key_message(_join(path, str(key)), str(key), list(fields)))
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _value(hints[name], f, data[name], _join(path, name))
        elif dataclasses.is_dataclass(hints[name]):  # nested defaults go through validation too
            values[name] = from_dict(hints[name], {}, _join(path, name))
        elif f.metadata.get("parse") and f.default_factory is not dataclasses.MISSING:  # a list default: raw data
            values[name] = f.metadata["parse"](f.default_factory(), _join(path, name))
    return cls(**values)


def to_dict(tree: Any) -> Any:
    """Plain data (dicts, lists, scalars) for a dataclass tree, in field order."""
    if dataclasses.is_dataclass(tree):
        out = {}
        for f in dataclasses.fields(tree):
            value = getattr(tree, f.name)
            dump = f.metadata.get("dump")
            out[f.name] = dump(value) if dump else to_dict(value)
        return out
    if isinstance(tree, (list, tuple)):
        return [to_dict(v) for v in tree]
    return tree


def flatten(data: Any, path: str = "") -> dict[str, Any]:
    """{dotted key: leaf value} of plain config data (`to_dict` output): nested mappings join their keys
    with dots, lists of mappings their items as `key[i]`; other lists and empty mappings are leaves, e.g.
    {"model.hidden": [256], "features.extractors[0].hog.orientations": 9}."""
    if isinstance(data, dict) and data:
        return {key: value for name, child in data.items() for key, value in flatten(child, _join(path, str(name))).items()}
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return {key: value for i, item in enumerate(data) for key, value in flatten(item, f"{path}[{i}]").items()}
    return {path: data}


def unknown_key_message(path: str, key: str, allowed: list[str], what: str = "key") -> str:
    close = difflib.get_close_matches(key[:MAX_TEXT], allowed, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {what} {quote(path)}{hint} (allowed here: {', '.join(allowed)})"


def _value(hint: Any, f: dataclasses.Field, value: Any, path: str) -> Any:
    parse = f.metadata.get("parse")
    if parse:
        return parse(value, path)
    value = _typed(hint, value, path)
    choices = choices_of(f)
    if choices is not None and value is not None and value not in choices:
        close = difflib.get_close_matches(str(value)[:MAX_TEXT], choices, n=1, cutoff=0.6)
        hint_text = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{path}: {_show(value)} is not one of {', '.join(choices)}{hint_text}")
    _check_range(f, value, path)
    return value


def _typed(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _typed(inner[0], value, path)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list of {_name(args[0])}, got {_show(value)}")
        return [_typed(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_show(value)}")
        return value
    if hint is float:
        return _finite(value, path)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_show(value)}")
        if len(value) > MAX_TEXT:
            raise ConfigError(f"{path}: {quote(value)} is longer than {MAX_TEXT} characters")
        if BAD_TEXT.search(value):
            raise ConfigError(f"{path}: {quote(value)} holds a control character or a lone surrogate; "
                              "use printable text")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {path}")


def _finite(value: Any, path: str) -> float:
    """`value` as a finite float (YAML 1.1 reads `1e-3`, without a dot, as a string: it is converted)."""
    if isinstance(value, str):
        try:
            value = float(value[:MAX_TEXT])
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: expected a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ConfigError(f"{path}: {quote(value)} is too large for a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{path}: {quote(value)} is not a finite number")
    return number


def _check_range(f: dataclasses.Field, value: Any, path: str) -> None:
    length, max_length = f.metadata.get("length"), f.metadata.get("max_length")
    if length is not None and isinstance(value, list) and len(value) != length:
        raise ConfigError(f"{path}: expected {length} values, got {len(value)} ({quote(value)})")
    if max_length is not None and isinstance(value, list) and len(value) > max_length:
        raise ConfigError(f"{path}: expected at most {max_length} values, got {len(value)}")
    lo, hi, above, below = (f.metadata.get(key) for key in ("min", "max", "above", "below"))
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if ((lo is not None and item < lo) or (hi is not None and item > hi)
                or (above is not None and item <= above) or (below is not None and item >= below)):
            raise ConfigError(f"{path}: {quote(item)} is out of range; it must be {_bounds(lo, hi, above, below)}")


def _bounds(lo: float | None, hi: float | None, above: float | None, below: float | None) -> str:
    """The allowed range in words, e.g. "between 0 and 1", "at least 0.0 and below 1.0"."""
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    lower = f"at least {lo}" if lo is not None else f"above {above}" if above is not None else None
    upper = f"at most {hi}" if hi is not None else f"below {below}" if below is not None else None
    return " and ".join(part for part in (lower, upper) if part)


def _name(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(hint, "values")


def _show(value: Any) -> str:
    return f"{quote(value)} ({type(value).__name__})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(path: str) -> str:
    return f"{path}: " if path else ""
