"""What a data source is: the descriptor from which config validation, `--source` choices, `mlp data download`
and `mlp data info` all derive."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlpcli.data.download import Archive


@dataclass(frozen=True)
class Source:
    """A `data.source`: how to load it, and what is known of it on disk and on the web."""

    name: str                                   # the data.source value
    load: Callable                              # (DataConfig, cache_dir: Path | None) -> {"train": Dataset, maybe "test"}
    reads_path: bool = True                     # whether it reads data.path (else it makes or ships its images)
    archive: Archive | None = None              # its official download, for `mlp data download NAME`
    format: str | None = None                   # what `mlp data info` calls its files on disk
    detect: Callable[[Path], bool] | None = None   # whether a path holds files of that format
