"""The errors mlpcli raises on bad input; the CLI prints them as one line and exits non-zero."""


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
