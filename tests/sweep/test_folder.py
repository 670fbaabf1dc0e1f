from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpcli.errors import MlpError
from mlpcli.sweep.folder import SweepDir
from mlpcli.sweep.page import write_sweep_report
from mlpcli.sweep.spec import load_spec

RECORD = {"trial": "003-seed1", "config": 3, "seed": 1, "params": {"optim.lr": 0.1}, "status": "completed",
          "epochs": 4, "best_val_acc": 0.5, "best_val_loss": 1.1, "test_acc": None, "seconds": 0.4,
          "worker": "tcp://127.0.0.1:4000", "run": "runs/003-seed1", "error": None}
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=6)


@pytest.fixture
def sweep(tmp_path) -> SweepDir:
    return SweepDir.create(load_spec(None, ["optim.lr=0.1,0.2"]), tmp_path / "s")


def test_records_round_trip(sweep):
    sweep.write_trials({RECORD["trial"]: RECORD})
    assert sweep.read_trials() == {RECORD["trial"]: RECORD}
    assert SweepDir.existing(sweep.path).load_spec().sweep.params == load_spec(None, ["optim.lr=0.1,0.2"]).sweep.params


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(RECORD)), value=json_values)
def test_a_damaged_record_is_refused_naming_its_line(sweep, field, value):
    record = {**RECORD, field: value}
    sweep.trials.write_text(json.dumps(RECORD).replace("003", "004") + "\n" + json.dumps(record) + "\n")
    try:
        records = sweep.read_trials()
    except MlpError as err:
        assert str(err).startswith(f"{sweep.trials}, line 2: not a trial record (")
        assert "\n" not in str(err)
        return
    assert records["004-seed1"]["trial"] == "004-seed1"
    assert records[record["trial"]][field] == value


@pytest.mark.parametrize("line", ["{", "[]", '{"trial": "../../etc-seed1"}', "null", "[" * 100_000 + "]" * 100_000])
def test_garbage_lines(sweep, line):
    sweep.trials.write_text(line + "\n")
    with pytest.raises(MlpError, match="line 1"):
        sweep.read_trials()


@pytest.mark.parametrize("params", [{}, {"reg": 0.1}, {"optim.lr": 0.1, "reg": 0.1}])
def test_a_record_without_the_swept_keys_is_refused_by_resume_and_report(sweep, params):
    sweep.trials.write_text(json.dumps(RECORD) + "\n" + json.dumps({**RECORD, "params": params}) + "\n")
    message = r"line 2: not a trial record \(\"params\" has .*, not the swept keys \['optim.lr'\]\)"
    with pytest.raises(MlpError, match=message):
        sweep.read_trials()
    with pytest.raises(MlpError, match=message):
        write_sweep_report(sweep.path, progress=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.binary(min_size=1, max_size=40))
def test_any_bytes_appended_are_a_record_or_an_error_naming_their_line(sweep, line):
    sweep.trials.write_bytes(json.dumps(RECORD).encode() + b"\n" + line)
    try:
        records = sweep.read_trials()
    except MlpError as err:
        assert str(err).startswith(f"{sweep.trials}, line ") and "\n" not in str(err)
        return
    assert records[RECORD["trial"]] == RECORD


def test_a_used_out_folder_is_refused(sweep):
    with pytest.raises(MlpError, match=f"continue it with `mlp sweep --resume {sweep.path}`"):
        SweepDir.create(load_spec(None, ["optim.lr=0.1,0.2"]), sweep.path)


def test_a_trial_folder_is_read_as_hostile_input_by_the_worker(tmp_path):
    from mlpcli.rundir import RunDir
    from mlpcli.sweep.trial import metric_at, progress
    from tests.test_runs import write_run

    run = RunDir(write_run(tmp_path, "000-seed0", name="t", started="2026-01-02T10:00:00+00:00", features=["hog"],
                           model="x", val_acc=0.5, test_acc=0.4, epochs=3))
    assert progress(run) == {"epochs": 3, "best_val_acc": 0.5, "best_val_loss": 1.0, "test_acc": 0.4}
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    rows[1].update(val_acc=True, val_loss=float("nan"))                 # not values mlp train writes
    rows[2].update(val_acc=7, val_loss="low")
    run.metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run.summary.write_text("[" * 100_000 + "]" * 100_000)                # nested too deeply for json
    assert progress(run) == {"epochs": 3, "best_val_acc": 0.5, "best_val_loss": 1.0, "test_acc": None}
    assert metric_at(run, "val_acc", 3) == 0.5 and metric_at(run, "val_loss", 1) == 1.0
