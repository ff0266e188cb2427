"""run_tune and the CLI with a fake measurer; Optuna, SQLite storage and MLflow are real."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pytest
from tuning_fakes import FakeBackend, runs_of, small_space

from mlperf_track import metrics as m
from mlperf_track.cli import main
from mlperf_track.errors import ConfigError, StorageError
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.spec import CaseSpec, TimingConfig
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.runner import run_tune
from mlperf_track.tuning.tracking import FOUND, NOT_FOUND, RESULT_TAG

FAKE = "tuning_fakes:make_fake_backend"


def _config(**kwargs: object) -> TuneConfig:
    values: dict[str, object] = {"device": "cpu", "n_trials": 10, "seed": 0, "storage": "none"}
    values.update(kwargs)
    return TuneConfig.create("fakenet", **values)


def _split(experiment: str) -> tuple[mlflow.entities.Run, list[mlflow.entities.Run]]:
    runs = runs_of(experiment)
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1
    return parents[0], children


def test_tune_logs_a_parent_with_the_best_feasible_configuration_and_one_nested_run_per_trial(tracking: str) -> None:
    backend = FakeBackend(small_space(), capacity_mb=1100.0, failing=frozenset({"baseline/onnxruntime/fp32"}))
    outcome = run_tune(_config(memory_limit_mb=700.0, n_trials=12), backend)
    parent, children = _split(tracking)
    assert backend.closed
    assert len(children) == 12 == len(outcome.study.trials)
    assert sorted(int(run.data.tags["trial.number"]) for run in children) == list(range(12))
    best = outcome.summary.best[0]
    assert best.user_attrs["metrics"][m.CPU_RSS_PEAK] <= 700.0
    assert parent.data.tags[RESULT_TAG] == FOUND
    assert parent.data.params["best.trial_number"] == str(best.number)
    assert parent.data.params["best.batch_size"] == str(best.user_attrs["batch_size"])
    assert parent.data.metrics[f"best/{m.CPU_RSS_PEAK}"] <= 700.0
    assert parent.data.params["study.memory_limit_mb"] == "700"
    assert parent.data.metrics["study/n_trials"] == 12
    for child in children:
        tags = child.data.tags
        assert tags["trial.state"] in ("COMPLETE", "PRUNED", "FAIL")
        assert m.TRIAL_WALL_S in child.data.metrics and m.TRIAL_MEASURE_S in child.data.metrics
        if tags["trial.state"] == "COMPLETE":
            assert child.info.status == "FINISHED"
            assert tags[m.TRIAL_OUTCOME_TAG] == "measured" and tags[m.TRIAL_FIDELITY_TAG] == "full"
            assert child.data.params["model"] == "fakenet"
            assert m.THROUGHPUT in child.data.metrics
            assert "constraint/memory" in child.data.metrics
        elif tags[m.TRIAL_OUTCOME_TAG] == "pruned":  # stopped after its short measurement: never a full result
            assert child.info.status == "FINISHED"
            assert tags[m.TRIAL_FIDELITY_TAG] == "short" and tags["trial.pruned_because"]
            assert m.THROUGHPUT not in child.data.metrics and m.SHORT_THROUGHPUT in child.data.metrics
        else:
            assert child.info.status == "FAILED"
            assert tags["trial.feasible"] == "false"
            assert tags["error.type"] in ("OutOfMemoryError", "ExportError")
            assert tags[m.TRIAL_OUTCOME_TAG] in ("out_of_memory", "failed")
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"trials.json", "search_space.json", "figures"} <= artifacts
    figures = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "figures")}
    assert {"figures/history_throughput.png", "figures/tradeoff_memory.png"} <= figures


def test_limit_below_every_configuration_ends_with_no_feasible_configuration(tracking: str) -> None:
    outcome = run_tune(_config(memory_limit_mb=100.0, n_trials=5), FakeBackend(small_space()))
    assert not outcome.summary.found
    assert outcome.summary.n_infeasible == 5
    parent, children = _split(tracking)
    assert parent.data.tags[RESULT_TAG] == NOT_FOUND
    assert parent.info.status == "FINISHED"
    assert {run.data.tags["trial.feasible"] for run in children} == {"false"}


def test_cli_exit_code_is_1_without_feasible_configuration_and_0_with_one(
    tracking: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["tune", "--model", "fakenet", "--device", "cpu", "--storage", "none", "--backend", FAKE]
    assert main([*base, "--n-trials", "3", "--memory-limit-mb", "50"]) == 1
    assert "no feasible configuration" in capsys.readouterr().out
    assert main([*base, "--n-trials", "3", "--batch-sizes", "1,2", "--memory-limit-mb", "8000"]) == 0
    assert "best feasible configuration" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--memory-limit-mb", "0"], "--memory-limit-mb"),
        (["--memory-limit-mb", "-1"], "--memory-limit-mb"),
        (["--objective", "speed"], "--objective"),
        (["--n-trials", "0"], "--n-trials"),
        (["--n-trials", "many"], "--n-trials"),
        (["--batch-sizes", "max:0"], "--batch-sizes"),
        (["--storage", "postgresql://tuner:secret@127.0.0.1:1/optuna"], "cannot open the Optuna storage"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(
    tracking: str, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code = main(["tune", "--model", "fakenet", "--device", "cpu", "--backend", FAKE, *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    errors = [line for line in err.strip().splitlines() if " WARNING " not in line]
    assert len(errors) == 1  # a password on the command line adds a warning about ps, not a second error line
    assert "secret" not in err


def test_unreachable_storage_is_a_storage_error_before_anything_is_measured(tracking: str) -> None:
    backend = FakeBackend(small_space())
    with pytest.raises(StorageError, match=r"tuner:\*\*\*@127\.0\.0\.1:1"):
        run_tune(_config(storage="postgresql://tuner:secret@127.0.0.1:1/optuna"), backend)
    assert backend.measured == []
    assert backend.closed


def test_sqlite_study_resumes_by_name_up_to_the_budget_and_refuses_another_space(tracking: str, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = run_tune(_config(storage=storage, study_name="resume-me", n_trials=4), FakeBackend(small_space()))
    assert first.trials_run == 4
    second = run_tune(_config(storage=storage, study_name="resume-me", n_trials=7), FakeBackend(small_space()))
    assert second.trials_run == 3
    assert [t.number for t in second.study.trials] == list(range(7))
    done = run_tune(_config(storage=storage, study_name="resume-me", n_trials=7), FakeBackend(small_space()))
    assert done.trials_run == 0
    with pytest.raises(ConfigError, match="space differ"):
        run_tune(_config(storage=storage, study_name="resume-me"), FakeBackend(small_space((1, 2))))
    with pytest.raises(ConfigError, match="optimises"):
        run_tune(_config(storage=storage, study_name="resume-me", objective="latency"), FakeBackend(small_space()))


def test_auto_storage_is_a_sqlite_file_in_the_working_directory(tracking: str, tmp_path: Path) -> None:
    run_tune(_config(storage="auto", n_trials=2), FakeBackend(small_space()))
    assert (tmp_path / "optuna.db").is_file()


def test_multi_objective_logs_the_pareto_front(tracking: str) -> None:
    outcome = run_tune(_config(objective="multi", n_trials=12, memory_limit_mb=900.0), FakeBackend(small_space()))
    parent, children = _split(tracking)
    front = outcome.summary.best
    assert front and outcome.summary.multi_objective
    assert parent.data.params["best.pareto_trials"] == ",".join(str(t.number) for t in front)
    assert parent.data.metrics["study/pareto_size"] == len(front)
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert "pareto_front.json" in artifacts
    figures = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "figures")}
    assert "figures/pareto_front.png" in figures
    assert len(children) == 12


def test_grid_sampler_measures_every_point_once(tracking: str) -> None:
    space = small_space((1, 4, 16))
    backend = FakeBackend(space)
    outcome = run_tune(_config(sampler="grid", n_trials=space.size, short_time_s=None), backend, track=False)
    assert len({case.name for case in backend.measured}) == space.size == len(backend.measured)
    assert outcome.summary.n_measured == space.size


class _InterruptedInsideAStoreRead(FakeBackend):
    """Ctrl-C landing inside a tracking-store read while the sampler prices the third trial's point: a SELECT on
    the store's own pooled SQLite connection, one row read of several, then the interrupt (as a signal raises it
    between two bytecodes)."""

    def is_prepared(self, case: CaseSpec) -> bool:
        if len(self.measured) == 2:
            from mlflow.tracking._tracking_service.utils import _get_store
            from sqlalchemy import text

            with _get_store().ManagedSessionMaker() as session:
                rows = session.execute(text("select run_uuid from runs"))
                rows.fetchone()
                raise KeyboardInterrupt
        return super().is_prepared(case)


def test_ctrl_c_inside_a_store_read_ends_the_study_run_killed(tracking: str, caplog: pytest.LogCaptureFixture) -> None:
    """The interrupted read's open cursor holds SQLite's SHARED lock while its frames live: kept, ending the runs
    KILLED failed with "database is locked" after MLflow's 20 s busy timeout."""
    caplog.set_level(logging.WARNING)
    with pytest.raises(KeyboardInterrupt):
        run_tune(_config(n_trials=6), _InterruptedInsideAStoreRead(small_space(), capacity_mb=1100.0))
    assert mlflow.active_run() is None
    parent, children = _split(tracking)
    assert parent.info.status == "KILLED"
    assert len(children) >= 2 and "RUNNING" not in {child.info.status for child in children}
    assert not [record.getMessage() for record in caplog.records if "database is locked" in record.getMessage()]


class _InterruptedInsideAStudyRead(FakeBackend):
    """Ctrl-C landing inside a read of the study's SQLite storage during the third trial (one row of several read)."""

    storage = ""

    def measure(self, case: CaseSpec, timing: TimingConfig | None = None) -> CaseOutcome:
        if len(self.measured) == 2:
            import sqlalchemy

            with sqlalchemy.create_engine(self.storage).connect() as connection:
                rows = connection.execute(sqlalchemy.text("select trial_id from trials"))
                rows.fetchone()
                raise KeyboardInterrupt
        return super().measure(case, timing)


def test_ctrl_c_inside_a_study_storage_read_ends_the_trial_and_the_study_run(tracking: str, tmp_path: Path) -> None:
    """Optuna ends the interrupted trial FAIL in the storage, the study's run ends KILLED and the interrupt, not a
    "database is locked" error, reaches the caller."""
    import optuna

    backend = _InterruptedInsideAStudyRead(small_space(), capacity_mb=1100.0)
    backend.storage = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(KeyboardInterrupt):
        run_tune(_config(n_trials=6, storage=backend.storage, study_name="interrupted"), backend)
    parent, _ = _split(tracking)
    assert parent.info.status == "KILLED"
    study = optuna.load_study(study_name="interrupted", storage=backend.storage)
    assert [trial.state.name for trial in study.trials][-1] == "FAIL"
