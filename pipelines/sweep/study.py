"""Optuna sweep: a parent MLflow run, one child run per trial, the best trial's model logged last.

Studies are named `<sweep.study_name>-<hash of sweep/train/features params, budget, data md5>` by
default: the same params on the same data resume (or re-close) one study, and any change starts
a new one. The trial budget is stored in the study; workers (processes, hosts, Airflow tasks)
claim trials until the study holds that many, so a killed worker's rerun neither repeats nor
loses finished trials. TPE is seeded per process: `sweep.seed + i` for the i-th worker of the
run_sweep that created the study (one worker alone is reproducible), pid-salted for any process
that joins or resumes it, so concurrent workers never draw the same random start-up points.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import tags
from core.params import Params
from pipelines.sweep.storage import (
    SweepError,
    check_parallel,
    claim_lock,
    fail_dead_trials,
    storage_kind,
)
from pipelines.sweep.worker import (
    BUDGET_ATTR,
    PARENT_ATTR,
    RUN_ATTR,
    SweepHandle,
    end_dead_runs,
    experiment_id,
    load_sweep_study,
    run_exists,
    run_trials,
    suggest_params,
    worker_main,
)

if TYPE_CHECKING:  # torch stays out of `import pipelines.sweep.study` (CLI, DAG parsing, spawn)
    from pipelines.training.train import TrainingData

__all__ = [
    "SweepError",
    "SweepHandle",
    "SweepResult",
    "close_sweep",
    "open_sweep",
    "run_sweep",
    "run_trials",
    "suggest_params",
]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """The closed sweep: its best trial and run, and how its trials ended."""

    parent_run_id: str
    best_run_id: str
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    n_complete: int
    n_pruned: int
    n_failed: int
    study_name: str = ""
    model_uri: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def default_study_name(params: Params, n_trials: int, md5: str, store: str = "") -> str:
    """`<study_name>-<8 hex>`: changes with sweep/train/features params, budget, data md5 or
    tracking store (core.tracking.store_key: a study's trials are runs in one store, so a
    replaced store starts a new study instead of resuming one whose runs are gone)."""
    key = json.dumps(
        {
            "store": store,
            "sweep": params.sweep.model_dump(mode="json"),
            "n_trials": n_trials,
            "train": params.train.model_dump(mode="json"),
            "md5": md5,
            "features": params.features.model_dump(mode="json"),
        },
        sort_keys=True,
    )
    return f"{params.sweep.study_name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def check_space(params: Params, data: TrainingData) -> None:
    """Refuse an impossible search space before any study or run exists."""
    space = params.sweep.space
    for name in ("hidden_size", "num_layers", "lr", "lookback"):
        low, high = getattr(space, name)
        if not 0 < low <= high:
            raise SweepError(
                f"sweep.space.{name} must be [low, high] with 0 < low <= high, got [{low}, {high}]"
            )
    if space.lookback[1] >= data.split.n_train:
        raise SweepError(
            f"sweep.space.lookback upper bound {space.lookback[1]} is not shorter "
            f"than the {data.split.n_train} training rows of {data.version}"
        )
    if not space.cell:
        raise SweepError("sweep.space.cell lists no cell")
    if not space.median:
        raise SweepError("sweep.space.median lists no median (persistence, learned)")
    from pipelines.training.backtest import rolling_folds

    try:
        rolling_folds(
            data.split, params.sweep.folds, params.sweep.fold_days, params.sweep.fold_val_days
        )
    except ValueError as exc:
        raise SweepError(f"sweep.folds: {exc}") from exc


def open_sweep(
    params: Params,
    *,
    study_name: str | None = None,
    storage: str | None = None,
    n_trials: int | None = None,
    data: TrainingData | None = None,
) -> SweepHandle:
    """Create or reopen the study (budget n_trials) and its parent MLflow run (left RUNNING)."""
    return _open_sweep(params, study_name, storage, n_trials, data)[0]


def _open_sweep(
    params: Params,
    study_name: str | None,
    storage: str | None,
    n_trials: int | None,
    data: TrainingData | None,
) -> tuple[SweepHandle, bool]:
    """open_sweep, also saying whether this call created the sweep (or joined/resumed it)."""
    import mlflow
    import optuna
    from mlflow.entities import Param

    from core.tracking import TrackingSettings, lineage_tags, store_key
    from pipelines.sweep.storage import open_storage
    from pipelines.training.train import load_training_data

    data = data or load_training_data()
    check_space(params, data)
    n_trials = n_trials or params.sweep.n_trials
    study_name = study_name or default_study_name(params, n_trials, data.md5, store_key())
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,120}", study_name):
        raise SweepError(f"study name {study_name!r}: use 1-120 letters, digits, '_', '.', '-'")
    storage = storage or TrackingSettings().coinflow_optuna_storage
    client = mlflow.MlflowClient()
    with claim_lock(storage, study_name):  # cooperating processes share one parent run
        study = optuna.create_study(
            study_name=study_name,
            storage=open_storage(storage),
            direction="minimize",
            load_if_exists=True,
        )
        study.set_user_attr(BUDGET_ATTR, n_trials)
        parent = str(study.user_attrs.get(PARENT_ATTR, ""))
        joined = bool(parent) and run_exists(client, parent)
        if joined:
            client.update_run(parent, status="RUNNING")
        else:
            run_tags = {
                **lineage_tags(data.version, data.md5),
                tags.KIND: "sweep",
                tags.STUDY_NAME: study_name,
                tags.OPTUNA_STORAGE: storage_kind(storage),
            }
            parent = client.create_run(
                experiment_id(), run_name=f"sweep-{study_name}", tags=run_tags
            ).info.run_id
            sweep = {
                "study_name": study_name,
                "n_trials": n_trials,
                "seed": params.sweep.seed,
                "max_epochs": params.sweep.max_epochs,
                "timeout_s": params.sweep.timeout_s,
                "data_version": data.version,
                **{f"space_{k}": json.dumps(v) for k, v in params.sweep.space.model_dump().items()},
            }
            client.log_batch(parent, params=[Param(k, str(v)) for k, v in sweep.items()])
            study.set_user_attr(PARENT_ATTR, parent)
    log.info(
        "sweep %s: parent run %s, %d trials%s",
        study_name,
        parent,
        n_trials,
        " (joined)" if joined else "",
    )
    return SweepHandle(study_name, storage, parent), not joined


def close_sweep(handle: SweepHandle, params: Params, plots_dir: Path | None = None) -> SweepResult:
    """Wait for running trials, log the winner's pyfunc, summarise, end the parent. Idempotent."""
    import mlflow
    from optuna.trial import TrialState

    from pipelines.sweep.report import draw_plots, finish_parent, log_best_model

    study = load_sweep_study(handle)
    deadline = time.monotonic() + params.sweep.timeout_s
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if time.monotonic() > deadline:
            raise SweepError(
                f"{handle.study_name}: trials still running after {params.sweep.timeout_s} s"
            )
        with claim_lock(handle.storage, handle.study_name):
            end_dead_runs(handle, fail_dead_trials(study, 0))
        time.sleep(1.0)
    counts = {
        f"n_{s.name.lower()}": len(study.get_trials(deepcopy=False, states=(s,)))
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        mlflow.MlflowClient().set_tag(handle.parent_run_id, tags.FAILURE, "no complete trial")
        mlflow.MlflowClient().set_terminated(handle.parent_run_id, "FAILED")
        raise SweepError(f"{handle.study_name}: no trial completed ({counts})")
    best = min(complete, key=lambda t: (t.value, t.number))
    best_run_id = best.user_attrs[RUN_ATTR]
    metrics = dict(mlflow.MlflowClient().get_run(best_run_id).data.metrics)
    with tempfile.TemporaryDirectory() as tmp:
        plots = draw_plots(study, plots_dir or Path(tmp))
        with claim_lock(handle.storage, handle.study_name):  # cooperating closers log one model
            model_uri = log_best_model(best_run_id)
            finish_parent(
                handle.parent_run_id, best, best_run_id, model_uri, metrics, counts, plots
            )
    return SweepResult(
        handle.parent_run_id,
        best_run_id,
        best.number,
        float(best.value),
        dict(best.params),
        counts["n_complete"],
        counts["n_pruned"],
        counts["n_fail"],
        handle.study_name,
        model_uri,
        metrics,
    )


def run_sweep(
    params: Params,
    *,
    workers: int = 1,
    study_name: str | None = None,
    storage: str | None = None,
    n_trials: int | None = None,
    data: TrainingData | None = None,
    plots_dir: Path | None = None,
) -> SweepResult:
    """Spawn (workers - 1) processes, open the sweep, run trials here too, close."""
    import multiprocessing

    from core.tracking import TrackingSettings, configure_mlflow
    from pipelines.training.train import load_training_data

    storage = storage or TrackingSettings().coinflow_optuna_storage
    if workers < 1:
        raise SweepError(f"workers must be >= 1, got {workers}")
    check_parallel(storage, workers)
    spawn = multiprocessing.get_context("spawn")
    handles = spawn.Queue()
    procs = [
        spawn.Process(target=worker_main, args=(handles, params, i), name=f"sweep-worker-{i}")
        for i in range(1, workers)
    ]
    for proc in procs:  # first: their start-up (imports, warm-up) overlaps the set-up below
        proc.start()
    handle = None
    try:
        configure_mlflow()
        data = data or load_training_data()
        handle, created = _open_sweep(params, study_name, storage, n_trials, data)
        for _ in procs:  # sampler seeds: sweep.seed + i if we created it, else pid-salted
            handles.put((handle, created))
        run_trials(handle, params, data=data, worker=0 if created else None)
    finally:
        if handle is None:
            for _ in procs:
                handles.put(None)
        for proc in procs:
            proc.join()
    crashed = {p.name: p.exitcode for p in procs if p.exitcode != 0}
    if crashed:
        raise SweepError(f"sweep workers failed {crashed}: rerun the same study name to resume")
    return close_sweep(handle, params, plots_dir)
