"""coinflow_daily: raw data → versions → GE gate → features → Optuna sweep → registry → smoke test.

Thin TaskFlow wrappers over `pipelines/` and `registry/`. Heavy libraries are imported inside
the tasks, so parsing this file stays fast. Deployment settings come from env vars:
COINFLOW_WORKDIR (project root the stages run in; default: the folder above dags/),
COINFLOW_OPTUNA_STORAGE (the study; a Postgres URL when workers run on several hosts),
MLFLOW_TRACKING_URI, COINFLOW_DAG_RETRIES (default 2).

Idempotent per run: the study is named after the run's logical date (its run id when it has
none), so a re-run resumes the same budget instead of adding trials; a run registers once per
best run id; promotion is skipped when that version is already champion or was already judged
against the current champion.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import pendulum
import yaml
from airflow.sdk import Param, dag, get_current_context, task

log = logging.getLogger(__name__)

DAG_ID = "coinflow_daily"
MAX_WORKERS = 8


def workdir() -> Path:
    """Project root the stages run in: $COINFLOW_WORKDIR, else the folder above dags/ (the
    same root pipelines.paths anchors every path at; no task depends on its cwd)."""
    return Path(os.environ.get("COINFLOW_WORKDIR") or Path(__file__).resolve().parents[1])


def _param_defaults(root: Path) -> dict[str, Any]:
    """Defaults of the run Params, read cheaply (yaml only) from the project's params.yaml."""
    path = root / "params.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: set COINFLOW_WORKDIR to the project root")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        "data_version": raw["data"]["version"],
        "versions": sorted(raw["data"]["versions"]),
        "n_trials": int(raw["sweep"]["n_trials"]),
    }


def sweep_workers(n_trials: int, workers: int) -> list[int]:
    """Worker numbers of the mapped sweep tasks: never more workers than trials."""
    return list(range(max(1, min(workers, n_trials))))


def run_key(logical_date: Any, run_id: str) -> str:
    """What makes a run's sweep unique: its logical date, else (no logical date) its run id."""
    text = logical_date.strftime("%Y%m%dT%H%M%S") if logical_date is not None else run_id
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def _run_params() -> dict[str, Any]:
    """This run's Params plus its sweep key (from the task context)."""
    ctx = get_current_context()
    params = dict(ctx["params"])
    params["key"] = run_key(ctx.get("logical_date"), ctx["dag_run"].run_id)
    return params


def _stage_params(data_version: str) -> Any:
    """params.yaml of the workdir with this run's data version."""
    from pipelines.config import load_params

    params = load_params()
    return params.model_copy(
        update={"data": params.data.model_copy(update={"version": data_version})}
    )


def _handle(job: dict[str, Any]) -> Any:
    """The sweep a worker job refers to; the storage URL comes from env, never from XCom."""
    from pipelines.sweep import SweepHandle
    from pipelines.tracking import TrackingSettings

    return SweepHandle(
        job["study_name"], TrackingSettings().coinflow_optuna_storage, job["parent_run_id"]
    )


def _registry(data_version: str) -> tuple[Any, Any, Any]:
    """(params, registry, evaluation rows) for the registry tasks."""
    from pipelines.paths import project
    from registry.scoring import load_eval_set
    from registry.store import open_registry

    params = _stage_params(data_version)
    return params, open_registry(params.registry.model_name), load_eval_set(project(workdir()))


_DEFAULTS = _param_defaults(workdir())


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    start_date=pendulum.datetime(2024, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "coinflow",
        "retries": int(os.environ.get("COINFLOW_DAG_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=2),
    },
    params={
        "data_version": Param(
            _DEFAULTS["data_version"],
            type="string",
            enum=_DEFAULTS["versions"],
            description="dataset version to train on",
        ),
        "n_trials": Param(
            _DEFAULTS["n_trials"],
            type="integer",
            minimum=1,
            maximum=500,
            description="Optuna trials in this run's sweep (all workers together)",
        ),
        "workers": Param(
            2,
            type="integer",
            minimum=1,
            maximum=MAX_WORKERS,
            description="parallel sweep worker tasks sharing the study",
        ),
    },
    tags=["coinflow", "mlops"],
    doc_md=__doc__,
)
def coinflow_daily() -> None:
    """The daily coinflow pipeline."""

    @task
    def ingest() -> str:
        """`dvc pull` data/raw when missing, then parse the CSVs into data/interim."""
        import subprocess
        import sys

        from pipelines import ingest as stage
        from pipelines.paths import ASSETS, project

        proj = project(workdir())
        if not all((proj.raw / f"{asset}.csv").is_file() for asset in ASSETS):
            subprocess.run(
                [sys.executable, "-m", "dvc", "pull", "-q", "data.dvc"],
                check=True,
                cwd=proj.root,
                env={**os.environ, "DVC_NO_ANALYTICS": "1"},
            )
        stage.main(proj)
        return str(proj.interim)

    @task
    def version(interim: str) -> str:
        """Cut the dataset versions named in params.yaml."""
        from pipelines import version as stage
        from pipelines.config import load_params
        from pipelines.paths import project

        proj = project(workdir())
        for name in load_params(proj.params_file).data.versions:
            stage.main(name, proj)
        return str(proj.versions)

    @task(retries=0)
    def validate(versions: str) -> dict[str, str]:
        """The Great Expectations gate: a failed expectation fails this task, with no retry."""
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines import validate as stage
        from pipelines.paths import project

        data_version = _run_params()["data_version"]
        proj = project(workdir())
        try:
            stage.main(proj)
        except (stage.DataValidationError, stage.VersionFileError) as err:
            raise AirflowFailException(str(err)) from err
        return {"data_version": data_version, "report": str(proj.validation_docs(data_version))}

    @task
    def features(gate: dict[str, str]) -> dict[str, str]:
        """Features of the run's data version, refused unless the gate passed that content."""
        from pipelines import features as stage
        from pipelines.paths import project

        proj = project(workdir())
        md5 = stage.main(version=gate["data_version"], proj=proj)
        return {"data_version": gate["data_version"], "md5": md5, "features": str(proj.features)}

    @task
    def open_sweep(feats: dict[str, str]) -> list[dict[str, Any]]:
        """Create (or reopen) this run's study and parent MLflow run; one job per worker."""
        from pipelines import sweep
        from pipelines.sweep_storage import check_parallel
        from pipelines.tracking import TrackingSettings, configure_mlflow, store_key

        run = _run_params()
        params = _stage_params(feats["data_version"])
        storage = TrackingSettings().coinflow_optuna_storage
        check_parallel(storage, run["workers"])
        configure_mlflow()
        name = sweep.default_study_name(params, run["n_trials"], feats["md5"], store_key())
        handle = sweep.open_sweep(
            params, study_name=f"{name}-{run['key']}", storage=storage, n_trials=run["n_trials"]
        )
        ref = {
            "study_name": handle.study_name,
            "parent_run_id": handle.parent_run_id,
            "data_version": feats["data_version"],
        }
        return [{**ref, "worker": i} for i in sweep_workers(run["n_trials"], run["workers"])]

    @task
    def run_trials(job: dict[str, Any]) -> int:
        """One sweep worker: claim and run trials until the study holds its budget."""
        from pipelines import sweep
        from pipelines.tracking import configure_mlflow

        params = _stage_params(job["data_version"])
        configure_mlflow()
        return int(sweep.run_trials(_handle(job), params, worker=int(job["worker"])))

    @task
    def close_sweep(jobs: list[dict[str, Any]], done: list[int]) -> dict[str, Any]:
        """Log the best trial's pyfunc and end the parent run; returns the best run's reference."""
        from pipelines import sweep
        from pipelines.tracking import configure_mlflow

        job = jobs[0]
        params = _stage_params(job["data_version"])
        configure_mlflow()
        result = sweep.close_sweep(_handle(job), params)
        ran = [done[i] for i in range(len(done))]  # indexing: iterating past the end logs a 404
        log.info(
            "sweep %s: workers ran %s trials now; best run %s (objective %.5f), %d complete",
            job["study_name"],
            ran,
            result.best_run_id,
            result.best_value,
            result.n_complete,
        )
        return {
            "parent_run_id": result.parent_run_id,
            "best_run_id": result.best_run_id,
            "data_version": job["data_version"],
            "n_complete": result.n_complete,
        }

    @task
    def register(best: dict[str, Any]) -> dict[str, Any]:
        """Register the best run (once per run id) as challenger; seed a persistence champion."""
        from pipelines.paths import project
        from registry.flow import register_candidate
        from registry.policy import Policy

        params, reg, ev = _registry(best["data_version"])
        policy = Policy.from_params(params.registry)
        number, champion = register_candidate(
            reg, best["best_run_id"], ev, project(workdir()), policy
        )
        return {
            "model_name": reg.name,
            "version": number,
            "champion": champion,
            "data_version": best["data_version"],
        }

    @task
    def promote(registered: dict[str, Any]) -> dict[str, Any]:
        """Promote the challenger iff it beats the champion; a no-op when already decided."""
        from registry.flow import promote_candidate
        from registry.policy import Policy

        params, reg, ev = _registry(registered["data_version"])
        policy = Policy.from_params(params.registry)
        summary = promote_candidate(reg, registered["version"], ev, policy)
        log.info("%s v%d: %s", reg.name, registered["version"], summary["reason"])
        return {**registered, **{k: summary[k] for k in ("promoted", "champion_after", "reason")}}

    @task
    def smoke_predict(decision: dict[str, Any]) -> dict[str, Any]:
        """Load models:/<name>@champion and forecast one day from its recent rows."""
        import math

        from registry.store import CHAMPION, get_version, load_python_model, open_registry

        reg = open_registry(decision["model_name"])
        version = int(get_version(reg, CHAMPION).version)
        py = load_python_model(reg, version)
        dates, closes = py.forecast(*py.recent_arrays(), 1)
        day, close = str(dates[0]), float(closes[0, py.median])
        if not (math.isfinite(close) and close > 0):
            raise ValueError(f"{reg.name} v{version} forecast a close of {close} for {day}")
        log.info("%s@champion v%d (%s) forecasts %s: $%.2f", reg.name, version, py.kind, day, close)
        return {"model_uri": f"models:/{reg.name}/{version}", "date": day, "close": close}

    # At parse time each call returns an XComArg standing in for the value its task will return.
    interim: Any = ingest()
    versions: Any = version(interim)
    gate: Any = validate(versions)
    feats: Any = features(gate)
    jobs: Any = open_sweep(feats)
    done: Any = run_trials.expand(job=jobs)  # dynamic task mapping: one task per worker
    best: Any = close_sweep(jobs, done)
    registered: Any = register(best)
    decision: Any = promote(registered)
    smoke_predict(decision)


coinflow_daily_dag = coinflow_daily()

if __name__ == "__main__":
    coinflow_daily_dag.test()
