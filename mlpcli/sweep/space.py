"""The search space of a sweep: one parameter per config key, written on the command line or in the
`sweep.params` section of a config.

    optim.lr=0.01,0.1,1              choices, each read as YAML (model.hidden=[256],[512,256])
    train.batch_size=range(32,257,32) choices lo, lo+step, ... below hi (Python's range; floats too)
    reg=uniform(0,0.01)              a float drawn uniformly from [lo, hi]
    optim.lr=loguniform(1e-4,1e-1)   a float drawn uniformly in log scale from [lo, hi]
    model.hidden.0=int(64,512)       an integer drawn uniformly from lo..hi, both included

Choices and ranges enumerate (grid search); uniform, loguniform and int are distributions for the
random and tpe methods, which draw through Optuna.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

import yaml

from mlpcli.errors import ConfigError

FUNCTIONS = ("range", "uniform", "loguniform", "int")
MAX_VALUES = 1_000      # values of one range(): each is validated before the sweep starts
_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.DOTALL)


class _Listed:
    """A parameter with a list of `values`; a sampler draws the index of one."""

    log = False

    def decode(self, drawn: Any) -> Any:
        return self.values[drawn]

    def examples(self) -> tuple:
        return self.values


@dataclass(frozen=True)
class Choice(_Listed):
    """One of a list of values (YAML data: numbers, strings, lists, ...)."""

    values: tuple

    def spec(self) -> Any:
        return list(self.values)

    def distribution(self):
        from optuna.distributions import CategoricalDistribution
        return CategoricalDistribution(list(range(len(self.values))))   # unordered: values may be lists


@dataclass(frozen=True)
class Range(_Listed):
    """lo, lo + step, ... below hi, as Python's range (exact decimal steps for floats)."""

    lo: int | float
    hi: int | float
    step: int | float

    @property
    def count(self) -> int:
        lo, step = Decimal(str(self.lo)), Decimal(str(self.step))
        return int(max(0, ((Decimal(str(self.hi)) - lo) / step).to_integral_value(rounding=ROUND_CEILING)))

    @property
    def values(self) -> tuple:
        lo, step = Decimal(str(self.lo)), Decimal(str(self.step))
        kind = int if all(isinstance(v, int) for v in (self.lo, self.hi, self.step)) else float
        return tuple(kind(lo + i * step) for i in range(self.count))

    def spec(self) -> str:
        return f"range({self.lo}, {self.hi}, {self.step})"

    def distribution(self):
        """An ordered distribution over the values (so TPE sees that 64 lies between 32 and 128)."""
        from optuna.distributions import IntDistribution
        return IntDistribution(0, len(self.values) - 1)      # the index of the value


@dataclass(frozen=True)
class Interval:
    """A number drawn from [lo, hi]: uniformly, uniformly in log scale (`log`), or an integer (`integer`)."""

    lo: int | float
    hi: int | float
    log: bool = False
    integer: bool = False

    values = None   # not enumerable: grid search refuses it

    def spec(self) -> str:
        return f"{'int' if self.integer else 'loguniform' if self.log else 'uniform'}({self.lo}, {self.hi})"

    def distribution(self):
        from optuna.distributions import FloatDistribution, IntDistribution
        if self.integer:
            return IntDistribution(int(self.lo), int(self.hi))
        return FloatDistribution(float(self.lo), float(self.hi), log=self.log)

    def decode(self, drawn: Any) -> Any:
        return int(drawn) if self.integer else float(drawn)

    def examples(self) -> tuple:
        return (self.lo, self.hi) if self.integer else (float(self.lo), float(self.hi))


Param = Choice | Range | Interval


def parse_param(text: str, where: str) -> Param:
    """The parameter written as `text` (the part after `key=` on the command line); `where` names it."""
    call = _CALL.match(text)
    if call and call.group(1) in FUNCTIONS:
        return _function(call.group(1), call.group(2), text, where)
    if call and not text.lstrip().startswith(("[", "{", "'", '"')):
        raise ConfigError(f"{where}: unknown function '{call.group(1)}' in {text!r}; use one of "
                          f"{', '.join(f + '(...)' for f in FUNCTIONS)} or comma-separated choices")
    return Choice(tuple(_yaml(item, where) for item in split_top_level(text)))


def parse_space(value: Any, path: str) -> dict[str, Param]:
    """`sweep.params` as written in YAML: {dotted key: list of choices, or a string as on the command line}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys to choices or ranges, got {value!r}")
    space = {}
    for key, spec in value.items():
        where = f"{path}.{key}"
        check_key(str(key), where)
        if isinstance(spec, list):
            param = Choice(tuple(spec))
        elif isinstance(spec, str):
            param = parse_param(spec, where)
        elif isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a list of choices or a string such as 'loguniform(1e-4, 1e-1)', "
                              f"got a mapping")
        else:
            param = Choice((spec,))
        if isinstance(param, Choice) and not param.values:
            raise ConfigError(f"{where}: the list of choices is empty")
        space[str(key)] = param
    return space


def dump_space(space: dict[str, Param]) -> dict[str, Any]:
    return {key: param.spec() for key, param in space.items()}


def check_key(key: str, where: str) -> None:
    """ConfigError unless `key` is a dotted config key a sweep may vary."""
    from mlpcli.config import apply_override

    if key == "sweep" or key.startswith("sweep."):
        raise ConfigError(f"{where}: the sweep's own settings cannot be swept")
    if key == "output" or key.startswith("output."):
        raise ConfigError(f"{where}: output keys name the run folders, which the sweep sets itself")
    apply_override({}, f"{key}=null")      # an unknown key or a section raises here


def is_swept(text: str) -> bool:
    """Whether the value of a `key=value` argument is a search space rather than one value."""
    call = _CALL.match(text)
    return bool(call and call.group(1) in FUNCTIONS) or len(split_top_level(text)) > 1


def split_top_level(text: str) -> list[str]:
    """`text` split at the commas outside brackets, braces and quotes: '[1,2],[3]' -> ['[1,2]', '[3]']."""
    items, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items]


def _function(name: str, args_text: str, text: str, where: str) -> Param:
    args = [_number(arg, name, text, where) for arg in split_top_level(args_text)] if args_text.strip() else []
    wanted = (2, 3) if name == "range" else (2,)
    if len(args) not in wanted:
        raise ConfigError(f"{where}: {name}() takes {' or '.join(map(str, wanted))} numbers, got {text!r}")
    lo, hi = args[0], args[1]
    if name == "range":
        step = args[2] if len(args) == 3 else 1
        if step <= 0:
            raise ConfigError(f"{where}: range() needs a positive step, got {text!r}")
        param = Range(lo, hi, step)
        if not param.count:
            raise ConfigError(f"{where}: {text!r} is empty (it stops below hi); raise hi")
        if param.count > MAX_VALUES:
            raise ConfigError(f"{where}: {text!r} has {param.count:,} values; at most {MAX_VALUES:,} (a larger step, "
                              "or uniform() or int() with the random or tpe method)")
        return param
    if name == "int":
        if not all(isinstance(v, int) for v in (lo, hi)):
            raise ConfigError(f"{where}: int() takes two integers, got {text!r}")
        if lo > hi:
            raise ConfigError(f"{where}: int(lo, hi) needs lo <= hi, got {text!r}")
        return Interval(lo, hi, integer=True)
    if not lo < hi:
        raise ConfigError(f"{where}: {name}(lo, hi) needs lo < hi, got {text!r}")
    if name == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: loguniform(lo, hi) needs 0 < lo, got {text!r}")
    return Interval(float(lo), float(hi), log=name == "loguniform")


def _number(arg: str, name: str, text: str, where: str) -> int | float:
    value = _yaml(arg, where)
    if isinstance(value, str):              # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(Decimal(value))
        except InvalidOperation:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise ConfigError(f"{where}: {name}() takes finite numbers, got {arg!r} in {text!r}")
    return value


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{where}: {text!r} is not a valid YAML value") from None
