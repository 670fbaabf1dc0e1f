"""Configs, overrides and command lines as hostile input (issue 10): each is a valid config or exactly one
line naming the problem, with no traceback, in bounded time and memory; what must be refused is refused."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mlpcli.cli import cli, single_line
from mlpcli.config import Config, load_config
from mlpcli.errors import ConfigError, quote
from mlpcli.schema import from_dict
from tests.helpers import traced_peak
from tests.hostile import billion_laughs, config_keys, hostile_config_files, hostile_overrides, override

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEMORY = 64 << 20      # bytes any config input may make mlp allocate while reading it
FLOAT_KEYS = sorted(key for key, value in config_keys().items() if value.kind is float)


def refused(load) -> str | None:
    """Run `load()` with memory traced: None if it gave a Config, else its one-line ConfigError message."""
    errors = []

    def attempt():
        try:
            load()
        except ConfigError as err:
            errors.append(str(err))

    peak = traced_peak(attempt)
    assert peak < MEMORY, f"{peak:,} bytes"
    for message in errors:
        assert "\n" not in message and len(message) < 1000, message
    return errors[0] if errors else None


def one_error_line(result) -> str:
    """The single `Error: ...` line of a failed CliRunner invocation (no traceback, nothing else on stderr)."""
    assert result.exit_code not in (0, None) and not isinstance(result.exception, AssertionError), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@FAST
@given(hostile_overrides())
def test_hostile_overrides_give_a_config_or_one_line(hostile):
    message = refused(lambda: load_config(None, list(hostile.overrides)))
    if hostile.invalid:
        assert message is not None, f"accepted {hostile.what}: {hostile.overrides}"


@FAST
@given(hostile_config_files())
def test_hostile_config_files_give_a_config_or_one_line(tmp_path_factory, hostile):
    path = tmp_path_factory.getbasetemp() / "hostile.yaml"
    path.write_bytes(hostile.config)
    message = refused(lambda: load_config(path))
    if hostile.invalid:
        assert message is not None, f"accepted {hostile.what}"


@settings(max_examples=60, deadline=None)
@given(hostile_overrides())
def test_hostile_overrides_on_the_command_line(hostile):
    result = CliRunner().invoke(cli, ["train", "--print-config", *hostile.overrides])
    if result.exit_code == 0:
        assert not hostile.invalid, f"accepted {hostile.what}: {hostile.overrides}"
        assert from_dict(Config, yaml.safe_load(result.stdout))
    else:
        assert one_error_line(result)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "1e400"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_no_float_key_takes_nan_or_infinity(key, value):
    message = refused(lambda: load_config(None, [override(key, value)]))
    assert message is not None and key.rsplit(".", 1)[-1] in message
    assert "is not a finite number" in message or "is not a dropout rate" in message


def test_a_float_beyond_float_range_is_refused_where_yaml_cannot_stop_it():
    with pytest.raises(ConfigError, match=r"reg: <an integer of about 401 digits> is too large for a number"):
        from_dict(Config, {"reg": 10 ** 400})


@pytest.mark.parametrize("args, message", [
    (["train", "-q", "optim.beta1=.nan"], "Error: optim.beta1: nan is not a finite number"),
    (["train", "-q", "data.val_fraction=.nan"], "Error: data.val_fraction: nan is not a finite number"),
    (["gradcheck", "reg=.nan"], "Error: reg: nan is not a finite number"),
    (["train", "-q", "reg=1" + "0" * 400], "refused: an integer of 401 characters (at most 64)"),
    (["train", "-q", "reg=1" + "0" * 5000], "refused: an integer of 5,001 characters (at most 64)"),
    (["train", "-q", "model.hidden=" + "[" * 3000 + "]" * 3000], "refused: nested deeper than 32 levels"),
    (["train", "-q", 'output.name="a\\0b"'], "output.name: 'a\\x00b' holds a control character"),
    (["train", "-q", 'output.dir="\\ud800"'], "output.dir: '\\ud800' holds a control character or a lone surrogate"),
    (["train", "-q", 'cache_dir="x\\0"'], "cache_dir: 'x\\x00' holds a control character"),
    (["train", "-q", "optim.name=adam", "optim.beta1=1"], "optim.beta1: 1.0 is out of range; it must be at least "
                                                          "0.0 and below 1.0"),
    (["train", "-q", "optim.beta2=1"], "optim.beta2: 1.0 is out of range"),
    (["train", "-q", "optim.rho=1"], "optim.rho: 1.0 is out of range"),
    (["train", "-q", "optim.eps=0"], "optim.eps: 0.0 is out of range; it must be above 0.0"),
    (["train", "-q", "optim.momentum=1"], "optim.momentum: 1.0 is out of range"),
    (["train", "-q", "optim.decay=0"], "optim.decay: 0.0 is out of range"),
    (["train", "-q", f"data.shapes.per_class={10 ** 9}"], "data.shapes.per_class: 1000000000 is out of range"),
    (["train", "-q", f"model.hidden=[{10 ** 30}]"], "model.hidden: 1000000000000000000000000000000 is out of range"),
    (["train", "-q", f"train.threads={10 ** 30}"], "train.threads: 1000000000000000000000000000000 is out of range"),
    (["train", "-q", "data.size=[100000,100000]"], "data.size: 100000 is out of range"),
    (["train", "-q", f"model.maxout_pieces={10 ** 7}"], "model.maxout_pieces: 10000000 is out of range"),
    (["train", "-q", f"features.extractors=[{{bow: {{words: {10 ** 9}}}}}]"],
     "features.extractors[0].bow.words: 1000000000 is out of range"),
    (["gradcheck", "model.activation=maxout", "model.maxout_pieces=1000000"], "model.maxout_pieces: 1000000 is out"),
    (["data", "download", "mnist", "--mirror", "not a url"], "Error: mirror 'not a url' is not a URL"),
])
def test_inputs_that_broke_mlp_are_one_line_errors(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(CliRunner().invoke(cli, args))
    assert message in line
    assert list(tmp_path.iterdir()) == []            # nothing written


def test_billion_laughs_is_refused_at_once_in_little_memory(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(f"model:\n  hidden: {billion_laughs()}\n")
    assert path.stat().st_size < 1024
    started = time.perf_counter()
    message = refused(lambda: load_config(path))
    assert message == f"{path}: refused: more than 100,000 values once its aliases are expanded"
    assert time.perf_counter() - started < 2


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("model:\n  hidden: &h [1, *h]\n")
    assert "once its aliases are expanded (does an alias contain itself?)" in refused(lambda: load_config(path))


def test_aliases_within_the_bounds_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("model:\n  hidden: &sizes [16, 8]\noutput:\n  name: &n exp\ndata:\n  path: *n\n")
    cfg = load_config(path)
    assert cfg.model.hidden == [16, 8] and cfg.data.path == "exp"


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([f.name for f in dataclasses.fields(Config)]), min_size=1, max_size=6, unique=True),
       st.data())
def test_a_key_given_twice_in_one_mapping_is_refused_naming_both_lines(tmp_path, keys, data):
    twice = data.draw(st.sampled_from(keys))
    lines = [f"{key}: {{}}" for key in keys]
    at = data.draw(st.integers(keys.index(twice) + 1, len(keys)))
    lines.insert(at, f"{twice}: {{}}")
    path = tmp_path / "twice.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert refused(lambda: load_config(path)) == (
        f"{path}: malformed YAML at line {at + 1}, column 1: the key '{twice}' is given twice "
        f"(first at line {keys.index(twice) + 1})")


def test_a_merge_key_still_fills_in_what_the_mapping_does_not_set(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("train: {<<: {epochs: 3, patience: 2}, epochs: 5}\n")
    cfg = load_config(path)
    assert (cfg.train.epochs, cfg.train.patience) == (5, 2)


def test_a_config_file_over_a_mebibyte_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (2 << 20))
    assert refused(lambda: load_config(path)) == f"{path}: larger than 1024 KiB; a config file is a few kilobytes of YAML"


def test_values_in_messages_are_cut_short():
    long = "x" * 100_000
    for raw in ({"output": {"name": 5, long: 1}}, {"model": {"activation": long}}, {long: 1},
                {"model": {"hidden": list(range(10_000))}}, {"data": {"size": [[[[[[1]]]]], 2]}}):
        with pytest.raises(ConfigError) as err:
            from_dict(Config, raw)
        assert len(str(err.value)) < 400, str(err.value)[:500]
    assert quote(10 ** 5000) == "<an integer of about 5,001 digits>"


@pytest.mark.parametrize("args", [["train", "--bogus"], ["--bogus"], ["nosuch"], ["gradcheck", "--batch", "0"], ["gradcheck", "--threshold", "nan"],
                                  ["gradcheck", "--input-dim", "100000000"], ["train", "--resume", "/nonexistent"],
                                  ["eval"], ["data", "download", "imagenet"], ["predict", "x.npz"]])
def test_usage_errors_are_one_line(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.endswith("--help'.") and "Usage:" not in result.output


def test_a_bare_group_still_shows_its_help():
    result = CliRunner().invoke(cli, ["data"])
    assert "Usage: " in result.output and "download" in result.output


def test_single_line_joins_lines_and_cuts():
    assert single_line("a\n  b\r\nc\n") == "a b c"
    assert len(single_line("x" * 5000)) == 1001


def test_gradcheck_that_would_take_hours_is_refused_with_a_hint():
    line = one_error_line(CliRunner().invoke(cli, ["gradcheck", "model.hidden=[2000,2000]"]))
    assert "pass --samples N" in line


def _broken_folder(root):
    for name in ("red", "blue"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (12, 12), name).save(root / name / f"{i}.png")
    (root / "red" / "junk.png").write_bytes(b"not a png")
    return root


def test_warnings_are_one_line_without_source(tmp_path):
    folder = _broken_folder(tmp_path / "set")
    args = ["features", "data.source=folder", f"data.path={folder}", "data.on_error=skip", "cache_dir=null",
            "features.extractors=[pixels]", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Warning: skipped 1 unreadable image(s)"), lines
    process = subprocess.run([sys.executable, "-m", "mlpcli", *args], capture_output=True, text=True, cwd=tmp_path)
    assert process.returncode == 0 and process.stderr == result.stderr


@settings(max_examples=3, deadline=None)
@given(st.sampled_from([["train", "reg=1" + "0" * 5000], ["train", "model.hidden=" + "[" * 3000],
                        ["gradcheck", "model.activation=maxout", "model.maxout_pieces=1000000"],
                        ["train", "--bogus"], ["data", "download", "mnist", "--mirror", "not a url"]]))
def test_real_processes_print_one_line(args):
    process = subprocess.run([sys.executable, "-m", "mlpcli", *args], capture_output=True, text=True, timeout=60)
    assert process.returncode in (1, 2)
    assert len(process.stderr.splitlines()) == 1 and process.stderr.startswith("Error: "), process.stderr
