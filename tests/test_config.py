from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.config import Config, dump_config, load_config
from mlpcli.errors import ConfigError
from mlpcli.features.pipeline import FeaturePipeline
from mlpcli.schema import from_dict

SHIPPED_CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_defaults_fill_every_section():
    cfg = load_config()
    assert cfg.data.source == "shapes"
    assert cfg.model.hidden == [100]
    assert cfg.output.name == "default"
    assert [spec.name for spec in cfg.features.extractors] == [spec.name for spec in load_config().features.extractors]


def test_yaml_file_and_dotted_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("optim: {lr: 0.5}\nmodel: {hidden: [8]}\n")
    cfg = load_config(path, ["optim.lr=0.05", "model.hidden=[256,128]", "loss.name=hinge"])
    assert cfg.optim.lr == 0.05
    assert cfg.model.hidden == [256, 128]
    assert cfg.loss.name == "hinge"
    assert cfg.output.name == "exp"


def test_yaml_reads_exponent_without_dot_as_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("reg: 1e-3\n")           # YAML 1.1 makes this a string
    assert load_config(path).reg == pytest.approx(1e-3)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(None, ["model.hidden=[7, 5]", "features.extractors=[{pixels: {gray: true}}]"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    again.output.name = cfg.output.name
    assert dump_config(again) == dump_config(cfg)


@pytest.mark.parametrize("override, message", [
    ("model.hiden=[3]", "unknown key 'model.hiden'; did you mean 'hidden'?"),
    ("optim.lrr=0.1", "unknown key 'optim.lrr'; did you mean 'lr'?"),
    ("model.hidden=abc", "model.hidden: expected a list of integers, got 'abc' (str)"),
    ("model.hidden=[0]", "model.hidden: 0 is out of range; it must be between 1 and 1000000"),
    ("train.epochs=2.5", "train.epochs: expected an integer, got 2.5 (float)"),
    ("optim.name=adm", "optim.name: 'adm' (str) is not one of adam, momentum, rmsprop, sgd; did you mean 'adam'?"),
    ("data.val_fraction=1.5", "data.val_fraction: 1.5 is out of range; it must be between 0.01 and 0.9"),
    ("features.extractors=[{hgo: {}}]", "unknown extractor 'features.extractors[0].hgo'"),
    ("data.size=[32]", "data.size: expected 2 values, got 1 ([32])"),
    ("optim.lr", "override 'optim.lr' is not of the form key.path=value"),
    ("seed.x=1", "'seed' is a value, not a section"),
    ("model.norm=batchnorm", "model.norm: 'batchnorm' (str) is not one of none, batch, layer; did you mean 'batch'?"),
    ("model.norm_eps=0", "model.norm_eps: must be positive, got 0.0"),
    ("model.norm_momentum=1.5", "model.norm_momentum: 1.5 is out of range; it must be between 0.0 and 1.0"),
    ("output.name=/elsewhere/x", "output.name: '/elsewhere/x' is not a run name: give a word of at most 200 bytes"),
    ("output.name=a/../b", "output.name: 'a/../b' is not a run name"),
    ("output.name=" + "n" * 201, "is not a run name"),
])
def test_bad_values_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  hidden: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: malformed YAML at line \d+"):
        load_config(path)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        load_config("nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match="model: expected a mapping of keys, got 5"):
        from_dict(Config, {"model": 5})


def test_booleans_are_not_numbers():
    with pytest.raises(ConfigError, match="reg: expected a number, got True"):
        from_dict(Config, {"reg": True})


def test_configs_are_shipped():
    assert {path.stem for path in SHIPPED_CONFIGS} >= {"cifar10_pixels", "cifar10_pixels_quick", "cifar10_hog_color",
                                                       "cifar10_hog_color_quick", "cifar10_bow",
                                                       "cifar10_bow_hog_color", "mnist"}


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda path: path.name)
def test_shipped_config_is_valid(path):
    cfg = load_config(path)
    assert cfg.output.name == path.stem
    assert FeaturePipeline(cfg.features, cfg.model.dtype).extractors   # every extractor's options checked


def test_flatten_names_every_leaf_by_its_dotted_path():
    from mlpcli.schema import flatten

    data = {"seed": 1, "model": {"hidden": [256, 128], "dropout": None},
            "features": {"extractors": [{"hog": {"orientations": 9}}, {"pixels": {}}]}}
    assert flatten(data) == {"seed": 1, "model.hidden": [256, 128], "model.dropout": None,
                             "features.extractors[0].hog.orientations": 9, "features.extractors[1].pixels": {}}


rates = st.floats(0.0, 1.0, exclude_max=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 50), max_size=5), st.data())
def test_dropout_is_one_rate_or_one_per_hidden_layer(hidden, data):
    rate = data.draw(rates)
    one_for_all = load_config(None, [f"model.hidden={hidden}", f"model.dropout={rate!r}"]).model
    assert one_for_all.dropout == rate and one_for_all.dropout_rates == [rate] * len(hidden)
    per_layer = data.draw(st.lists(rates, min_size=len(hidden), max_size=len(hidden)))
    cfg = from_dict(Config, {"model": {"hidden": hidden, "dropout": per_layer}})
    assert cfg.model.dropout == per_layer and cfg.model.dropout_rates == per_layer
    assert load_config(None, [f"model.hidden={hidden}", f"model.dropout={per_layer}"]).model.dropout == per_layer
    count = data.draw(st.integers(0, 6).filter(lambda count: count != len(hidden)))
    wrong = data.draw(st.lists(rates, min_size=count, max_size=count))
    message = rf"model.dropout: .* has {len(wrong)} rates? for the {len(hidden)} hidden layers"
    with pytest.raises(ConfigError, match=message):
        from_dict(Config, {"model": {"hidden": hidden, "dropout": wrong}})


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.floats().filter(lambda x: not 0 <= x < 1), st.text(), st.booleans(), st.none(),
                 st.dictionaries(st.text(), st.integers(), max_size=2)), st.booleans())
def test_anything_but_a_rate_in_0_1_is_refused_as_dropout(value, in_list):
    given_value, where = ([0.5, value], r"model.dropout\[1\]") if in_list else (value, "model.dropout")
    try:                                   # a string YAML would read as a number is that number
        if 0 <= float(value) < 1:
            return
    except (TypeError, ValueError):
        pass
    with pytest.raises(ConfigError, match=rf"^{where}: .* is not a dropout rate; give a number at least 0 and below 1"):
        from_dict(Config, {"model": {"hidden": [4, 4], "dropout": given_value}})


def test_dropout_defaults_to_off_and_round_trips(tmp_path):
    assert load_config().model.dropout == 0.0
    cfg = load_config(None, ["model.hidden=[8, 4]", "model.dropout=[0.5, 0.25]", "model.norm=batch"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert again.model.dropout == [0.5, 0.25] and again.model.norm == "batch"
    assert load_config(None, ["model.dropout=5e-1"]).model.dropout == 0.5
