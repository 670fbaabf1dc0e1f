"""Checkpoints: one .npz holding everything a run needs to be evaluated or resumed, and no pickle.

Arrays: `meta` (UTF-8 JSON as uint8: format version, resolved config, class names, image shape, input
dimension, training progress), `params/<name>` (weights), `features/<name>` (fitted feature state),
`optim/<name>` (optimizer state) and `buffers/<name>` (batch norm's running averages).

`load` reads the file as hostile input, against a typed schema for every member: `meta` must be an
object of exactly the known fields with exact types and bounds; the arrays must be exactly those that
the network, feature pipeline and optimizer described by the checkpoint's own config have, with their
shapes and dtypes, finite — checked from the zip directory and .npy headers before any data is read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlpcli import budget
from mlpcli.config import Config
from mlpcli.data.dataset import class_names_problem
from mlpcli.errors import CheckpointError, MlpError, quote
from mlpcli.limits import MAX_IMAGES, MAX_SIDE
from mlpcli.npzfile import NpzError, NpzReader, save_npz
from mlpcli.schema import from_dict, to_dict

FORMAT_VERSION = 1
GROUPS = ("params", "features", "optim", "buffers")
META_FIELDS = ("format_version", "config", "classes", "image_shape", "input_dim", "progress")
MAX_META_BYTES = 1 << 20
MAX_META_DEPTH = 32
STOPPED = ("", "completed", "early_stop")


@dataclass
class Checkpoint:
    config: Config
    classes: list[str]
    image_shape: tuple[int, ...]        # (H, W, C) of the images the features were fit on
    input_dim: int                      # D, the feature dimension
    params: dict[str, np.ndarray]       # "layer{i}.W" (D_i, D_i+1), "layer{i}.b" (D_i+1,)
    features: dict[str, np.ndarray]     # FeaturePipeline.state()
    optim: dict[str, np.ndarray] = field(default_factory=dict)     # Optimizer.state(); {}: not resumable
    progress: dict[str, Any] = field(default_factory=dict)   # epoch, step, best metric, RNG state, ...; {}: none
    buffers: dict[str, np.ndarray] = field(default_factory=dict)   # MLP.buffers: "norm{i}.running_mean", ...


class _Invalid(Exception):
    """A checkpoint that breaks its schema; `load` adds the file name."""


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write `ckpt` atomically; the same checkpoint always gives the same bytes."""
    meta = {
        "format_version": FORMAT_VERSION,
        "config": to_dict(ckpt.config),
        "classes": list(ckpt.classes),
        "image_shape": list(ckpt.image_shape),
        "input_dim": int(ckpt.input_dim),
        "progress": ckpt.progress,
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
    for group in GROUPS:
        arrays.update({f"{group}/{name}": value for name, value in getattr(ckpt, group).items()})
    save_npz(path, arrays)


def load(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint (a .npz, or a run folder: its best.npz, else last.npz); a
    CheckpointError naming the file and the problem if it breaks the schema in any way."""
    path = Path(path)
    if path.is_dir():
        path = _checkpoint_in(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}" if not path.exists()
                              else f"{path}: not a file; a checkpoint is a .npz file")
    try:
        with NpzReader(path) as npz:
            return _read(npz)
    except (NpzError, _Invalid, MlpError) as err:
        raise CheckpointError(f"{path}: {err}") from None


def _read(npz: NpzReader) -> Checkpoint:
    from mlpcli.features.pipeline import FeaturePipeline
    from mlpcli.nn.model import MLP
    from mlpcli.nn.optim import OPTIMIZERS

    if "meta" not in npz.members:
        raise _Invalid("not an mlpcli checkpoint (no 'meta' array)")
    meta = _meta(npz)
    config, classes, image_shape = meta["config"], meta["classes"], meta["image_shape"]
    pipeline = FeaturePipeline(config.features, config.model.dtype)
    try:
        dim = sum(pipeline.dims(image_shape))
    except MlpError as err:
        raise _Invalid(f"its image shape {list(image_shape)} does not fit its features: {err}") from None
    if type(meta["input_dim"]) is not int or meta["input_dim"] != dim:
        raise _Invalid(f"meta input_dim is {quote(meta['input_dim'])}, but its features of {list(image_shape)} "
                       f"images have {dim} dimensions")
    slots = OPTIMIZERS[config.optim.name].slots if any(name.startswith("optim/") for name in npz.members) else None
    budget.require(budget.inference(config, image_shape, len(classes), len(slots or ())), "loading this checkpoint")
    # the network its config describes names every array it needs, and holds the weights once read
    model = MLP.from_config(dim, len(classes), config.model, config.loss, config.reg, np.random.default_rng(0))
    spec = _spec({"params": model.params, "buffers": model.buffers}, pipeline.state_spec(image_shape), slots)
    groups: dict[str, dict[str, np.ndarray]] = {group: {} for group in GROUPS}
    for name, header in _headers(npz, spec).items():
        group, _, key = name.partition("/")
        array = npz.read(name, header, out={"params": model.params, "buffers": model.buffers}.get(group, {}).get(key))
        _check_values(name, array)
        groups[group][key] = array
    return Checkpoint(config, classes, image_shape, dim, groups["params"], groups["features"], groups["optim"],
                      meta["progress"], groups["buffers"])


def _spec(model_arrays: dict[str, dict[str, np.ndarray]], feature_spec: dict,
          slots: tuple[str, ...] | None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Member name → (shape, dtype) of every array a checkpoint of this network (its params and buffers),
    feature state and optimizer (`slots`; None: no optimizer state) holds. Optimizer.state() is a
    "slot.param" array shaped as each parameter for each slot, and the step count "t"."""
    spec = {f"{group}/{name}": (array.shape, array.dtype)
            for group, arrays in model_arrays.items() for name, array in arrays.items()}
    spec |= {f"features/{name}": value for name, value in feature_spec.items()}
    if slots is not None:
        spec |= {f"optim/{slot}.{name}": (array.shape, array.dtype)
                 for slot in slots for name, array in model_arrays["params"].items()}
        spec["optim/t"] = ((), np.dtype(np.int64))
    return spec


def _meta(npz: NpzReader) -> dict[str, Any]:
    """The validated meta: its fields, with `config` a Config and `image_shape` a tuple."""
    header = npz.header("meta")
    if header.dtype != np.uint8 or len(header.shape) != 1 or header.shape[0] > MAX_META_BYTES:
        raise _Invalid(f"'meta' is {header.dtype} {header.shape}; expected UTF-8 JSON as at most "
                       f"{MAX_META_BYTES:,} uint8 values")
    try:
        meta = json.loads(npz.read("meta", header).tobytes().decode("utf-8"),
                          parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:   # JSONDecodeError is a ValueError
        raise _Invalid(f"'meta' is not valid JSON ({' '.join(str(err).split())[:120]})") from None
    if not isinstance(meta, dict):
        raise _Invalid(f"'meta' is a JSON {type(meta).__name__}, not an object")
    if _depth(meta) > MAX_META_DEPTH:
        raise _Invalid(f"'meta' is nested deeper than {MAX_META_DEPTH} levels")
    if set(meta) != set(META_FIELDS):
        missing, extra = sorted(set(META_FIELDS) - set(meta)), sorted(set(meta) - set(META_FIELDS))
        raise _Invalid("'meta' " + "; ".join(([f"lacks {', '.join(missing)}"] if missing else [])
                                             + ([f"has unknown fields {quote(extra)}"] if extra else [])))
    version = meta["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise _Invalid(f"checkpoint format version {quote(version)}; this mlpcli reads version {FORMAT_VERSION}")
    if not isinstance(meta["config"], dict):
        raise _Invalid(f"its config is {quote(meta['config'])}, not a mapping of config keys")
    try:
        config = from_dict(Config, meta["config"])
    except MlpError as err:
        raise _Invalid(f"its config is invalid: {err}") from None
    return {**meta, "config": config, "classes": _classes(meta["classes"]),
            "image_shape": _image_shape(meta["image_shape"]), "progress": _progress(meta["progress"], config)}


def _classes(value: Any) -> list[str]:
    problem = class_names_problem(value)
    if problem:
        raise _Invalid(f"meta classes {problem}")
    return value


def _image_shape(value: Any) -> tuple[int, int, int]:
    if (not isinstance(value, list) or len(value) != 3 or any(type(side) is not int for side in value)
            or not (1 <= value[0] <= MAX_SIDE and 1 <= value[1] <= MAX_SIDE) or value[2] not in (1, 3)):
        raise _Invalid(f"meta image_shape is {quote(value)}; expected [height, width, channels] with sides of "
                       f"1 to {MAX_SIDE} pixels and 1 or 3 channels")
    return tuple(value)


def _progress(value: Any, config: Config) -> dict[str, Any]:
    """Training progress (train.Progress as a dict), every field typed and bounded; {} for none."""
    if value == {}:
        return value
    if (not isinstance(value, dict) or not set(value) <= set(PROGRESS)
            or not set(PROGRESS) - set(value) <= PROGRESS_ADDED):
        raise _Invalid(f"meta progress is {quote(value)}; expected an object with the fields "
                       f"{', '.join(PROGRESS)}")
    for key, check in PROGRESS.items():
        if key in value and not check(value[key], value, config):
            raise _Invalid(f"meta progress.{key} is {quote(value[key])}, which does not fit the checkpoint "
                           f"(train.epochs={config.train.epochs}, train.batch_size={config.train.batch_size})")
    return value


def _int(value: Any) -> bool:
    return type(value) is int


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


PROGRESS = {   # field → check(value, progress, config); the fields of train.Progress
    "epoch": lambda v, p, c: _int(v) and 0 <= v <= c.train.epochs,
    "step": lambda v, p, c: _int(v) and 0 <= v * c.train.batch_size <= MAX_IMAGES,
    "rng_state": lambda v, p, c: _generator_state(v),
    "dropout_state": lambda v, p, c: v == {} or _generator_state(v),
    "loss_sum": lambda v, p, c: _number(v) and v >= 0,
    "data_loss_sum": lambda v, p, c: _number(v) and v >= 0,
    "correct": lambda v, p, c: _int(v) and _int(p["step"]) and 0 <= v <= p["step"] * c.train.batch_size,
    "best_acc": lambda v, p, c: _number(v) and (v == -1 or 0 <= v <= 1),
    "best_epoch": lambda v, p, c: _int(v) and _int(p["epoch"]) and 0 <= v <= p["epoch"],
    "stale": lambda v, p, c: _int(v) and _int(p["epoch"]) and 0 <= v <= p["epoch"],
    "stopped": lambda v, p, c: v in STOPPED and isinstance(v, str),
}
PROGRESS_ADDED = {"data_loss_sum", "dropout_state"}   # fields newer than the first version-1 checkpoints


def _generator_state(value: Any) -> bool:
    """Whether `value` is a state of the bit generator seeding.generators makes, exactly as numpy gives it."""
    from mlpcli.seeding import generators

    generator = generators(0)["shuffle"]
    if not _same_form(value, generator.bit_generator.state):
        return False
    try:
        generator.bit_generator.state = value
    except (TypeError, ValueError, KeyError, OverflowError):
        return False
    return generator.bit_generator.state == value


def _same_form(value: Any, template: Any) -> bool:
    """Same nested keys and leaf types as `template`, strings equal, integers in [0, 2**128)."""
    if isinstance(template, dict):
        return (isinstance(value, dict) and set(value) == set(template)
                and all(_same_form(value[key], template[key]) for key in template))
    if isinstance(template, str):
        return value == template
    return type(value) is int and 0 <= value < 1 << 128


def _headers(npz: NpzReader, spec: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict:
    """Each expected member's header, checked against `spec`; _Invalid for a missing or extra member."""
    names = set(npz.members) - {"meta"}
    missing, extra = sorted(set(spec) - names), sorted(names - set(spec))
    if extra:
        raise _Invalid(f"unexpected arrays {quote(extra)}, which its config does not describe")
    if missing:
        raise _Invalid(f"lacks arrays {quote(missing)}, which its config needs")
    headers = {}
    for name, (shape, dtype) in spec.items():
        header = npz.header(name)
        if header.shape != tuple(shape) or header.dtype != dtype or header.fortran_order:
            order = " (Fortran order)" if header.fortran_order else ""
            raise _Invalid(f"array '{name}' is {header.dtype} {header.shape}{order}, but its config describes "
                           f"{dtype} {tuple(shape)}")
        headers[name] = header
    return headers


def _check_values(name: str, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _Invalid(f"array '{name}' holds non-finite values (NaN or infinity)")
    if name == "features/normalize.std" and not (array > 0).all():
        raise _Invalid(f"array '{name}' holds values that are not positive; they divide the features")
    if name == "optim/t" and array < 0:
        raise _Invalid(f"optimizer step count '{name}' is {int(array)}; it cannot be negative")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"an object repeats a key ({quote(sorted(keys))})")
    return dict(pairs)


def _depth(data: Any) -> int:
    """Nesting depth of JSON data, counted without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _checkpoint_in(run_dir: Path) -> Path:
    """best.npz of a run folder (or last.npz when there is no best yet)."""
    for name in ("best.npz", "last.npz"):
        candidate = run_dir / "checkpoints" / name
        if candidate.exists():
            return candidate
    raise CheckpointError(f"{run_dir}: no checkpoints/best.npz or checkpoints/last.npz in this folder")
