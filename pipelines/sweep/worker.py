"""One sweep worker: claim a trial under the study's lock, run it as a child MLflow run, tell.

Each trial is `tracked_training` with `log_model=False` (a checkpoint, not a pyfunc) in a run
tagged `mlflow.parentRunId` = the sweep's parent run (so it nests from any process), plus
`coinflow.kind=trial`, `coinflow.trial_number`, `coinflow.study_name`. Pruning: the MedianPruner
sees `trial.report(val_loss, epoch)` through tracked_training's on_epoch hook.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core import tags
from core.params import Params, TrainParams
from pipelines.sweep.storage import WORKER_ATTR, SweepError, claim_lock, fail_dead_trials

if TYPE_CHECKING:  # torch stays out of `import pipelines.sweep.study` (CLI, DAG parsing, spawn)
    from pipelines.training.train import TrainingData

log = logging.getLogger(__name__)
BUDGET_ATTR, PARENT_ATTR, RUN_ATTR = "coinflow_n_trials", "mlflow_parent_run_id", "mlflow_run_id"


@dataclass(frozen=True)
class SweepHandle:
    """What workers need to join a sweep: the study, where it lives, the parent MLflow run."""

    study_name: str
    storage: str
    parent_run_id: str


def suggest_params(trial: Any, params: Params) -> TrainParams:
    """One point of the search space on top of params.train (one thread per worker)."""
    space = params.sweep.space
    return TrainParams.model_validate(
        {
            **params.train.model_dump(),
            "max_epochs": params.sweep.max_epochs,
            "threads": 1,
            "cell": trial.suggest_categorical("cell", list(space.cell)),
            "hidden_size": trial.suggest_int("hidden_size", *space.hidden_size, log=True),
            "num_layers": trial.suggest_int("num_layers", *space.num_layers),
            "lr": trial.suggest_float("lr", *space.lr, log=True),
            "lookback": trial.suggest_int("lookback", *space.lookback),
            "median": trial.suggest_categorical("median", list(space.median)),
        }
    )


def load_sweep_study(
    handle: SweepHandle, params: Params | None = None, worker: int | None = 0
) -> Any:
    """The handle's study; with params, a TPE sampler seeded per worker and a median pruner.

    Worker i of `run_sweep` samples with seed sweep.seed + i (worker 0 alone is reproducible);
    worker None (an Airflow task, another shell) salts the seed with its pid, so independent
    processes never draw the same random start-up points.
    """
    import warnings

    import optuna

    from pipelines.sweep.storage import open_storage

    sampler = pruner = None
    if params is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant_liar is "experimental"
            salt = worker if worker is not None else os.getpid()
            sampler = optuna.samplers.TPESampler(seed=params.sweep.seed + salt, constant_liar=True)
        # Steps are epochs, or folds when the trial backtests (a fold is worth a warm-up).
        warmup = 1 if params.sweep.folds else 2
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    return optuna.load_study(
        study_name=handle.study_name,
        storage=open_storage(handle.storage),
        sampler=sampler,
        pruner=pruner,
    )


def experiment_id() -> str:
    """The coinflow experiment (configure_mlflow() has created it)."""
    import mlflow

    from core.tracking import TrackingSettings

    experiment = mlflow.get_experiment_by_name(TrackingSettings().coinflow_experiment)
    if experiment is None:
        raise SweepError("no coinflow experiment: call core.tracking.configure_mlflow() first")
    return str(experiment.experiment_id)


def run_exists(client: Any, run_id: str) -> bool:
    """Whether a run id is a live (not deleted) run in the current tracking store."""
    from mlflow.exceptions import MlflowException

    try:
        return bool(client.get_run(run_id).info.lifecycle_stage == "active")
    except MlflowException:
        return False


def end_dead_runs(handle: SweepHandle, dead: list[Any]) -> None:
    """A dead worker's trial runs stay RUNNING in MLflow: end them FAILED."""
    import mlflow

    client = mlflow.MlflowClient()
    for trial in dead:
        runs = client.search_runs(
            [experiment_id()],
            f"tags.`{tags.STUDY_NAME}` = '{handle.study_name}' and "
            f"tags.`{tags.TRIAL_NUMBER}` = '{trial.number}' and attributes.status = 'RUNNING'",
        )
        for run in runs:
            client.set_tag(run.info.run_id, tags.FAILURE, "worker died")
            client.set_terminated(run.info.run_id, "FAILED")


def claim_trial(study: Any, handle: SweepHandle) -> Any:
    """Next trial for this worker (a retry first), or None once the study holds its budget."""
    from optuna.trial import TrialState

    from core.liveness import process_identity

    with claim_lock(handle.storage, handle.study_name):
        budget = int(study.user_attrs[BUDGET_ATTR])
        end_dead_runs(handle, fail_dead_trials(study, budget))
        trials = study.get_trials(deepcopy=False)
        if len(trials) >= budget and not any(t.state == TrialState.WAITING for t in trials):
            return None
        trial = study.ask()
        trial.set_user_attr(WORKER_ATTR, process_identity())
    return trial


def run_trial(
    study: Any, trial: Any, handle: SweepHandle, params: Params, data: TrainingData
) -> str:
    """The thin objective: sample → tracked run (checkpoint, no pyfunc) → tell Optuna; the
    state Optuna ended the trial in (COMPLETE, PRUNED or FAIL), as the console and tag say it."""
    import mlflow
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from pipelines.training.backtest import rolling_folds
    from pipelines.training.tracked_run import Backtest, tracked_training

    def prune(epoch: int, _train_loss: float, val_loss: float) -> bool:
        trial.report(val_loss, epoch)
        return bool(trial.should_prune())

    def prune_fold(fold: int, mean_skill: float) -> bool:
        trial.report(mean_skill, fold)
        return bool(trial.should_prune())

    sweep = params.sweep
    folds = rolling_folds(data.split, sweep.folds, sweep.fold_days, sweep.fold_val_days)
    backtest = Backtest(folds, params.baselines.window, prune_fold) if folds else None

    run_tags = {
        tags.KIND: "trial",
        tags.TRIAL_NUMBER: str(trial.number),
        tags.STUDY_NAME: handle.study_name,
        tags.PARENT_RUN_ID: handle.parent_run_id,
    }
    try:
        outcome = tracked_training(
            suggest_params(trial, params),
            data,
            tags=run_tags,
            on_epoch=prune,
            run_name=f"trial-{trial.number}",
            log_model=False,
            backtest=backtest,
        )
    except BaseException:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)  # the sweep stops
        raise
    # skip_if_finished: a worker presumed dead (stale heartbeat) may finish after all.
    with contextlib.suppress(UpdateFinishedTrialError):
        trial.set_user_attr(RUN_ATTR, outcome.run_id)
    if outcome.status == "FINISHED":
        state = TrialState.COMPLETE
        study.tell(trial, outcome.objective, skip_if_finished=True)
    else:  # KILLED = pruned (its last reported loss is kept), FAILED = diverged
        state = TrialState.PRUNED if outcome.status == "KILLED" else TrialState.FAIL
        study.tell(trial, state=state, skip_if_finished=True)
    # MLflow says KILLED for a pruned run, which reads as a crash: say what Optuna decided.
    mlflow.MlflowClient().set_tag(outcome.run_id, tags.OPTUNA_STATE, state.name)
    return str(state.name)


def run_trials(
    handle: SweepHandle,
    params: Params,
    n_trials: int | None = None,
    data: TrainingData | None = None,
    *,
    worker: int | None = None,
) -> int:
    """One worker: claim and run trials until the study's budget (or n_trials here) is used."""
    from tqdm import tqdm

    from pipelines.sweep.storage import heartbeat
    from pipelines.training.train import load_training_data, progress_default

    data = data or load_training_data()
    study = load_sweep_study(handle, params, worker)
    deadline, ran = time.monotonic() + params.sweep.timeout_s, 0
    bar = tqdm(
        total=int(study.user_attrs[BUDGET_ATTR]),
        desc=f"trials (worker {worker or 0})",
        disable=not progress_default(),
    )
    while (n_trials is None or ran < n_trials) and time.monotonic() < deadline:
        trial = claim_trial(study, handle)
        if trial is None:
            break
        with heartbeat(study._storage, trial):
            state = run_trial(study, trial, handle, params, data)
        log.info("trial %d %s: %s", trial.number, state, trial.params)
        ran += 1
        bar.update(1)
    bar.close()
    return ran


def warm_up() -> None:
    """Pay the one-off lazy imports of a first trial (torch.optim ~2 s, matplotlib ~1 s) now."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import mlflow.data.pandas_dataset  # noqa: F401
    import torch

    import pipelines.training.tracked_run  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def worker_main(handles: Any, params: Params, worker: int) -> None:
    """A spawned worker: warm up while the parent opens the sweep, then run its trials."""
    from core.tracking import configure_mlflow

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warm_up()
    opened = handles.get()  # None: the parent could not open the sweep
    if opened is not None:
        handle, created = opened
        configure_mlflow()  # only now: the parent has created the store and experiment
        run_trials(handle, params, worker=worker if created else None)
