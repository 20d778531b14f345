"""Two `coinflow sweep` processes share one Optuna study on a real Postgres database and log
through one `mlflow server` as deployed (Postgres backend store, proxied artifacts): one parent
MLflow run, exactly n_trials trials with unique numbers, work done by both, the best model's
files stored by the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import StartServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
N_TRIALS = 8


@pytest.fixture
def tracking_server(
    mlflow_db: str, mlflow_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """MLFLOW_TRACKING_URI (and the registry's) pointing at a fresh server on Postgres."""
    url = mlflow_server(mlflow_db, tmp_path / "artifacts")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(name, url)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return url


@pytest.fixture
def project(
    tmp_path: Path,
    features_v03: Path,
    real_versions: Path,
    tracking_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A project root with v0.3 features and a small, quick search space."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "features").symlink_to(features_v03)
    (root / "data" / "versions").symlink_to(real_versions)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(batch_size=512, patience=3)
    params["sweep"].update(
        n_trials=N_TRIALS,
        max_epochs=3,
        space={
            "hidden_size": [4, 12],
            "num_layers": [1, 2],
            "lr": [0.001, 0.01],
            "lookback": [5, 20],
            "cell": ["rnn", "lstm", "gru"],
            "median": ["persistence", "learned"],
        },
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.setenv("COINFLOW_WORKDIR", str(root))
    monkeypatch.chdir(root)
    monkeypatch.setenv("COINFLOW_PROGRESS", "0")
    return root


def test_two_processes_share_a_postgres_study(
    project: Path, fresh_pg_db: str, tracking_server: str, tmp_path: Path
) -> None:
    import mlflow
    import optuna
    from optuna.trial import TrialState

    from core.tracking import configure_mlflow
    from pipelines.sweep.worker import experiment_id

    configure_mlflow()  # create the MLflow store once, before two processes write to it
    cmd = [
        sys.executable,
        "-m",
        "cli.main",
        "sweep",
        "--storage",
        fresh_pg_db,
        "--study-name",
        "pg-shared",
    ]
    logs = [project / f"worker{i}.log" for i in range(2)]
    procs = [
        subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=os.environ.copy())
        for log in logs
    ]
    try:
        for proc, log in zip(procs, logs, strict=True):
            assert proc.wait(timeout=480) == 0, log.read_text()[-3000:]
    finally:
        for proc in procs:  # a failed wait leaves none running against a dropped database
            proc.kill()
            proc.wait()

    trials = optuna.load_study(study_name="pg-shared", storage=fresh_pg_db).get_trials()
    assert [t.number for t in trials] == list(range(N_TRIALS))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    workers = {t.user_attrs["coinflow_worker"]["pid"] for t in trials}
    assert workers == {p.pid for p in procs}  # both processes ran trials
    # ... and sampled different points (the joining process salts its TPE seed)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == N_TRIALS

    client = mlflow.MlflowClient()
    assert client.tracking_uri == tracking_server
    (parent,) = client.search_runs([experiment_id()], "tags.`coinflow.kind` = 'sweep'")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["coinflow.optuna_storage"] == "postgresql"
    children = client.search_runs(
        [experiment_id()], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    numbers = sorted(int(r.data.tags["coinflow.trial_number"]) for r in children)
    assert numbers == list(range(N_TRIALS))
    models = mlflow.search_logged_models(experiment_ids=[experiment_id()], output_format="list")
    assert [m.source_run_id for m in models] == [parent.data.tags["best_run_id"]]
    # logged through the server's artifact proxy into its artifacts destination
    assert models[0].artifact_location.startswith("mlflow-artifacts:/")
    stored = tmp_path / "artifacts" / models[0].artifact_location.removeprefix("mlflow-artifacts:/")
    assert (stored / "MLmodel").is_file()
