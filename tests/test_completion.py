"""Shell completion through click's own machinery: commands, options, config keys and their values."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from mlpcli.cli import cli
from mlpcli.completion import config_fields
from tests.test_docs import keys
from mlpcli.config import Config


def complete(args: list[str], incomplete: str) -> list[tuple[str, str]]:
    items = ShellComplete(cli, {}, "mlp", "_MLP_COMPLETE").get_completions(args, incomplete)
    return [(item.type, item.value) for item in items]


def values(args, incomplete) -> list[str]:
    return [value for kind, value in complete(args, incomplete) if kind == "plain"]


def test_commands_and_options():
    assert values([], "c") == ["cache", "compare", "completion"]
    assert values(["data"], "") == ["download", "info"]
    assert "--csv" in values(["predict"], "--")
    assert values(["eval", "run", "--source"], "f") == ["faces", "fashion-mnist", "folder"]


def test_every_config_key_completes():
    assert list(config_fields()) == list(keys(Config))
    assert values(["train"], "optim.n") == ["optim.name=", "optim.nesterov="]
    assert len(values(["gradcheck"], "")) == len(config_fields())


@pytest.mark.parametrize("command", ["train", "gradcheck", "features"])
def test_values_of_keys_with_choices(command):
    assert values([command], "optim.name=") == [f"optim.name={name}" for name in ("adam", "momentum", "rmsprop", "sgd")]
    assert values([command], "data.flip=t") == ["data.flip=true"]
    assert values([command], "optim.lr=") == []                    # open-ended values
    assert values([command], "nothing.here=") == []


def test_bash_splits_key_and_value_at_the_equals_sign():
    assert values(["train", "loss.name"], "=") == ["hinge", "softmax"]       # click reads a lone "=" as ""
    assert values(["train", "loss.name", "="], "h") == ["hinge"]
    assert values(["train", "optim.lr=0.1", "data.mode", "="], "") == ["rgb", "gray"]


def test_a_config_file_first_then_only_keys():
    assert ("file", "conf") in complete(["train"], "conf")
    assert all(kind == "plain" for kind, _ in complete(["train", "my.yaml"], "optim.l"))
    assert values(["train", "my.yaml"], "optim.l") == ["optim.lr="]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_that_calls_mlp_back(shell):
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0 and "_MLP_COMPLETE" in result.output
    if shell == "bash":
        assert "compopt -o nospace" in result.output         # no space after a completed `key=`


def test_a_real_shell_round_trip():
    done = subprocess.run([sys.executable, "-m", "mlpcli"], capture_output=True,
                          text=True, timeout=60, env={"_MLP_COMPLETE": "bash_complete", "COMP_WORDS": "mlp train model.act",
                                                      "COMP_CWORD": "2", "PATH": ""})
    assert done.returncode == 0 and done.stdout.splitlines() == ["plain,model.activation=", "file,model.act"]
