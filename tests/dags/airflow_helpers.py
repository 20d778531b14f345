"""Helpers for the Airflow tests: a tiny project workspace, an isolated Airflow env, dag.test()."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.dags.dagtest_runner import MARKER

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
AIRFLOW = Path(sys.executable).with_name("airflow")
RUNNER = Path(__file__).with_name("dagtest_runner.py")
TASKS = [
    "ingest",
    "version",
    "validate",
    "features",
    "open_sweep",
    "run_trials",
    "close_sweep",
    "register",
    "promote",
    "smoke_predict",
]
DOWNSTREAM_OF_GATE = TASKS[TASKS.index("features") :]


def tiny_params(n_trials: int = 2) -> dict[str, Any]:
    """The repo's params.yaml with a sweep that takes seconds (2 trials of 2 epochs, hidden 4-8)."""
    params: dict[str, Any] = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(hidden_size=8, num_layers=1, max_epochs=2, patience=2)
    params["sweep"].update(n_trials=n_trials, max_epochs=2, timeout_s=300)
    params["sweep"]["space"].update(
        hidden_size=[4, 8], num_layers=[1, 1], lookback=[5, 10], cell=["rnn", "gru"]
    )
    return params


def make_workspace(root: Path, n_trials: int = 2) -> Path:
    """A project root for the stages: tiny params.yaml + a copy of data/raw (`dvc pull`ed)."""
    raw = REPO / "data" / "raw"
    if not (raw / "btc.csv").is_file():
        raise FileNotFoundError("data/raw is empty: run `dvc pull` (make test does)")
    (root / "data").mkdir(parents=True)
    shutil.copytree(raw, root / "data" / "raw")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(n_trials), sort_keys=False))
    return root


def spike_btc_close(csv_path: Path, date: str = "03/15/2020", factor: float = 10.0) -> None:
    """Corrupt one BTC close (investing.com CSV) by `factor`: the GE gate must catch it."""
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(f'"{date}"'):
            cells = line.rstrip("\r\n").split('","')
            price = float(cells[1].replace(",", "")) * factor
            cells[1] = f"{price:,.1f}"
            lines[i] = '","'.join(cells) + "\n"
            break
    else:
        raise ValueError(f"no row dated {date} in {csv_path}")
    csv_path.write_text("".join(lines), encoding="utf-8")


def airflow_env(
    home: Path,
    workdir: Path,
    state: Path,
    *,
    sql_conn: str | None = None,
    optuna_storage: str | None = None,
) -> dict[str, str]:
    """Environment of an isolated Airflow (home, metadata DB) running the coinflow stages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COINFLOW_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_conn or f"sqlite:///{home / 'airflow.db'}",
            "COINFLOW_WORKDIR": str(workdir),
            "COINFLOW_DAG_RETRIES": "0",  # a broken task should fail the test now, not in 2 min
            "COINFLOW_PROGRESS": "0",
            "COINFLOW_OPTUNA_STORAGE": optuna_storage or str(state / "optuna" / "journal.log"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
            "MLFLOW_REGISTRY_URI": f"sqlite:///{state / 'mlflow.db'}",
            "COINFLOW_ARTIFACT_ROOT": str(state / "mlartifacts"),
            "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
            "DVC_NO_ANALYTICS": "1",
            "GIT_PYTHON_REFRESH": "quiet",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def migrate(env: dict[str, str], log: Path) -> None:
    """`airflow db migrate` for the env's metadata DB (SQLite: ~3 s)."""
    with log.open("a") as out:
        subprocess.run(
            [str(AIRFLOW), "db", "migrate"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=300,
        )


def run_dag_test(
    env: dict[str, str], conf: dict[str, Any], logical_date: str, log: Path
) -> dict[str, Any]:
    """dag.test() in a fresh process; returns {state, run_id, tasks: {task: state}, seconds}."""
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, str(RUNNER), json.dumps(conf), logical_date],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            cwd=env["COINFLOW_WORKDIR"],
        )
    text = log.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"dag.test exited {proc.returncode}; log {log}:\n{text[-4000:]}")
    return dict(json.loads(lines[-1].removeprefix(MARKER)))


def mlflow_client(state: Path) -> Any:
    """A client on the tests' MLflow store (tracking + registry)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{state / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def sweep_runs(client: Any) -> tuple[list[Any], dict[str, list[Any]]]:
    """Sweep parent runs, and the trial runs under each parent."""
    experiment = client.get_experiment_by_name("coinflow")
    parents = client.search_runs([experiment.experiment_id], "tags.`coinflow.kind` = 'sweep'")
    trials = {
        p.info.run_id: client.search_runs(
            [experiment.experiment_id],
            f"tags.`mlflow.parentRunId` = '{p.info.run_id}' and tags.`coinflow.kind` = 'trial'",
        )
        for p in parents
    }
    return parents, trials


def aliases(client: Any) -> dict[str, int]:
    """alias → version of the registered model named in the tiny params."""
    name = tiny_params()["registry"]["model_name"]
    return {a: int(v) for a, v in client.get_registered_model(name).aliases.items()}
