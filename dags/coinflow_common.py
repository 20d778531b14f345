"""What coinflow_fetch and coinflow_train share: the dataset Asset, the workdir, retries, params.

Not a DAG file (`.airflowignore` lists it): both DAG files import it from the DAG folder, which
Airflow's dag-processor and task runner put on `sys.path`. Cheap to import (pendulum, yaml and
airflow.sdk only), like the DAG files themselves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pendulum
import yaml
from airflow.sdk import Asset

log = logging.getLogger(__name__)

# The one dataset Asset: coinflow_fetch emits an event when it cut and validated a new version
# (extra: {"version": name, "md5": content hash}); coinflow_train is scheduled on it.
DATASET = Asset(name="coinflow_dataset", uri="x-coinflow://dataset/versions")
START_DATE = pendulum.datetime(2024, 11, 1, tz="UTC")
TAGS = ["coinflow", "mlops"]
# Where coinflow_fetch finds the exports: this Airflow Variable, else this env var (the name
# pipelines.data.fetch reads; not imported from there: DAG parsing stays light).
SOURCE_VARIABLE, SOURCE_ENV = "coinflow_data_source", "COINFLOW_DATA_SOURCE"


def workdir() -> Path:
    """Project root the stages run in: $COINFLOW_WORKDIR, else the folder above dags/ (the
    same root core.paths anchors every path at; no task depends on its cwd)."""
    return Path(os.environ.get("COINFLOW_WORKDIR") or Path(__file__).resolve().parents[1])


def default_args() -> dict[str, Any]:
    """Owner and retries of every task (COINFLOW_DAG_RETRIES, default 2, two minutes apart)."""
    return {
        "owner": "coinflow",
        "retries": int(os.environ.get("COINFLOW_DAG_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=2),
    }


def fetch_schedule() -> str | None:
    """When coinflow_fetch runs: $COINFLOW_FETCH_SCHEDULE (a cron or preset; `none`: only when
    triggered), default @daily."""
    value = os.environ.get("COINFLOW_FETCH_SCHEDULE", "@daily").strip()
    return None if value.lower() in ("", "none") else value


def data_source(variable: str | None) -> str:
    """Where coinflow_fetch reads the exports: the Airflow Variable SOURCE_VARIABLE (its value
    passed in), else $SOURCE_ENV; refused, naming both, when neither is set."""
    source = (variable or os.environ.get(SOURCE_ENV) or "").strip()
    if not source:
        raise ValueError(
            f"coinflow_fetch has no data source: set the Airflow Variable {SOURCE_VARIABLE!r} "
            f"(UI: Admin > Variables, or `airflow variables set {SOURCE_VARIABLE} DIR|URL`) or "
            f"the environment variable {SOURCE_ENV} of the Airflow workers to a directory or "
            "http(s) base URL holding btc.csv, eth.csv and gold.csv"
        )
    return source


def param_defaults(root: Path) -> dict[str, Any]:
    """Defaults of coinflow_train's Params, read cheaply (yaml only) from params.yaml."""
    path = root / "params.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: set COINFLOW_WORKDIR to the project root")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        "data_version": raw["data"]["version"],
        "versions": sorted(raw["data"]["versions"]),
        "n_trials": int(raw["sweep"]["n_trials"]),
    }


def dataset_extra(version: str, md5: str) -> dict[str, str]:
    """The extra of a dataset Asset event: which version was cut, and its content hash."""
    return {"version": version, "md5": md5}


def announced(events: Iterable[Any]) -> dict[str, str] | None:
    """The newest dataset announcement among triggering Asset events (several may queue up
    while a train run is busy; the newest version wins), or None on a manual trigger."""
    newest = max(events, key=lambda e: e.timestamp, default=None)
    if newest is None:
        return None
    extra = dict(newest.extra or {})
    if not (isinstance(extra.get("version"), str) and isinstance(extra.get("md5"), str)):
        raise ValueError(f"dataset event from {newest.source_dag_id} lacks version/md5: {extra}")
    return dataset_extra(extra["version"], extra["md5"])


def stage_params(data_version: str | None = None) -> Any:
    """params.yaml of the workdir, with data.version set to `data_version` when given."""
    from core.params import load_params
    from core.paths import project

    params = load_params(project(workdir()).params_file)
    if data_version is None:
        return params
    return params.model_copy(
        update={"data": params.data.model_copy(update={"version": data_version})}
    )


def ensure_raw(proj: Any) -> None:
    """`dvc pull` data/raw when any export is missing (a fresh checkout or container)."""
    import subprocess
    import sys

    from core.paths import ASSETS

    if all((proj.raw / f"{asset}.csv").is_file() for asset in ASSETS):
        return
    log.info("data/raw incomplete in %s: dvc pull data.dvc", proj.root)
    subprocess.run(
        [sys.executable, "-m", "dvc", "pull", "-q", "data.dvc"],
        check=True,
        cwd=proj.root,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
