from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.config import load_config
from mlpcli.errors import ConfigError
from mlpcli.sweep.space import Choice, Interval, Range, dump_space, is_swept, parse_param, parse_space, split_top_level
from mlpcli.sweep.spec import load_spec, plan

# values a user writes as choices: numbers, words, lists of numbers (model.hidden), null, booleans
scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True), st.booleans(), st.none())
values = st.one_of(scalars, st.lists(st.integers(1, 4096), max_size=4))


def flow(value) -> str:
    """A value as a user would type it on the command line (YAML flow style)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


@settings(max_examples=150, deadline=None)
@given(st.lists(values, min_size=2, max_size=5))
def test_comma_separated_choices_read_back_each_yaml_value(choices):
    text = ",".join(flow(v) for v in choices)
    assert is_swept(text)
    param = parse_param(text, "key")
    assert isinstance(param, Choice)
    assert list(param.values) == [yaml.safe_load(flow(v)) for v in choices]


def test_brackets_and_quotes_keep_their_commas():
    assert split_top_level("[256],[512,256]") == ["[256]", "[512,256]"]
    assert split_top_level("'a,b',{x: [1, 2]}") == ["'a,b'", "{x: [1, 2]}"]
    assert parse_param("[256],[512,256]", "model.hidden").values == ([256], [512, 256])
    assert not is_swept("[512,256]")            # one list value: an override, not a search space


@settings(max_examples=100, deadline=None)
@given(st.integers(-50, 50), st.integers(-50, 80), st.integers(1, 9))
def test_integer_range_is_pythons_range(lo, hi, step):
    if not list(range(lo, hi, step)):
        with pytest.raises(ConfigError, match="is empty"):
            parse_param(f"range({lo},{hi},{step})", "k")
        return
    assert parse_param(f"range({lo},{hi},{step})", "k").values == tuple(range(lo, hi, step))


def test_float_range_has_exact_decimal_steps():
    assert parse_param("range(0.1,0.5,0.1)", "k").values == (0.1, 0.2, 0.3, 0.4)
    assert parse_param("range(1e-3, 4e-3, 1e-3)", "k").values == (0.001, 0.002, 0.003)


@pytest.mark.parametrize("text, expected", [
    ("uniform(0, 0.5)", Interval(0.0, 0.5)),
    ("loguniform(1e-4,1e-1)", Interval(1e-4, 0.1, log=True)),
    ("int(64, 512)", Interval(64, 512, integer=True)),
    ("range(8, 65, 8)", Range(8, 65, 8)),
])
def test_functions(text, expected):
    assert parse_param(text, "k") == expected


@pytest.mark.parametrize("text, message", [
    ("loguniform(0,1)", "needs 0 < lo"),
    ("uniform(1,1)", "needs lo < hi"),
    ("int(1.5,3)", "takes two integers"),
    ("int(5,1)", "needs lo <= hi"),
    ("range(1,5,0)", "positive step"),
    ("uniform(1)", "takes 2 numbers"),
    ("uniform(.nan,1)", "finite numbers"),
    ("normal(0,1)", "unknown function 'normal'"),
    ("[1,2", "not a valid YAML value"),
])
def test_bad_spaces_are_one_line_errors_naming_the_key(text, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_param(text, "optim.lr")
    assert str(err.value).startswith("optim.lr: ") and "\n" not in str(err.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_raises_config_error(text):
    try:
        parse_param(text, "k")
    except ConfigError:
        pass


def test_yaml_section_round_trips():
    raw = {"optim.lr": "loguniform(0.0001, 0.1)", "model.hidden": [[256], [512, 256]], "reg": "0.1,0.2",
           "train.batch_size": "range(32, 257, 32)", "loss.name": "hinge"}
    space = parse_space(raw, "sweep.params")
    assert space["reg"].values == (0.1, 0.2) and space["loss.name"].values == ("hinge",)
    assert parse_space(dump_space(space), "sweep.params") == space


@pytest.mark.parametrize("raw, message", [
    ({"optim.lrr": [1]}, "unknown key 'optim.lrr'; did you mean 'lr'?"),
    ({"sweep.seeds": [1, 2]}, "cannot be swept"),
    ({"output.dir": ["a", "b"]}, "output keys"),
    ({"reg": []}, "empty"),
    ({"reg": {"a": 1}}, "got a mapping"),
])
def test_bad_sections(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"sweep.params={flow(raw)}"])


def test_command_line_spaces_join_the_config_section(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text("sweep: {params: {reg: [0.001, 0.01]}, seeds: 2}\ntrain: {epochs: 3}\n")
    spec = load_spec(path, ["optim.lr=0.01,0.1", "model.hidden=[8,4]", "train.epochs=2"], {"method": None})
    assert list(spec.sweep.params) == ["reg", "optim.lr"]
    assert spec.model.hidden == [8, 4] and spec.train.epochs == 2 and spec.sweep.seeds == 2
    assert len(plan(spec)) == 4


@pytest.mark.parametrize("args, settings_, message", [
    (["optim.lr=0.1,-1"], {}, r"sweep.params.optim.lr=\[0.1, -1\]: the value -1 is invalid: optim.lr: -1.0 is out of range"),
    (["model.hidden=[8],[0]"], {}, "model.hidden: 0 is out of range"),
    (["optim.lr=uniform(-1,1)"], {"method": "random"}, "the value -1.0 is invalid"),
    (["optim.lr=loguniform(0.01,1)"], {}, "grid needs choices"),
    (["optim.lr=0.1,1"], {"trials": 3}, "sweep.trials=3 is for the random and tpe methods"),
    (["seed=1,2"], {"seeds": 2}, "choose one way to vary the seed"),
    (["train.epochs=2,4"], {"prune": "halving"}, "do not sweep train.epochs"),
    ([], {}, "nothing to sweep"),
    (["optim={name: adam},1"], {}, "optim: expected a mapping of keys, got 1"),
    (["optim.nme=adam,sgd"], {}, "unknown key 'optim.nme'"),
    (["train.epochs=range(1,10000000000,1)"], {}, r"has 9,999,999,999 values; at most 1,000"),
    (["optim.lr=range(0.01,0.1,0.0001)", "reg=range(0.0001,0.01,0.0001)"], {}, r"89,100 configurations x 1 seed"),
    (["optim.lr=uniform(0.01,0.1)"], {"method": "random", "trials": 10**9}, r"= 1,000,000,000 trials; at most 10,000"),
    (["optim.lr=0.1,0.2"], {"seeds": 5001}, r"2 configurations x 5,001 seed\(s\) = 10,002 trials"),
    (["features.extractors=[hog],[{bow: {eps_norm: 0}}]"], {}, "bow.eps_norm: must be positive"),
    (["features.extractors=[{bow: {words: 64, patches: 32}}],[hog]"], {}, "bow.patches: 32 patches cannot make 64"),
    (["features.extractors=[{color_hist: {space: rgb, bins: 200}}],[hog]"], {}, "color_hist.bins: 200 bins"),
])
def test_every_trial_is_validated_before_anything_runs(args, settings_, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(None, args, settings_)


@pytest.mark.parametrize("args, settings_, warned", [
    (["optim.lr=0.01,0.1"], {"prune": "halving"}, True),                             # the default step schedule
    (["optim.lr=0.01,0.1", "optim.schedule=cosine"], {"prune": "halving"}, True),
    (["optim.lr=0.01,0.1", "optim.schedule=constant,cosine"], {"prune": "halving"}, True),
    (["optim.lr=0.01,0.1", "optim.schedule=constant"], {"prune": "halving"}, False),
    (["reg=0.001,0.01"], {"prune": "halving"}, False),
    (["optim.lr=0.01,0.1"], {}, False),
])
def test_halving_over_learning_rates_under_a_decaying_schedule_warns(args, settings_, warned, recwarn):
    load_spec(None, args, settings_)
    messages = [str(w.message) for w in recwarn if "successive halving ranks" in str(w.message)]
    assert len(messages) == int(warned)
