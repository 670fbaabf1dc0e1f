"""The README documents every config key, extractor option, data source and command there is."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from mlpcli.cli import cli
from mlpcli.config import Config
from mlpcli.data import SOURCES
from mlpcli.features import EXTRACTORS

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def keys(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


@pytest.mark.parametrize("key", list(keys(Config)))
def test_config_key_in_readme(key):
    assert f"| `{key}` |" in README


@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_extractor_options_in_readme(name):
    section = README.split(f"\n`{name}`\n", 1)
    assert len(section) == 2, f"no section for extractor {name}"
    table = section[1].split("\n\n`", 1)[0]
    for option in keys(EXTRACTORS[name].Config):
        assert f"| `{option}` |" in table


@pytest.mark.parametrize("source", list(SOURCES))
def test_data_source_in_readme(source):
    assert f"`{source}`" in README


@pytest.mark.parametrize("command", list(cli.commands))
def test_command_in_readme(command):
    assert f"mlp {command}" in README
