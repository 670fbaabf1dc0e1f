"""Feature extractors by name, and parsing of the `features.extractors` config list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlpcli.errors import ConfigError, quote
from mlpcli.features.base import Extractor
from mlpcli.features.bow import BagOfWords
from mlpcli.features.color import ColorHist
from mlpcli.features.hog import Hog
from mlpcli.features.pixels import Pixels
from mlpcli.schema import from_dict, unknown_key_message

EXTRACTORS: dict[str, type[Extractor]] = {
    "pixels": Pixels,
    "color_hist": ColorHist,
    "hog": Hog,
    "bow": BagOfWords,
}


@dataclass
class ExtractorSpec:
    """One entry of `features.extractors`: an extractor name and its validated options."""

    name: str
    cfg: Any

    def build(self) -> Extractor:
        return EXTRACTORS[self.name](self.cfg)


def parse_extractors(value: Any, path: str) -> list[ExtractorSpec]:
    """Validate a list like [{hog: {orientations: 9}}, {color_hist: {}}] (a bare name means defaults)."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{path}: expected a non-empty list of extractors, e.g. [{{hog: {{}}}}, {{color_hist: {{}}}}]")
    specs = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"{where}: expected one {{name: {{options}}}} mapping, got {quote(item)}")
        (name, options), = item.items()
        if name not in EXTRACTORS:
            raise ConfigError(unknown_key_message(f"{where}.{name}", str(name), sorted(EXTRACTORS), "extractor"))
        specs.append(ExtractorSpec(name, from_dict(EXTRACTORS[name].Config, options, f"{where}.{name}")))
    return specs
