"""The MLflow shell around one training run: params, per-epoch losses, scores, plot, model."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines import tags as tag
from pipelines.config import TrainParams
from pipelines.paths import Project, project
from pipelines.tracking import lineage_tags
from pipelines.train import DivergedError, EpochHook, TrainingData, predict_returns, train_model

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from pipelines.model import Forecaster

log = logging.getLogger(__name__)
RECENT_ROWS = 120  # raw rows shipped with each model: enough for any lookback in the space


@dataclass(frozen=True)
class RunOutcome:
    """What a tracked run ended as: FINISHED, KILLED (pruned) or FAILED (diverged)."""

    run_id: str
    status: str
    val_loss: float
    metrics: dict[str, float]


def recent_rows(version: str, proj: Project | None = None, n: int = RECENT_ROWS) -> pd.DataFrame:
    """The latest raw rows of a dataset version, as the pyfunc's input (date as ISO string)."""
    from pipelines.features import INPUT_COLUMNS

    frame = pd.read_parquet((proj or project()).version_file(version))[INPUT_COLUMNS].tail(n)
    return frame.reset_index().assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))


def model_spec(params: TrainParams, data: TrainingData, net: Forecaster) -> dict[str, Any]:
    """The JSON config a logged forecaster is rebuilt from."""
    from dataclasses import asdict

    from pipelines.features import FEATURE_COLUMNS, INPUT_COLUMNS
    from pipelines.fingerprint import code_fingerprint

    return {
        "model": net.config.to_dict(),
        "lookback": params.lookback,
        "scaler": asdict(data.scaler),
        "features": FEATURE_COLUMNS,
        "inputs": INPUT_COLUMNS,
        "data_version": data.version,
        "dvc_md5": data.md5,
        "train": params.model_dump(),
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "code_fingerprint": code_fingerprint(),
    }


def _log_history(run_id: str, history: list[tuple[float, float]]) -> None:
    """Per-epoch losses with their step, in one batch (one round-trip, not 2 per epoch)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    metrics = [
        Metric(name, value, now, step)
        for step, (train, val) in enumerate(history, start=1)
        for name, value in (("train_loss", train), ("val_loss", val))
    ]
    MlflowClient().log_batch(run_id, metrics=metrics)


def _log_dataset(data: TrainingData, proj: Project) -> None:
    import mlflow
    import mlflow.data.pandas_dataset

    # Registered by MLflow at import (one class per artifact-repository scheme).
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]

    table = pd.read_parquet(proj.features / "table.parquet")
    dataset = mlflow.data.pandas_dataset.from_pandas(
        table,
        # An explicit source: a bare path string makes MLflow guess among source types (warning).
        source=LocalArtifactDatasetSource(str(proj.version_file(data.version))),
        targets="target",
        name=f"btc-{data.version}",
        digest=data.md5,
    )
    mlflow.log_input(dataset, context="training")


def log_data_docs(docs: Path) -> None:
    """The GE Data Docs pages of the run's version (HTML only: the 4 MB of fonts stay behind)."""
    import mlflow

    for page in sorted(docs.rglob("*.html")):
        mlflow.log_artifact(str(page), str(Path("ge_data_docs") / page.parent.relative_to(docs)))


def log_forecast_plot(net: Forecaster, lookback: int, data: TrainingData, plot_dir: Path) -> None:
    """The test window's forecast-vs-actual PNG, logged to the active run under plots/."""
    import mlflow

    from pipelines.metrics import plot_forecast, score_forecast

    rows = data.end_rows("test", lookback)
    pred = predict_returns(net, data, "test", lookback)
    mase = score_forecast(pred, data.close[rows], data.next_close[rows])["mase"]
    plot = plot_forecast(
        data.dates[rows],
        data.close[rows],
        data.next_close[rows],
        pred,
        f"{data.version} test: MASE {mase:.3f} vs persistence",
        plot_dir / "forecast_vs_actual.png",
    )
    mlflow.log_artifact(str(plot), "plots")


def log_scores(net: Forecaster, params: TrainParams, data: TrainingData) -> dict[str, float]:
    """Validation/test scores in USD, logged to the active run."""
    import mlflow

    from pipelines.metrics import score_forecast

    metrics: dict[str, float] = {}
    for part in ("val", "test"):
        rows = data.end_rows(part, params.lookback)
        pred = predict_returns(net, data, part, params.lookback)
        scores = score_forecast(pred, data.close[rows], data.next_close[rows])
        metrics |= {f"{part}_{k}": v for k, v in scores.items()}
    mlflow.log_metrics(metrics)
    return metrics


def tracked_training(
    params: TrainParams,
    data: TrainingData,
    *,
    run_name: str,
    nested: bool = False,
    tags: dict[str, str] | None = None,
    on_epoch: EpochHook | None = None,
    progress: bool = False,
    log_model: bool = True,
    proj: Project | None = None,
) -> RunOutcome:
    """Train once inside an MLflow run; a diverged run ends FAILED and returns, it never raises.

    With log_model the run gets the pyfunc and the forecast plot; without (sweep trials) a
    checkpoint only, so that a trial costs its training and little else.
    """
    import mlflow

    proj = proj or project()
    run_tags = {**lineage_tags(data.version, data.md5, proj), **(tags or {})}
    run = mlflow.start_run(run_name=run_name, nested=nested, tags=run_tags)
    status, metrics, val_loss = "FAILED", {}, float("nan")
    try:
        mlflow.log_params({**params.model_dump(), "data_version": data.version})
        _log_dataset(data, proj)
        log_data_docs(proj.validation_docs(data.version))
        net, fit = train_model(params, data, on_epoch, progress)
        _log_history(run.info.run_id, fit.history)
        val_loss = fit.history[fit.best_epoch - 1][1] if fit.best_epoch else float("nan")
        mlflow.log_metrics(
            {
                "best_epoch": fit.best_epoch,
                "epochs": len(fit.history),
                "best_val_loss": val_loss,
                "stopped_early": float(fit.stopped_early),
            }
        )
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            metrics = log_scores(net, params, data)
            spec = model_spec(params, data, net)
            if fit.pruned:
                status = "KILLED"  # MLflow's word; the sweep tags the Optuna state PRUNED
            elif log_model:
                log_forecast_plot(net, params.lookback, data, tmp)
                log_trained_model(net, spec, proj)
                status = "FINISHED"
            else:
                save_checkpoint(net, spec, tmp)
                status = "FINISHED"
    except DivergedError as exc:
        log.warning("run %s failed: %s", run.info.run_id, exc)
        mlflow.set_tag(tag.FAILURE, str(exc))
    finally:
        mlflow.end_run(status=status)
    return RunOutcome(run.info.run_id, status, val_loss, metrics)


def log_trained_model(
    net: Forecaster, spec: dict[str, Any], proj: Project | None = None
) -> ModelInfo:
    """Log the models-from-code pyfunc (weights + JSON config + recent rows) to the active run."""
    from registry.pyfunc import log_forecaster

    return log_forecaster(net, spec, recent_rows(spec["data_version"], proj))


def save_checkpoint(net: Forecaster, spec: dict[str, Any], tmp: Path) -> None:
    """State dict + config as plain run artifacts, to log as a pyfunc later if this run wins."""
    import mlflow
    import torch

    torch.save(net.state_dict(), tmp / "weights.pt")
    (tmp / "config.json").write_text(json.dumps(spec, indent=2, default=str))
    mlflow.log_artifact(str(tmp / "weights.pt"), "checkpoint")
    mlflow.log_artifact(str(tmp / "config.json"), "checkpoint")
