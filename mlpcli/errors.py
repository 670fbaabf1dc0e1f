"""The errors mlpcli raises on bad input; the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import reprlib
from typing import Any

QUOTE_LIMIT = 60   # characters of a value shown in a message


class MlpError(Exception):
    """A problem the user can fix; the message names the key, file or value and suggests the fix."""


class ConfigError(MlpError):
    """A config file, key or value that cannot be used."""


class DataError(MlpError):
    """A dataset or image that is missing, unreadable or inconsistent."""


class CheckpointError(MlpError):
    """A checkpoint that is missing, corrupt, or does not fit what is asked of it."""


class TrainingError(MlpError):
    """Training diverged (non-finite loss or weights)."""


def one_line(err: BaseException) -> str:
    """An exception as one line: an MlpError's message, else its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    first = lines[0] if lines else ""
    if isinstance(err, MlpError) and first:
        return first
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def quote(value: Any) -> str:
    """A short repr of `value` for a message about hostile input: strings, containers, nesting and huge
    integers are cut (a value of gigabytes, or of a billion aliases, is never formatted in full)."""
    text = _SHORT.repr(value)
    return text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "…"


class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:                  # repr() of a 5,000-digit integer raises ValueError
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1:,} digits>"
        return repr(x)


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, QUOTE_LIMIT, QUOTE_LIMIT, QUOTE_LIMIT
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
