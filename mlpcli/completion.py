"""Shell completion of `KEY=VALUE` config overrides: the dotted keys of the config tree (with their
help), and for a key with a fixed set of values (choices, true/false) those values. Plain data, so that
cli.py turns it into click's completion items."""

from __future__ import annotations

import dataclasses
import typing

from mlpcli.config import Config
from mlpcli.schema import choices_of


def config_fields(cls: type = Config, prefix: str = "") -> dict[str, dataclasses.Field]:
    """{dotted key: field} of every settable leaf of the config tree, in definition order."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            fields.update(config_fields(hints[f.name], f"{prefix}{f.name}."))
        else:
            fields[f"{prefix}{f.name}"] = f
    return fields


def key_completions(incomplete: str) -> list[tuple[str, str]]:
    """(`key=`, help) for every config key that starts with `incomplete`."""
    return [(f"{key}=", f.metadata.get("help", "")) for key, f in config_fields().items() if key.startswith(incomplete)]


def value_completions(key: str, incomplete: str) -> list[str] | None:
    """The values of config key `key` that start with `incomplete` ([] for keys of open-ended values,
    None if `key` is not a config key)."""
    field = config_fields().get(key)
    if field is None:
        return None
    choices = choices_of(field)
    if choices is None and field.type in (bool, "bool"):        # annotations are strings in config.py
        choices = ["true", "false"]
    return [value for value in choices or [] if value.startswith(incomplete)]
