"""What the scikit-learn estimators (mlpcli.estimators) stand on, with or without scikit-learn installed.

With scikit-learn, the estimators derive from its BaseEstimator and mixins (clone, Pipeline, GridSearchCV,
check_estimator, tags, the HTML repr); without it, from small stand-ins with the same core API
(get_params, set_params, repr, score, fit_transform), so scikit-learn stays an optional dependency.

An estimator's parameters come from the config schema: `with_parameters` gives a class a keyword-only
__init__ that stores them (scikit-learn's rule: no validation before fit), a signature for get_params and
help(), and a Parameters section in its docstring built from the config fields' help and choices.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpcli.arrays import InputError
from mlpcli.errors import MlpError
from mlpcli.schema import choices_of, unknown_key_message

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
    from sklearn.exceptions import NotFittedError as _NotFitted
except ImportError:  # the stand-ins at the end of this module
    BaseEstimator = ClassifierMixin = TransformerMixin = None

    class _NotFitted(ValueError, AttributeError):
        """As scikit-learn's NotFittedError."""


class NotFittedError(MlpError, _NotFitted):
    """An estimator used before `fit` (scikit-learn's NotFittedError when it is installed)."""


def check_fitted(estimator, attribute: str) -> None:
    """NotFittedError unless `estimator` has `attribute`, which its fit sets."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
                             "appropriate arguments before using this estimator.")


@dataclass(frozen=True)
class Parameter:
    """One estimator parameter, as `with_parameters` documents it."""

    default: Any        # immutable: a tuple stands for a list
    help: str           # one line
    choices: list | None = None


def config_parameter(cls: type, key: str) -> Parameter:
    """The Parameter of config field `key` (dotted, e.g. "model.hidden") of dataclass `cls`: its default
    (lists as tuples), help and choices."""
    *sections, name = key.split(".")
    defaults = cls()
    for section in sections:
        defaults = getattr(defaults, section)
    field = {f.name: f for f in dataclasses.fields(defaults)}[name]
    default = getattr(defaults, name)
    return Parameter(tuple(default) if isinstance(default, list) else default, field.metadata["help"],
                     choices_of(field))


def with_parameters(cls: type, parameters: dict[str, Parameter], mirrors: dict[str, str] | None = None) -> type:
    """Give estimator class `cls` the keyword-only `parameters`, documented with what they `mirror`
    ({parameter: "config key model.hidden"}); returns `cls`."""
    def __init__(self, **given) -> None:
        for name in given:
            if name not in parameters:
                what = f"{type(self).__name__} parameter"
                raise InputError(unknown_key_message(name, name, list(parameters), what))
        for name, parameter in parameters.items():
            setattr(self, name, given.get(name, parameter.default))

    keyword = inspect.Parameter.KEYWORD_ONLY
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, keyword, default=p.default) for name, p in parameters.items()])
    __init__.__qualname__ = f"{cls.__name__}.__init__"
    cls.__init__ = __init__
    lines = ["", "    Parameters (keyword-only)", "    -------------------------"]
    for name, p in parameters.items():
        kind = "{" + ", ".join(map(repr, p.choices)) + "}, " if p.choices else ""
        mirror = f" ({mirrors[name]})" if mirrors and name in mirrors else ""
        lines += [f"    {name} : {kind}default={p.default!r}", f"        {p.help}{mirror}"]
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + "\n".join(lines) + "\n"
    return cls


def renamed_error(err: MlpError, names: dict[str, str]) -> InputError:
    """`err` as an InputError naming the estimator parameter instead of the config key ({key: parameter})
    its message starts with."""
    message = str(err)
    for key, parameter in names.items():
        after = message[len(key):len(key) + 1]
        if message.startswith(key) and not (after.isalnum() or after == "_"):
            message = parameter + message[len(key):]
            break
    return InputError(message)


def resolve_seed(random_state) -> int:
    """The seed (mlpcli.seeding) of scikit-learn's `random_state`: None draws fresh entropy from the operating
    system, an int is the seed itself (random_state=s trains as a run with seed=s), a numpy Generator or
    RandomState gives a draw from it (so repeated fits differ, as in scikit-learn)."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise InputError(f"random_state: {random_state} is negative; give a seed of 0 or more")
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2 ** 63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2 ** 31))
    raise InputError(f"random_state: {random_state!r} is not None, an int, a numpy Generator or a RandomState")


if BaseEstimator is None:
    class BaseEstimator:
        """Stand-in for scikit-learn's BaseEstimator: parameters from the __init__ signature."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            """{parameter: value}."""
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params) -> BaseEstimator:
            """Set parameters by name; returns the estimator."""
            valid = self._get_param_names()
            for name, value in params.items():
                if name not in valid:
                    raise InputError(f"Invalid parameter {name!r} for estimator {self!r}. Valid parameters are: "
                                     f"{valid!r}.")
                setattr(self, name, value)
            return self

        def __repr__(self) -> str:
            defaults = inspect.signature(type(self).__init__).parameters
            changed = [f"{name}={value!r}" for name, value in sorted(self.get_params().items())
                       if repr(value) != repr(defaults[name].default)]
            return f"{type(self).__name__}({', '.join(changed)})"

    class ClassifierMixin:
        """Stand-in for scikit-learn's ClassifierMixin."""

        def score(self, X, y, sample_weight=None) -> float:
            """Mean accuracy of predict(X) against labels y (N,), optionally weighted (N,)."""
            return float(np.average(self.predict(X) == np.asarray(y), weights=sample_weight))

    class TransformerMixin:
        """Stand-in for scikit-learn's TransformerMixin."""

        def fit_transform(self, X, y=None, **fit_params):
            """fit(X, y), then transform(X)."""
            return self.fit(X, y, **fit_params).transform(X)
