"""The config tree of a run: defaults, YAML loading, dotted overrides and validation.

Every field carries a one-line help; `mlp train --print-config` shows the resolved tree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlpcli.errors import ConfigError, quote
from mlpcli.limits import MAX_COUNT, MAX_IMAGES, MAX_LAYERS, MAX_SIDE, MAX_WIDTH
from mlpcli.readfile import read_regular
from mlpcli.safeyaml import load_yaml
from mlpcli.schema import from_dict, option, to_dict, unknown_key_message

MAX_CONFIG_BYTES = 1 << 20   # a config file is a few kilobytes
MAX_NAME_BYTES = 200         # output.name: the run folder <name>-<timestamp> stays within 255 bytes


def _sources() -> list[str]:
    from mlpcli.data import SOURCES
    return sorted(SOURCES)


def _activations() -> list[str]:
    from mlpcli.nn.layers import ACTIVATIONS
    return sorted(ACTIVATIONS)


def _norms() -> list[str]:
    from mlpcli.nn.layers import NORMS
    return ["none", *sorted(NORMS)]


def _losses() -> list[str]:
    from mlpcli.nn.losses import LOSSES
    return sorted(LOSSES)


def _optimizers() -> list[str]:
    from mlpcli.nn.optim import OPTIMIZERS
    return sorted(OPTIMIZERS)


@dataclass
class ShapesConfig:
    classes: int = option(4, "number of shape classes (circle, square, triangle, cross, ring, diamond)", min=2, max=6)
    per_class: int = option(500, "images per class", min=2, max=10_000_000)
    size: int = option(32, "image side in pixels", min=12, max=256)
    noise: float = option(0.05, "std of the pixel noise, as a fraction of the intensity range", min=0.0, max=1.0)
    seed: int = option(0, "seed of the generator (the dataset stays put when the run's seed changes)", min=0)


@dataclass
class AugmentConfig:
    copies: int = option(0, "augmented copies of every training image, trained on beside the image (and its mirror "
                         "image, data.flip): each shifted by up to `pad` pixels and mirrored at random (0: none)",
                         min=0)
    pad: int = option(4, "largest shift of a copy, in pixels: the image is padded by `pad` on every side and cropped "
                      "back to its size at a random offset", min=0)
    fill: str = option("reflect", "what a shift uncovers: the image mirrored at its border (reflect), its border "
                       "pixels repeated (edge), or black (zero)", choices=["reflect", "edge", "zero"])
    flip: bool = option(True, "mirror each copy left-right with probability 1/2")
    redraw: bool = option(False, "draw new copies for every epoch, their features extracted anew at its start "
                          "(cheap for pixels, costly for bag of words); false: the same copies every epoch, "
                          "extracted once with the images and cached")

    def __post_init__(self) -> None:
        if self.copies and self.pad == 0 and not self.flip:
            raise ConfigError("data.augment: with pad 0 and flip false every copy would equal its image; set "
                              "data.augment.pad to 1 or more, or data.augment.flip to true")
        if self.redraw and not self.copies:
            raise ConfigError("data.augment.redraw: there are no copies to redraw; set data.augment.copies to 1 "
                              "or more")


@dataclass
class DataConfig:
    source: str = option("shapes", "where images come from", choices=_sources)
    path: str | None = option(None, "the dataset's folder or file, for the sources that read one "
                              "(`mlp data info PATH` tells which)")
    val_fraction: float = option(0.2, "fraction of the training images held out for validation (seeded, stratified)",
                                 min=0.01, max=0.9)
    limit: int | None = option(None, "use at most this many training images (a seeded stratified sample)", min=2,
                               max=MAX_IMAGES)
    size: list[int] | None = option(None, "resize every image to [height, width]", min=1, max=MAX_SIDE, length=2)
    mode: str | None = option(None, "convert every image to this color mode", choices=["rgb", "gray"])
    flip: bool = option(False, "add a left-right mirror image of every training image (doubles the training split)")
    flip_eval: bool = option(False, "score every evaluated image (validation, test, eval, predict) by the mean of "
                             "its class scores and its mirror image's (twice the feature time)")
    shift_eval: int = option(0, "also score every evaluated image shifted by this many pixels in each diagonal "
                             "direction (borders per data.augment.fill), by the mean of all the views' class scores "
                             "(5 times the feature time; with flip_eval, 10 times); 0: no shifts", min=0)
    on_error: str = option("raise", "an unreadable image: stop with an error, or skip it with a warning",
                           choices=["raise", "skip"])
    shapes: ShapesConfig = option(ShapesConfig(), "options of the generated `shapes` dataset")
    augment: AugmentConfig = option(AugmentConfig(), "augmented copies of the training images (shifts and flips)")


def _parse_extractors(value: Any, path: str) -> list:
    from mlpcli.features import parse_extractors
    return parse_extractors(value, path)


def _dump_extractors(specs: list) -> list:
    return [{spec.name: to_dict(spec.cfg)} for spec in specs]


@dataclass
class FeaturesConfig:
    extractors: list = option([{"hog": {}}], "feature extractors, concatenated in order: a list of {name: {options}}",
                              parse=_parse_extractors, dump=_dump_extractors)
    normalize: str = option("standard", "per-feature standardization fit on the training split, or none",
                            choices=["standard", "none"])
    chunk: int = option(2000, "at most this many images per extraction task (bounds a worker's memory)", min=1,
                        max=1_000_000)
    cache: bool = option(True, "keep the feature stores in cache_dir, keyed by the images and the feature config "
                         "(false: in a temporary folder removed after the run)")
    load: str = option("auto", "training reads the stored feature rows: memory (the store read whole), disk "
                       "(each minibatch gathered from the memory-mapped store: memory stays bounded), auto (memory "
                       "up to 1 GiB of rows and a quarter of the available memory)", choices=["auto", "memory", "disk"])


def _parse_dropout(value: Any, path: str) -> float | list[float]:
    """model.dropout: one rate for every hidden layer, or a list of rates, one per layer."""
    if isinstance(value, list):
        return [_dropout_rate(rate, f"{path}[{i}]") for i, rate in enumerate(value)]
    return _dropout_rate(value, path)


def _dropout_rate(value: Any, path: str) -> float:
    if isinstance(value, str):  # YAML 1.1 reads `5e-1` (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{path}: {quote(value)} is not a dropout rate; give a number at least 0 and below 1 "
                          f"(0.5 drops half the units), or a list of them, one per hidden layer")
    return float(value)


@dataclass
class ModelConfig:
    hidden: list[int] = option([100], "hidden layer sizes, any number: [] linear classifier, [H] 2-layer net, "
                               "[H1, H2] 3-layer net", min=1, max=MAX_WIDTH, max_length=MAX_LAYERS)
    activation: str = option("relu", "hidden-layer nonlinearity", choices=_activations)
    init: str = option("he", "weight initialization", choices=["he", "xavier", "normal"])
    init_std: float = option(0.01, "std of the `normal` initialization", min=0.0)
    leaky_slope: float = option(0.1, "slope of leaky ReLU for x < 0", min=0.0, max=1.0)
    elu_alpha: float = option(1.0, "ELU's alpha: the value approached as x -> -inf is -alpha", min=0.0)
    maxout_pieces: int = option(2, "affine pieces per maxout unit", min=2, max=1000)
    norm: str = option("none", "normalization between each hidden layer's affine map and its activation",
                       choices=_norms)
    norm_momentum: float = option(0.9, "batch norm: running average ← momentum·running + (1 − momentum)·batch "
                                  "statistic", min=0.0, max=1.0)
    norm_eps: float = option(1e-5, "batch and layer norm: added to the variance under the square root; must be "
                             "positive", min=0.0)
    input_dropout: float = option(0.0, "fraction of the input features zeroed at random in each training step "
                                  "(inverted dropout, before the first layer)", min=0.0, below=1.0)
    dropout: float | list[float] = option(0.0, "fraction of hidden units zeroed at random in each training step "
                                          "(inverted dropout): one rate for all hidden layers or a list, one per "
                                          "layer", parse=_parse_dropout)
    dtype: str = option("float32", "floating-point type of weights and features", choices=["float32", "float64"])

    @property
    def dropout_rates(self) -> list[float]:
        """model.dropout as one rate per hidden layer."""
        return self.dropout if isinstance(self.dropout, list) else [self.dropout] * len(self.hidden)

    def __post_init__(self) -> None:
        if isinstance(self.dropout, list) and len(self.dropout) != len(self.hidden):
            count = len(self.dropout)
            raise ConfigError(f"model.dropout: {self.dropout} has {count} rate{'s' * (count != 1)} for the "
                              f"{len(self.hidden)} hidden layers {self.hidden}; give one rate for all layers or a "
                              f"list of {len(self.hidden)}")
        if self.norm_eps <= 0:
            raise ConfigError(f"model.norm_eps: must be positive, got {self.norm_eps!r}: a unit whose values are "
                              f"all equal would be divided by zero (try 1e-5)")


@dataclass
class LossConfig:
    name: str = option("softmax", "softmax cross-entropy, or multiclass hinge (SVM)", choices=_losses)
    delta: float = option(1.0, "hinge margin Δ in Σ_{j≠y} max(0, s_j − s_y + Δ)", min=0.0)


@dataclass
class OptimConfig:
    name: str = option("momentum", "update rule", choices=_optimizers)
    lr: float = option(0.05, "initial learning rate", min=0.0)
    momentum: float = option(0.9, "momentum coefficient (momentum)", min=0.0, below=1.0)
    nesterov: bool = option(False, "Nesterov momentum (momentum)")
    rho: float = option(0.99, "decay of the squared-gradient average (rmsprop)", min=0.0, below=1.0)
    beta1: float = option(0.9, "first-moment decay (adam)", min=0.0, below=1.0)
    beta2: float = option(0.999, "second-moment decay (adam)", min=0.0, below=1.0)
    eps: float = option(1e-8, "denominator guard (rmsprop, adam)", above=0.0)
    schedule: str = option("step", "learning-rate schedule over epochs", choices=["constant", "step", "cosine"])
    decay: float = option(0.95, "step schedule: multiply the rate by this every `step_every` epochs", above=0.0,
                          max=1.0)
    step_every: int = option(1, "step schedule: epochs between decays", min=1, max=MAX_COUNT)
    min_lr: float = option(0.0, "cosine schedule: the final learning rate", min=0.0)


@dataclass
class TrainConfig:
    epochs: int = option(20, "maximum number of passes over the training set", min=1, max=MAX_COUNT)
    batch_size: int = option(200, "minibatch size", min=1, max=1_000_000)
    patience: int = option(5, "stop after this many epochs without a better validation accuracy (0: never)", min=0,
                           max=MAX_COUNT)
    shuffle: str = option("rows", "order of each epoch's rows: rows (any permutation equally likely), blocks "
                          "(blocks of 64 KB of consecutive rows in random order, shuffled within windows of 4 MB "
                          "or one batch: a store too large to map is read a block at a time, not a row at a time)",
                          choices=["rows", "blocks"])
    threads: int | None = option(None, "threads for the training steps' matrix products and weight updates (default: "
                                 "one per core); each large product is split across them, each part on "
                                 "single-threaded BLAS",
                                 min=1, max=256)


@dataclass
class OutputConfig:
    dir: str = option("runs", "folder that holds run folders")
    name: str | None = option(None, "run name (default: the config file's name); the folder is <name>-<timestamp>")
    plots: bool = option(True, "write PNG plots into the run folder")

    def __post_init__(self) -> None:
        if self.name is not None and (not self.name.strip() or "/" in self.name or "\0" in self.name
                                      or len(self.name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES):
            raise ConfigError(f"output.name: {quote(self.name)} is not a run name: give a word of at most "
                              f"{MAX_NAME_BYTES} bytes without slashes (the run folder is "
                              "output.dir/<name>-<timestamp>; set output.dir for another folder)")


def _parse_space(value: Any, path: str) -> dict:
    from mlpcli.sweep.space import parse_space
    return parse_space(value, path)


def _dump_space(space: dict) -> dict:
    from mlpcli.sweep.space import dump_space
    return dump_space(space)


@dataclass
class SweepConfig:
    params: dict = option({}, "search space (mlp sweep): {dotted key: [choices] or 'range(lo,hi,step)', "
                          "'uniform(lo,hi)', 'loguniform(lo,hi)', 'int(lo,hi)'}", parse=_parse_space, dump=_dump_space)
    method: str = option("grid", "grid: every combination of the choices; random: seeded draws; tpe: Optuna's "
                         "TPE sampler", choices=["grid", "random", "tpe"])
    trials: int | None = option(None, "configurations to draw (random, tpe; default 20); grid runs them all", min=1)
    seeds: int = option(1, "runs of every configuration, with seeds seed, seed+1, ...: results show mean ± std", min=1)
    seed: int = option(0, "seed of the random and tpe samplers: the same seed gives the same trials", min=0)
    metric: str = option("val_acc", "what ranks the trials: best validation accuracy, or lowest validation loss",
                         choices=["val_acc", "val_loss"])
    prune: str = option("none", "halving: successive halving, only the best 1/eta of the configurations "
                        "continue at each rung of epochs", choices=["none", "halving"])
    eta: int = option(3, "successive halving: 1/eta of the configurations continue at each rung", min=2)
    min_epochs: int = option(1, "successive halving: epochs of the first rung (rungs: min_epochs·eta^k, then "
                             "train.epochs)", min=1)
    round: int = option(4, "tpe: configurations drawn per round before their results are told (fixed, so the "
                        "trials do not depend on the number of workers)", min=1)


@dataclass
class Config:
    """A run's whole configuration: load_config builds it from YAML and overrides, dump_config writes it back."""

    seed: int = option(0, "seed of the one random generator behind splits, init, shuffling and sampling", min=0)
    data: DataConfig = option(DataConfig(), "the dataset")
    features: FeaturesConfig = option(FeaturesConfig(), "the feature pipeline")
    model: ModelConfig = option(ModelConfig(), "the network")
    loss: LossConfig = option(LossConfig(), "the data loss")
    reg: float = option(1e-3, "L2 strength λ in λ·Σ_k ΣW_k² (weights only: not biases, nor the norms' γ, β)",
                        min=0.0)
    optim: OptimConfig = option(OptimConfig(), "the optimizer and learning-rate schedule")
    train: TrainConfig = option(TrainConfig(), "the training loop")
    output: OutputConfig = option(OutputConfig(), "where runs are written")
    cache_dir: str | None = option("~/.cache/mlpcli", "cache of feature stores (null: off); `mlp cache info` shows it")
    cache_max_gb: float = option(20.0, "size limit of the cache: least recently used stores are removed beyond it",
                                 min=0.0)
    sweep: SweepConfig = option(SweepConfig(), "mlp sweep: the search space and how it is searched")


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """The validated config from YAML file `path` (None: the defaults) with `key.path=value` overrides."""
    raw = read_yaml(path) if path is not None else {}
    for item in overrides:
        apply_override(raw, item)
    cfg = from_dict(Config, raw)
    if cfg.output.name is None:
        cfg.output.name = Path(path).stem if path is not None else "default"
    return cfg


def read_yaml(path: str | Path) -> dict:
    """The mapping in YAML file `path`, or a ConfigError naming the file and the problem."""
    path = Path(path)
    try:
        data = read_regular(path, MAX_CONFIG_BYTES)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a config file") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); a config file is YAML text") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a config file is a few kilobytes "
                          "of YAML")
    raw = load_yaml(text, str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict, item: str) -> None:
    """Set `key.path=value` (value read as YAML) in the raw config mapping `raw`."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {quote(item)} is not of the form key.path=value (e.g. optim.lr=0.05)")
    value = load_yaml(text, f"override {quote(item)}")
    set_key(raw, key, value, item)


def set_key(raw: dict, key: str, value: Any, item: str | None = None) -> None:
    """Set dotted config key `key` to `value` in the raw config mapping `raw`; `item` is the override
    text named in errors (default: key=value)."""
    shown = quote(item if item is not None else f"{key}=...")
    node, cls = raw, Config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth + 1])
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            raise ConfigError(unknown_key_message(where, part, list(fields)))
        if depth == len(parts) - 1:
            node[part] = value
            return
        cls = _dataclass_named(fields[part].type)
        if cls is None:
            raise ConfigError(f"override {shown}: '{where}' is a value, not a section; set it whole ({where}=...)")
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {shown}: '{where}' is not a mapping in the config file")
        node = child


def _dataclass_named(type_name: str) -> type | None:
    """The config section class a field's annotation names (None for plain values)."""
    return {c.__name__: c for c in (ShapesConfig, AugmentConfig, DataConfig, FeaturesConfig, ModelConfig, LossConfig,
                                    OptimConfig, TrainConfig, OutputConfig, SweepConfig)}.get(type_name)


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text (keys in definition order)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
