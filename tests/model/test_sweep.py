"""Optuna sweeps in a private MLflow store: parent/child runs, the winner's model, pruning,
divergence, and resuming after a worker is killed mid-study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]  # sweeps of real trials, spawned workers


def _runs(filter_string: str) -> list[Any]:
    import mlflow

    from pipelines.sweep.worker import experiment_id

    return list(mlflow.MlflowClient().search_runs([experiment_id()], filter_string))


def _study(name: str, url: str | None = None) -> Any:
    import optuna

    from core.tracking import TrackingSettings
    from pipelines.sweep.storage import open_storage

    return optuna.load_study(
        study_name=name, storage=open_storage(url or TrackingSettings().coinflow_optuna_storage)
    )


def test_sweep_parent_three_children_and_best_model(workspace: Path) -> None:
    import mlflow

    from core.params import load_params
    from core.tracking import configure_mlflow
    from pipelines.sweep.study import close_sweep, run_sweep

    configure_mlflow()
    params = load_params()
    result = run_sweep(params, plots_dir=workspace / "plots" / "sweep")

    (parent,) = _runs("tags.`coinflow.kind` = 'sweep'")
    assert parent.info.run_id == result.parent_run_id and parent.info.status == "FINISHED"
    assert parent.data.tags["coinflow.study_name"] == result.study_name
    assert result.study_name.startswith(f"{params.sweep.study_name}-")
    assert parent.data.tags["best_run_id"] == result.best_run_id
    assert {
        f"best_{k}": str(v) for k, v in result.best_params.items()
    }.items() <= parent.data.params.items()
    assert parent.data.params["n_trials"] == "3" and parent.data.params["data_version"] == "v0.3"
    assert parent.data.metrics["best_objective"] == pytest.approx(result.best_value)
    assert parent.data.tags["coinflow.dvc_md5"] and parent.data.tags["coinflow.ge_status"]
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/optimization_history.png", "plots/param_importances.png"}
    assert all((workspace / "plots" / "sweep" / Path(p).name).stat().st_size > 1000 for p in plots)

    children = _runs(f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    assert len(children) == 3
    assert sorted(int(r.data.tags["coinflow.trial_number"]) for r in children) == [0, 1, 2]
    for run in children:
        assert run.data.tags["coinflow.kind"] == "trial"
        assert run.data.tags["coinflow.optuna_state"] in ("COMPLETE", "PRUNED")
        assert run.data.tags["coinflow.study_name"] == result.study_name
        assert run.data.tags["coinflow.data_version"] == "v0.3"
        assert run.data.params["max_epochs"] == str(params.sweep.max_epochs)
        assert run.data.tags["coinflow.median"] == run.data.params["median"]
        assert run.data.params["median"] in ("persistence", "learned")  # the family searched
    assert result.n_complete + result.n_pruned + result.n_failed == 3
    values = [r.data.metrics["objective"] for r in children if r.info.status == "FINISHED"]
    assert result.best_value == pytest.approx(min(values))

    experiment = parent.info.experiment_id
    (model,) = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")
    assert (
        model.source_run_id
        == result.best_run_id
        == [r.info.run_id for r in children if r.data.tags.get("coinflow.model_uri")][0]
    )
    best = mlflow.get_run(result.best_run_id).data.metrics  # the winner's 7-day coverage
    assert all(0 <= best[f"test_coverage_80_d{h}"] <= 1 for h in range(1, 8))
    again = close_sweep(_handle(result), params)  # idempotent: no second model
    assert again.best_run_id == result.best_run_id and again.model_uri == result.model_uri
    assert len(mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")) == 1


def _handle(result: Any) -> Any:
    from core.tracking import TrackingSettings
    from pipelines.sweep.study import SweepHandle

    return SweepHandle(
        result.study_name, TrackingSettings().coinflow_optuna_storage, result.parent_run_id
    )


def test_diverging_trials_fail_and_the_sweep_says_so(workspace: Path) -> None:
    from core.params import load_params
    from core.tracking import configure_mlflow
    from pipelines.sweep.study import SweepError, run_sweep

    configure_mlflow()
    params = load_params()
    space = params.sweep.space.model_copy(update={"lr": (1e30, 1e30)})
    params = params.model_copy(
        update={"sweep": params.sweep.model_copy(update={"space": space, "n_trials": 2})}
    )
    with pytest.raises(SweepError, match="no trial completed"):
        run_sweep(params)
    children = _runs("tags.`coinflow.kind` = 'trial'")
    assert [r.info.status for r in children] == ["FAILED", "FAILED"]  # both ran: study went on
    (parent,) = _runs("tags.`coinflow.kind` = 'sweep'")
    assert parent.info.status == "FAILED"


def test_a_pruned_trial_is_a_killed_run_on_sqlite_storage(workspace: Path) -> None:
    """MLflow ends a pruned trial's run KILLED; the console and the tag say PRUNED."""
    import optuna

    from core.params import load_params
    from core.tracking import configure_mlflow
    from pipelines.sweep.storage import heartbeat
    from pipelines.sweep.study import open_sweep
    from pipelines.sweep.worker import claim_trial, run_trial
    from pipelines.training.train import load_training_data

    configure_mlflow()
    params, data = load_params(), load_training_data()
    url = f"sqlite:///{workspace / 'optuna.db'}"
    handle = open_sweep(params, data=data, storage=url)
    study = _study(handle.study_name, url)
    study.pruner = optuna.pruners.ThresholdPruner(upper=0.0)  # any loss > 0 is pruned
    trial = claim_trial(study, handle)
    with heartbeat(study._storage, trial):
        assert run_trial(study, trial, handle, params, data) == "PRUNED"
    (frozen,) = study.get_trials()
    assert frozen.state.name == "PRUNED" and list(frozen.intermediate_values) == [1]
    (child,) = _runs("tags.`coinflow.kind` = 'trial'")
    assert child.info.status == "KILLED" and child.data.tags["coinflow.optuna_state"] == "PRUNED"


def test_bad_search_space_is_refused_before_anything_runs(
    workspace: Path, mlflow_store: str
) -> None:
    from core.params import load_params
    from core.tracking import TrackingSettings
    from pipelines.sweep.study import SweepError, open_sweep

    params = load_params()
    for change, message in (
        ({"lookback": (5, 5000)}, "lookback upper bound 5000"),
        ({"hidden_size": (8, 4)}, r"hidden_size must be \[low, high\]"),
        ({"median": []}, "sweep.space.median lists no median"),
    ):
        space = params.sweep.space.model_copy(update=change)
        bad = params.model_copy(update={"sweep": params.sweep.model_copy(update={"space": space})})
        with pytest.raises(SweepError, match=message):
            open_sweep(bad)
    with pytest.raises(SweepError, match='study name "it\'s"'):
        open_sweep(params, study_name="it's")
    assert not Path(mlflow_store.removeprefix("sqlite:///")).exists()  # no MLflow call made
    assert not Path(TrackingSettings().coinflow_optuna_storage).exists()  # no study


def test_killed_worker_resumes_without_lost_or_repeated_trials(workspace: Path) -> None:
    from optuna.trial import TrialState

    from core.params import load_params
    from core.tracking import configure_mlflow
    from pipelines.sweep.study import run_sweep

    n_trials, name = 4, "resume-test"
    cmd = [
        sys.executable,
        "-m",
        "cli.main",
        "sweep",
        "--study-name",
        name,
        "--n-trials",
        str(n_trials),
    ]
    with open(workspace / "worker.log", "w") as log:
        worker = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline, study = time.monotonic() + 120, None
        while time.monotonic() < deadline:  # kill once trial 0 is done and another is running
            assert worker.poll() is None, (workspace / "worker.log").read_text()[-3000:]
            try:
                study = _study(name)
                states = [t.state for t in study.get_trials(deepcopy=False)]
            except KeyError:  # the study does not exist yet
                states = []
            if states[:1] == [TrialState.COMPLETE] and TrialState.RUNNING in states[1:]:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the worker never finished its first trial")
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    assert study is not None
    before = {t.number: t for t in _study(name).get_trials()}
    # One trial was running when the worker died (unless it ended in the ~ms before the kill).
    killed = [n for n, t in before.items() if t.state == TrialState.RUNNING]
    assert len(killed) <= 1 and before[0].state == TrialState.COMPLETE

    configure_mlflow()
    result = run_sweep(load_params(), study_name=name, n_trials=n_trials)
    after = _study(name).get_trials()
    assert [t.number for t in after] == list(range(n_trials))  # none lost, none extra
    assert after[0].value == before[0].value
    assert after[0].user_attrs["mlflow_run_id"] == before[0].user_attrs["mlflow_run_id"]
    for number in killed:  # marked FAIL on resume, and retried once with its params
        assert after[number].state == TrialState.FAIL
        retries = [t for t in after if t.system_attrs.get("failed_trial") == number]
        # the retry keeps every parameter the killed trial had sampled (a kill during sampling
        # leaves some unsampled: the retry draws those)
        assert len(retries) == 1 and retries[0].params.items() >= after[number].params.items()
    assert all(t.state.is_finished() for t in after)
    assert result.n_complete + result.n_pruned + result.n_failed == n_trials

    children = _runs(f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    numbers = [int(r.data.tags["coinflow.trial_number"]) for r in children]
    assert len(numbers) == len(set(numbers)) and set(numbers) >= set(range(n_trials)) - set(killed)
    for run in children:
        if int(run.data.tags["coinflow.trial_number"]) in killed:
            assert run.info.status == "FAILED"
            assert run.data.tags["coinflow.failure"] == "worker died"
        else:
            assert run.info.status in ("FINISHED", "KILLED")
    assert len(_runs("tags.`coinflow.kind` = 'sweep'")) == 1  # the resumed run reused the parent


def test_spawned_workers_share_the_journal_study(workspace: Path) -> None:
    from core.params import load_params
    from core.tracking import configure_mlflow
    from pipelines.sweep.study import SweepError, run_sweep

    configure_mlflow()
    params = load_params()
    with pytest.raises(SweepError, match="SQLite cannot serve parallel workers"):
        run_sweep(params, workers=2, storage=f"sqlite:///{workspace / 'optuna.db'}")
    result = run_sweep(params, workers=2, n_trials=5)  # a crashed worker raises SweepError
    trials = _study(result.study_name).get_trials()
    assert [t.number for t in trials] == list(range(5))
    assert all(t.state.is_finished() for t in trials)
    assert len(_runs(f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")) == 5


def test_plots_need_enough_complete_trials(tmp_path: Path) -> None:
    import optuna

    from pipelines.sweep.report import PLOTS, draw_plots

    study = optuna.create_study()
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.01},
            distributions={"lr": optuna.distributions.FloatDistribution(0, 1)},
            value=0.5,
        )
    )
    paths = draw_plots(study, tmp_path / "one")  # importance needs >= 2: a note, not a crash
    assert [p.name for p in paths] == list(PLOTS)
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    empty = draw_plots(optuna.create_study(), tmp_path / "none")
    assert all(p.stat().st_size > 0 for p in empty)


def test_default_study_name_follows_params_and_data(workspace: Path) -> None:
    from core.params import load_params
    from pipelines.sweep.study import default_study_name

    params = load_params()
    name = default_study_name(params, 3, "a" * 32)
    assert name == default_study_name(load_params(), 3, "a" * 32)  # stable across loads
    assert (
        name.startswith(f"{params.sweep.study_name}-")
        and len(name) == len(params.sweep.study_name) + 9
    )
    changed = params.model_copy(update={"sweep": params.sweep.model_copy(update={"seed": 1})})
    features = params.model_copy(
        update={"features": params.features.model_copy(update={"train_frac": 0.6})}
    )
    assert (
        len(
            {
                name,
                default_study_name(params, 4, "a" * 32),
                default_study_name(params, 3, "b" * 32),
                default_study_name(changed, 3, "a" * 32),
                default_study_name(features, 3, "a" * 32),
                default_study_name(params, 3, "a" * 32, store="1@1733000000000"),
            }
        )
        == 6
    )


def test_worker_liveness_is_judged_only_where_it_can_be() -> None:
    from core.liveness import process_alive as _worker_alive
    from core.liveness import process_identity as worker_identity

    me = worker_identity()
    assert _worker_alive(me)
    assert not _worker_alive({**me, "started": "1"})  # our pid, but another process's start
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not _worker_alive({**me, "pid": child.pid, "started": None})
    assert _worker_alive({**me, "host": "elsewhere/pid:[1]", "pid": child.pid})
