"""MLflow finds or creates a row (an experiment, a dataset, a registered model) without a lock:
processes that do it at the same moment on a fresh store collide on the row's unique key, and
the loser gets an error. Each place coinflow creates such a row falls back to the winner's row;
each test here races two threads per round on a real store (the unfixed code fails in most
rounds) and shows neither fails and both end with the one row."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.model


def race(action: Callable[[Any], Any], before: Callable[[], Any] = lambda: None) -> list[Any]:
    """In two threads: `before()`, then both released together into `action(its result)`; the
    actions' results (an error in either fails the test)."""
    barrier, results, errors = threading.Barrier(2), [], []

    def run() -> None:
        ready = before()
        barrier.wait()
        try:
            results.append(action(ready))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    return results


@pytest.fixture
def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], str]:
    """fresh_store(i): point MLflow at a new SQLite store whose schema exists (so the only race
    left is the one a test makes) and no experiment but MLflow's Default: a copy of one store
    made once (MLflow's schema migrations take seconds per new file)."""
    import shutil

    import mlflow

    template = tmp_path / "template.db"
    mlflow.MlflowClient(f"sqlite:///{template}").search_experiments()

    def make(i: int) -> str:
        shutil.copyfile(template, tmp_path / f"mlflow-{i}.db")
        uri = f"sqlite:///{tmp_path / f'mlflow-{i}.db'}"
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            monkeypatch.setenv(name, uri)
        monkeypatch.setenv("COINFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
        # MLflow opens a store once per URI, under a lock: opened here, the threads' calls
        # then meet in the race itself rather than one waiting for the other's opening
        mlflow.MlflowClient(uri).search_experiments()
        return uri

    return make


def test_stages_setting_up_a_fresh_store_at_once_share_one_experiment(
    fresh_store: Callable[[int], str],
) -> None:
    """Two stages started together on a store with no coinflow experiment yet (`dvc queue start
    -j 2` on a fresh clone, parallel Airflow tasks) both find none and both create it."""
    import mlflow

    from core.tracking import configure_mlflow

    for round_ in range(6):
        uri = fresh_store(round_)
        ids = race(lambda _: configure_mlflow())
        assert len(set(ids)) == 1
        names = [e.name for e in mlflow.MlflowClient(uri).search_experiments()]
        assert names.count("coinflow") == 1


def test_runs_logging_one_new_dataset_at_once_all_link_it(workspace: Path) -> None:
    """Parallel sweep workers' first trials log the version's features table, new to the store,
    at the same moment: each run links the one dataset row (seen in CI as a failed mapped sweep
    task: a unique-key error from the MLflow server)."""
    import dataclasses

    import mlflow

    from core.paths import project
    from core.tracking import configure_mlflow
    from pipelines.training.tracked_run import log_dataset
    from pipelines.training.train import load_training_data

    configure_mlflow()
    data, proj = load_training_data(), project()

    def log_and_end(run: Any, new: Any) -> str:
        log_dataset(new, proj)  # in this thread's active run
        mlflow.end_run()
        return str(run.info.run_id)

    for round_ in range(8):
        new = dataclasses.replace(data, md5=f"{round_:02d}{data.md5[2:]}")
        run_ids = race(lambda run, new=new: log_and_end(run, new), before=mlflow.start_run)
        for run_id in run_ids:
            (linked,) = mlflow.get_run(run_id).inputs.dataset_inputs
            assert (linked.dataset.name, linked.dataset.digest) == ("btc-v0.3", new.md5)


def test_first_registrations_at_once_share_one_registered_model(
    fresh_store: Callable[[int], str],
) -> None:
    """Two first registrations on a store with no registered model (two `coinflow registry`
    commands, a DAG's register task beside a shell) both find none and both create it; the
    description is set once."""
    from registry.store import MODEL_DESCRIPTION, describe_model, open_registry

    for round_ in range(6):
        fresh_store(round_)
        registry = open_registry(f"race-{round_}")
        race(lambda _, registry=registry: describe_model(registry))
        model = registry.client.get_registered_model(registry.name)
        assert model.description == MODEL_DESCRIPTION
        assert len(registry.client.search_registered_models()) == 1
