"""Helpers for the Airflow tests: tiny workspaces and export sources, an isolated Airflow env,
dag.test() of coinflow_fetch / coinflow_train in a fresh process."""

from __future__ import annotations

import datetime as dt
import json
import os
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
ASSETS = ("btc", "eth", "gold")
FETCH_TASKS = ["fetch", "has_new_day", "cut_version", "validate", "monitor_score", "announce"]
AFTER_SHORT_CIRCUIT = FETCH_TASKS[FETCH_TASKS.index("cut_version") :]
TRAIN_TASKS = [
    "dataset",
    "features",
    "open_sweep",
    "run_trials",
    "close_sweep",
    "register",
    "promote",
    "smoke_predict",
]
# A workspace made with `until=UNTIL` holds the real exports up to that day (v0.3's cut-off
# there); the full exports add October 2024, so coinflow_fetch cuts v0.4 up to NEW_CUTOFF.
UNTIL, NEW_CUTOFF, NEW_VERSION = dt.date(2024, 9, 30), dt.date(2024, 10, 31), "v0.4"


def tiny_params(n_trials: int = 2, newest_cutoff: dt.date | None = None) -> dict[str, Any]:
    """The repo's params.yaml with a sweep that takes seconds (2 epochs, hidden 4-8); the
    newest version's cut-off moved to `newest_cutoff` when given."""
    params: dict[str, Any] = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(hidden_size=8, num_layers=1, max_epochs=2, patience=2)
    params["sweep"].update(n_trials=n_trials, max_epochs=2, timeout_s=300)
    params["sweep"]["space"].update(
        hidden_size=[4, 8], num_layers=[1, 1], lookback=[5, 10], cell=["rnn", "gru"]
    )
    if newest_cutoff is not None:
        versions = params["data"]["versions"]
        versions[max(versions, key=lambda v: str(versions[v]))] = newest_cutoff.isoformat()
    return params


def write_exports(dest: Path, until: dt.date | None = None) -> Path:
    """The real investing.com exports (data/raw) in `dest`, without the days after `until`."""
    raw = REPO / "data" / "raw"
    if not (raw / "btc.csv").is_file():
        raise FileNotFoundError("data/raw is empty: run `dvc pull` (make test does)")
    dest.mkdir(parents=True, exist_ok=True)
    for asset in ASSETS:
        lines = (raw / f"{asset}.csv").read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [
            line
            for line in lines[1:]
            if until is None or dt.datetime.strptime(line[1:11], "%m/%d/%Y").date() <= until
        ]
        (dest / f"{asset}.csv").write_text(lines[0] + "".join(kept), encoding="utf-8")
    return dest


def make_workspace(
    root: Path, n_trials: int = 2, until: dt.date | None = None, *, newest_only: bool = False
) -> Path:
    """A project root for the stages: tiny params.yaml + the real exports (up to `until`, which
    then is the newest version's cut-off). `newest_only` lists only the newest version (the one
    data.version names): fewer version files for a cut to write and the gate to validate."""
    write_exports(root / "data" / "raw", until)
    params = tiny_params(n_trials, newest_cutoff=until)
    if newest_only:
        version = params["data"]["version"]
        params["data"]["versions"] = {version: params["data"]["versions"][version]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
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
    data_source: Path | None = None,
) -> dict[str, str]:
    """Environment of an isolated Airflow (home, metadata DB) running the coinflow stages,
    fetching exports from `data_source` (a directory)."""
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
    if data_source is not None:
        env["COINFLOW_DATA_SOURCE"] = str(data_source)
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
    env: dict[str, str], dag_id: str, conf: dict[str, Any], logical_date: str, log: Path
) -> dict[str, Any]:
    """dag.test() of one DAG in a fresh process; returns {state, run_id, tasks: {task: state},
    returns: {task: XCom return value}, seconds}."""
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, str(RUNNER), dag_id, json.dumps(conf), logical_date],
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


def version_md5(workdir: Path, version: str) -> str:
    """Content hash of a dataset version file in a workspace (what DVC records)."""
    from core.files import file_md5

    return file_md5(workdir / "data" / "versions" / f"{version}.parquet")


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
