"""Reading a sweep back from MLflow: the newest sweep parent run and its trial runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core import tags
from core.errors import CoinflowError
from core.tag_values import as_float, as_int

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


class NoSweepError(CoinflowError, LookupError):
    """The tracking store holds no sweep run."""


def latest_sweep(client: MlflowClient) -> dict[str, Any]:
    """The newest run tagged coinflow.kind=sweep and its trial runs, as plain dicts."""
    ids = [e.experiment_id for e in client.search_experiments()]
    parents = (
        client.search_runs(
            ids,
            f"tags.`{tags.KIND}` = 'sweep'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if ids
        else []
    )
    if not parents:
        raise NoSweepError(f"no sweep run found (runs tagged {tags.KIND}=sweep)")
    parent = parents[0]
    trials = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`{tags.PARENT_RUN_ID}` = '{parent.info.run_id}'",
        max_results=5000,
    )
    rows = sorted(
        (_trial(run) for run in trials),
        key=lambda t: (t["trial_number"] is None, t["trial_number"] or 0),
    )
    run_tags_, params = parent.data.tags, parent.data.params
    return {
        "parent_run_id": parent.info.run_id,
        "status": parent.info.status,
        "study_name": run_tags_.get(tags.STUDY_NAME)
        or params.get("study_name")
        or parent.info.run_name,
        "trials": rows,
    }


def _trial(run: Run) -> dict[str, Any]:
    params, metrics, run_tags_ = run.data.params, run.data.metrics, run.data.tags
    return {
        "run_id": run.info.run_id,
        "trial_number": as_int(run_tags_.get(tags.TRIAL_NUMBER)),
        "status": run.info.status,
        "state": run_tags_.get(tags.OPTUNA_STATE),
        "hidden_size": as_int(params.get("hidden_size")),
        "num_layers": as_int(params.get("num_layers")),
        "cell": params.get("cell"),
        "lookback": as_int(params.get("lookback")),
        "lr": as_float(params.get("lr")),
        "val_loss": as_float(metrics.get("best_val_loss", metrics.get("val_loss"))),
        "objective": as_float(metrics.get("objective")),
        "test_mase": as_float(metrics.get("test_mase")),
        "test_crps": as_float(metrics.get("test_crps")),
    }
