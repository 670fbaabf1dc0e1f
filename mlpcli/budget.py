"""The memory a run will allocate, estimated before anything large is allocated, and refused in one
line when it cannot fit.

Counted is what a run allocates whatever the number of images N: weights, gradients, optimizer slots
and the checkpoint copies of them; a batch's activations; the feature extractors' fitting buffers
(bag-of-words patches, k-means distance blocks); one chunk of images and features per core; plus the
labels, 16 bytes per image. Not counted are the images and the feature matrix themselves, which grow
with N (the feature store keeps them on disk). The estimates are upper bounds of what the code
allocates, checked against measurements in tests/test_budget.py.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli.errors import ConfigError

EVAL_BATCH = 1000             # rows per forward pass when scoring (predictor.batched_scores)
WORKER_BYTES = 64 << 20       # a feature worker process before its work (measured: 43 MiB)


@dataclass(frozen=True)
class Need:
    """One part of a task's memory: what it is, its bytes, and the settings that set it."""

    what: str
    bytes: int
    keys: tuple[str, ...]


def require(needs: list[Need], task: str) -> None:
    """ConfigError naming the largest parts and their settings if `needs` exceed the memory this process
    can still get."""
    total = sum(need.bytes for need in needs)
    free = available()
    if total > free:
        largest = sorted(needs, key=lambda need: -need.bytes)[:2]
        parts = ", ".join(f"{_size(need.bytes)} for {need.what}" for need in largest)
        keys = list(dict.fromkeys(key for need in largest for key in need.keys))
        settings = ", ".join(keys[:-1]) + " or " + keys[-1] if len(keys) > 1 else keys[0]
        raise ConfigError(f"{task} needs about {_size(total)} of memory, but {_size(free)} is available "
                          f"({parts}); lower {settings}")


def available() -> int:
    """Bytes this process can still allocate: the system's available memory, lowered by a cgroup
    memory limit and by an address-space limit (ulimit -v) where one is set."""
    import psutil

    limits = [psutil.virtual_memory().available]
    cgroup = _cgroup_room()
    if cgroup is not None:
        limits.append(cgroup)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft - psutil.Process().memory_info().vms)
    return max(0, min(limits))


def training(cfg, image_shape: tuple[int, int, int], classes: int, images: int) -> list[Need]:
    """What `mlp train` allocates for Config `cfg` on `images` images of shape (H, W, C) in `classes`
    classes, the images and feature matrix aside."""
    from mlpcli.nn.optim import OPTIMIZERS

    pipeline = _pipeline(cfg)
    dim = sum(pipeline.dims(image_shape))
    slots = len(OPTIMIZERS[cfg.optim.name].slots)
    batch = min(cfg.train.batch_size, 2 * images if cfg.data.flip else images)
    # live: weights, gradients, slots; a resumed or best checkpoint's weights and slots; slots copied to save
    return [*network(cfg, dim, classes, "the weights, gradients and optimizer state", copies=3 + 3 * slots,
                     rows=max(3 * batch, EVAL_BATCH)),
            *features(cfg, image_shape, fit=True),
            Need("the labels", 16 * images, ("data.limit",))]


def inference(cfg, image_shape: tuple[int, int, int], classes: int, slots: int) -> list[Need]:
    """What loading and evaluating a checkpoint of Config `cfg` allocates: its arrays (the weights, `slots`
    optimizer slots of them, the feature state), the network rebuilt from them, and the features of one
    chunk of images per core."""
    pipeline = _pipeline(cfg)
    state = sum(math.prod(shape) * dtype.itemsize for shape, dtype in pipeline.state_spec(image_shape).values())
    return [*network(cfg, sum(pipeline.dims(image_shape)), classes, "the weights and optimizer state",
                     copies=2 + slots, rows=EVAL_BATCH),
            Need("the feature state", state, ("features.extractors",)),
            *features(cfg, image_shape, fit=False)]


def gradcheck(cfg, input_dim: int, classes: int, batch: int, gates: bool) -> list[Need]:
    """What `mlp gradcheck` allocates: the float64 network on a random batch (X, y), or with `gates` each
    gate alone (the activation's input is 6 units wide, times maxout_pieces)."""
    from mlpcli.nn.gradcheck import GATE_BATCH, GATE_UNITS

    if gates:
        pieces = cfg.model.maxout_pieces if cfg.model.activation == "maxout" else 1
        return [Need("the gates' inputs and gradients", 8 * 8 * GATE_BATCH * GATE_UNITS * pieces,
                     ("model.maxout_pieces",))]
    # weights, gradients and a copy of the checked gradient; the batch's activations (3 per layer)
    return network(cfg, input_dim, classes, "the weights and gradients", copies=3, rows=3 * batch, itemsize=8)


def network(cfg, input_dim: int, classes: int, what: str, *, copies: int, rows: int,
            itemsize: int | None = None) -> list[Need]:
    """The weights and biases `copies` times over; and the activations of `rows` rows: a forward output,
    its gradient and dX for each row of a training batch, a forward output for each of a scoring batch."""
    itemsize = itemsize or np.dtype(cfg.model.dtype).itemsize
    layers = layer_shapes(cfg.model, input_dim, classes)
    params = sum((fan_in + 1) * width for fan_in, width in layers)
    widths = sum(width for _, width in layers)
    return [Need(f"{what} ({params:,} parameters on {input_dim:,} inputs)", copies * itemsize * params,
                 ("model.hidden", "the features")),
            Need("the activations", itemsize * rows * (input_dim + widths), ("train.batch_size", "model.hidden"))]


def layer_shapes(model_cfg, input_dim: int, classes: int) -> list[tuple[int, int]]:
    """(fan_in, width) of each Linear gate, as MLP.from_config builds them: a maxout layer's Linear is
    maxout_pieces times as wide as its units."""
    pieces = model_cfg.maxout_pieces if model_cfg.activation == "maxout" else 1
    sizes = [input_dim, *model_cfg.hidden, classes]
    return [(fan_in, fan_out * pieces if i < len(sizes) - 2 else fan_out)
            for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]))]


def features(cfg, image_shape: tuple[int, int, int], fit: bool) -> list[Need]:
    """Extraction on one worker per core, each with a chunk of decoded images and each extractor's output
    and scratch for them; and with `fit` the largest extractor fitting and the normalization statistics."""
    from mlpcli.parallel import cores

    pipeline = _pipeline(cfg)
    images = cfg.features.chunk * math.prod(image_shape)                   # a chunk of decoded images
    chunk = sum(extractor.transform_bytes(image_shape, cfg.features.chunk) for extractor in pipeline.extractors)
    needs = [Need("extracting features", cores() * (WORKER_BYTES + images + chunk),
                  ("features.chunk", "features.extractors"))]
    if fit:
        fitting = max(extractor.fit_bytes(image_shape) for extractor in pipeline.extractors)
        stats = 16 * 1024 * sum(pipeline.dims(image_shape))         # column_stats' float64 row blocks
        needs.append(Need("fitting the features", fitting + stats, ("features.extractors",)))
    return needs


def _pipeline(cfg):
    from mlpcli.features.pipeline import FeaturePipeline

    return FeaturePipeline(cfg.features, cfg.model.dtype)


def _cgroup_room() -> int | None:
    """Bytes left under the memory limit of the cgroup this process sees as its root (a container's:
    cgroup v2 or v1), or None without a limit."""
    root = Path("/sys/fs/cgroup")
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = int((root / limit_file).read_text())
            usage = int((root / usage_file).read_text())
        except (OSError, ValueError):        # no such file, or "max": no limit
            continue
        if limit < 1 << 60:                   # v1 writes "no limit" as a number near 2**63
            return limit - usage
    return None


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 1024:,.1f} KiB"
