"""coinflow_train: on each new dataset version, features → Optuna sweep → registry → smoke test.

Scheduled on the dataset Asset coinflow_fetch emits (its extra names the version and its md5);
a manual trigger trains the `data_version` Param instead. Thin TaskFlow wrappers over
`pipelines/` and `registry/`; heavy libraries are imported inside the tasks, so parsing stays
fast. Deployment settings come from env vars: COINFLOW_WORKDIR (the project root; default: the
folder above dags/), COINFLOW_OPTUNA_STORAGE (the study; a Postgres URL when workers run on
several hosts), MLFLOW_TRACKING_URI, COINFLOW_DAG_RETRIES (default 2).

Idempotent per content: the study is named after the sweep/train/feature params, the budget,
the data md5 and the tracking store (pipelines.sweep.study.default_study_name), so a re-run for the
same version md5 finds that study's finished sweep run and reuses it (no trial runs again; an
interrupted sweep resumes its budget instead); registering is once per best run id, and
promotion is skipped when that version is already champion or was already judged against the
current champion, so no alias moves.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from coinflow_common import (
    DATASET,
    START_DATE,
    TAGS,
    announced,
    default_args,
    param_defaults,
    stage_params,
    workdir,
)

log = logging.getLogger(__name__)

DAG_ID = "coinflow_train"
MAX_WORKERS = 8


def sweep_workers(n_trials: int, workers: int) -> list[int]:
    """Worker numbers of the mapped sweep tasks: never more workers than trials."""
    return list(range(max(1, min(workers, n_trials))))


def finished_sweep(experiment_id: str, study_name: str, md5: str) -> Any:
    """The FINISHED sweep parent run of this study on this data md5, or None."""
    import mlflow

    from core import tags

    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        f"tags.`{tags.KIND}` = 'sweep' and tags.`{tags.STUDY_NAME}` = '{study_name}' "
        f"and tags.`{tags.DVC_MD5}` = '{md5}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0] if runs else None


def _handle(job: dict[str, Any]) -> Any:
    """The sweep a worker job refers to; the storage URL comes from env, never from XCom."""
    from core.tracking import TrackingSettings
    from pipelines.sweep.study import SweepHandle

    return SweepHandle(
        job["study_name"], TrackingSettings().coinflow_optuna_storage, job["parent_run_id"]
    )


def _registry(data_version: str) -> tuple[Any, Any, Any]:
    """(registry, evaluation rows, promotion policy) for the registry tasks."""
    from core.paths import project
    from registry.policy import Policy
    from registry.scoring import load_eval_set
    from registry.store import open_registry

    params = stage_params(data_version).registry
    registry = open_registry(params.model_name)
    return registry, load_eval_set(project(workdir())), Policy.from_params(params)


_DEFAULTS = param_defaults(workdir())


@dag(
    dag_id=DAG_ID,
    schedule=[DATASET],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params={
        "data_version": Param(
            _DEFAULTS["data_version"],
            type="string",
            enum=_DEFAULTS["versions"],
            description="dataset version to train on (manual runs; an Asset event names its own)",
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
    tags=TAGS,
    doc_md=__doc__,
)
def coinflow_train() -> None:
    """Train, register and promote on one dataset version."""

    @task
    def dataset() -> dict[str, Any]:
        """The version to train: the triggering Asset event's, else the data_version Param."""
        ctx = get_current_context()
        event = announced(ctx["triggering_asset_events"].get(DATASET, []))
        if event is not None:
            log.info("triggered by dataset %s (md5 %s)", event["version"], event["md5"])
            return {"data_version": event["version"], "md5": event["md5"], "by": "asset"}
        version = str(ctx["params"]["data_version"])
        log.info("manual run: data_version Param %s", version)
        return {"data_version": version, "md5": None, "by": "param"}

    @task
    def features(chosen: dict[str, Any]) -> dict[str, str]:
        """Features of the version, refused unless the gate passed the content announced."""
        from airflow.sdk.exceptions import AirflowFailException

        from core.files import file_md5
        from core.paths import project
        from pipelines.training import features as stage

        proj = project(workdir())
        path = proj.version_file(chosen["data_version"])
        version, announced_md5 = chosen["data_version"], chosen["md5"]
        if announced_md5 and path.is_file() and file_md5(path) != announced_md5:
            raise AirflowFailException(
                f"{version} was announced with md5 {announced_md5} but {path} now has "
                f"{file_md5(path)}: its data changed since; run coinflow_fetch again"
            )
        md5 = stage.main(version=version, proj=proj)
        return {"data_version": version, "md5": md5, "features": str(proj.features)}

    @task
    def open_sweep(feats: dict[str, str]) -> list[dict[str, Any]]:
        """Create (or resume) the study of this content and its parent MLflow run, one job per
        worker; a single `reused` job when that study's sweep already finished."""
        from core.tracking import TrackingSettings, configure_mlflow, store_key
        from pipelines.sweep import study as sweep
        from pipelines.sweep.storage import check_parallel

        params_ = get_current_context()["params"]
        n_trials, workers = int(params_["n_trials"]), int(params_["workers"])
        params = stage_params(feats["data_version"])
        storage = TrackingSettings().coinflow_optuna_storage
        check_parallel(storage, workers)
        experiment = configure_mlflow()
        name = sweep.default_study_name(params, n_trials, feats["md5"], store_key())
        done = finished_sweep(experiment, name, feats["md5"])
        if done is not None:
            log.info(
                "%s on md5 %s: finished sweep run %s reused", name, feats["md5"], done.info.run_id
            )
            ref = {"study_name": name, "parent_run_id": done.info.run_id, "reused": True}
            return [{**ref, "data_version": feats["data_version"], "worker": 0}]
        handle = sweep.open_sweep(params, study_name=name, storage=storage, n_trials=n_trials)
        ref = {
            "study_name": handle.study_name,
            "parent_run_id": handle.parent_run_id,
            "data_version": feats["data_version"],
            "reused": False,
        }
        return [{**ref, "worker": i} for i in sweep_workers(n_trials, workers)]

    @task
    def run_trials(job: dict[str, Any]) -> int:
        """One sweep worker: claim and run trials until the study holds its budget."""
        if job["reused"]:
            log.info("sweep %s already finished: no trial to run", job["study_name"])
            return 0
        from core.tracking import configure_mlflow
        from pipelines.sweep import study as sweep

        params = stage_params(job["data_version"])
        configure_mlflow()
        return int(sweep.run_trials(_handle(job), params, worker=int(job["worker"])))

    @task
    def close_sweep(jobs: list[dict[str, Any]], done: list[int]) -> dict[str, Any]:
        """Log the best trial's pyfunc and end the parent run; returns the best run's reference."""
        import mlflow

        from core import tags
        from core.tracking import configure_mlflow
        from pipelines.sweep import study as sweep

        job = jobs[0]
        configure_mlflow()
        if job["reused"]:
            parent = mlflow.MlflowClient().get_run(job["parent_run_id"])
            best_run_id = parent.data.tags[tags.BEST_RUN_ID]
            n_complete = int(parent.data.metrics.get("n_complete", 0))
            log.info("sweep %s (reused): best run %s", job["study_name"], best_run_id)
        else:
            result = sweep.close_sweep(_handle(job), stage_params(job["data_version"]))
            ran = [done[i] for i in range(len(done))]  # indexing: iterating past the end logs 404
            log.info(
                "sweep %s: workers ran %s trials now; best run %s (objective %.5f), %d complete",
                job["study_name"],
                ran,
                result.best_run_id,
                result.best_value,
                result.n_complete,
            )
            best_run_id, n_complete = result.best_run_id, result.n_complete
        return {
            "parent_run_id": job["parent_run_id"],
            "best_run_id": best_run_id,
            "data_version": job["data_version"],
            "n_complete": n_complete,
            "reused": job["reused"],
        }

    @task
    def register(best: dict[str, Any]) -> dict[str, Any]:
        """Register the best run (once per run id) as challenger; seed a persistence champion."""
        from core.paths import project
        from registry.flow import register_candidate

        registry, eval_set, policy = _registry(best["data_version"])
        number, champion = register_candidate(
            registry, best["best_run_id"], eval_set, project(workdir()), policy
        )
        return {
            "model_name": registry.name,
            "version": number,
            "champion": champion,
            "data_version": best["data_version"],
        }

    @task
    def promote(registered: dict[str, Any]) -> dict[str, Any]:
        """Promote the challenger iff it beats the champion; a no-op when already decided."""
        from registry.flow import promote_candidate

        registry, eval_set, policy = _registry(registered["data_version"])
        summary = promote_candidate(registry, registered["version"], eval_set, policy)
        log.info("%s v%d: %s", registry.name, registered["version"], summary["reason"])
        return {**registered, **{k: summary[k] for k in ("promoted", "champion_after", "reason")}}

    @task
    def smoke_predict(decision: dict[str, Any]) -> dict[str, Any]:
        """Load models:/<name>@champion and forecast one day from its recent rows."""
        import math

        from registry.store import CHAMPION, get_version, load_packaged, open_registry

        registry = open_registry(decision["model_name"])
        version = int(get_version(registry, CHAMPION).version)
        py = load_packaged(registry, version)
        dates, closes = py.forecast(*py.recent_arrays(), 1)
        day, close = str(dates[0]), float(closes[0, py.median])
        if not (math.isfinite(close) and close > 0):
            raise ValueError(f"{registry.name} v{version} forecast a close of {close} for {day}")
        log.info(
            "%s@champion v%d (%s) forecasts %s: $%.2f", registry.name, version, py.kind, day, close
        )
        return {"model_uri": f"models:/{registry.name}/{version}", "date": day, "close": close}

    # At parse time each call returns an XComArg standing in for the value its task will return.
    chosen: Any = dataset()
    feats: Any = features(chosen)
    jobs: Any = open_sweep(feats)
    done: Any = run_trials.expand(job=jobs)  # dynamic task mapping: one task per worker
    best: Any = close_sweep(jobs, done)
    registered: Any = register(best)
    decision: Any = promote(registered)
    smoke_predict(decision)


coinflow_train_dag = coinflow_train()

if __name__ == "__main__":
    coinflow_train_dag.test()
