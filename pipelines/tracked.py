"""The MLflow shell around one training run: params, per-epoch losses, scores, plot, model."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.config import TrainParams
from pipelines.paths import FEATURES_DIR, METRICS_DIR, REPORTS_DIR, VERSIONS_DIR, version_path
from pipelines.tracking import lineage_tags
from pipelines.train import DivergedError, EpochHook, TrainingData, predict_returns, train_model

log = logging.getLogger(__name__)
RECENT_ROWS = 120  # raw rows shipped with each model: enough for any lookback in the space


@dataclass(frozen=True)
class RunOutcome:
    """What a tracked run ended as: FINISHED, KILLED (pruned) or FAILED (diverged)."""

    run_id: str
    status: str
    val_loss: float
    metrics: dict[str, float]


def recent_rows(
    version: str, versions_dir: Path = VERSIONS_DIR, n: int = RECENT_ROWS
) -> pd.DataFrame:
    """The latest raw rows of a dataset version, as the pyfunc's input (date as ISO string)."""
    from pipelines.features import INPUT_COLUMNS

    frame = pd.read_parquet(version_path(version, versions_dir))[INPUT_COLUMNS].tail(n)
    return frame.reset_index().assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))


def model_spec(params: TrainParams, data: TrainingData, net: Any) -> dict[str, Any]:
    """The JSON config a logged forecaster is rebuilt from."""
    from dataclasses import asdict

    from pipelines.features import FEATURE_COLUMNS, INPUT_COLUMNS

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


def _log_dataset(data: TrainingData, features_dir: Path) -> None:
    import mlflow
    import mlflow.data.pandas_dataset

    table = pd.read_parquet(features_dir / "table.parquet")
    dataset = mlflow.data.pandas_dataset.from_pandas(
        table,
        source=str(version_path(data.version)),
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


def log_scores(net: Any, params: TrainParams, data: TrainingData, tmp: Path) -> dict[str, float]:
    """Validation/test scores in USD and the test forecast plot, logged to the active run."""
    import mlflow

    from pipelines.metrics import plot_forecast, score_forecast

    metrics: dict[str, float] = {}
    for part in ("val", "test"):
        rows = data.end_rows(part, params.lookback)
        pred = predict_returns(net, data, part, params.lookback)
        scores = score_forecast(pred, data.close[rows], data.next_close[rows])
        metrics |= {f"{part}_{k}": v for k, v in scores.items()}
        if part == "test":
            plot = plot_forecast(
                data.dates[rows],
                data.close[rows],
                data.next_close[rows],
                pred,
                f"{data.version} test: MASE {scores['mase']:.3f} vs persistence",
                tmp / "forecast_vs_actual.png",
            )
            mlflow.log_artifact(str(plot), "plots")
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
    features_dir: Path = FEATURES_DIR,
    versions_dir: Path = VERSIONS_DIR,
    metrics_dir: Path = METRICS_DIR,
    reports_dir: Path = REPORTS_DIR,
) -> RunOutcome:
    """Train once inside an MLflow run; a diverged run ends FAILED and returns, it never raises."""
    import mlflow

    run_tags = {**lineage_tags(data.version, data.md5, metrics_dir), **(tags or {})}
    run = mlflow.start_run(run_name=run_name, nested=nested, tags=run_tags)
    status, metrics, val_loss = "FAILED", {}, float("nan")
    try:
        mlflow.log_params({**params.model_dump(), "data_version": data.version})
        _log_dataset(data, features_dir)
        log_data_docs(reports_dir / "validation" / data.version)
        net, fit = train_model(params, data, on_epoch, progress)
        _log_history(run.info.run_id, fit.history)
        val_loss = fit.history[fit.best_epoch - 1][1] if fit.best_epoch else float("nan")
        mlflow.log_metrics(
            {"best_epoch": fit.best_epoch, "epochs": len(fit.history), "best_val_loss": val_loss}
        )
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            metrics = log_scores(net, params, data, tmp)
            spec = model_spec(params, data, net)
            if fit.pruned:
                mlflow.set_tag("coinflow.pruned", "true")
                status = "KILLED"
            elif log_model:
                log_trained_model(net, spec, versions_dir)
                status = "FINISHED"
            else:
                save_checkpoint(net, spec, tmp)
                status = "FINISHED"
    except DivergedError as exc:
        log.warning("run %s failed: %s", run.info.run_id, exc)
        mlflow.set_tag("coinflow.failure", str(exc))
    finally:
        mlflow.end_run(status=status)
    return RunOutcome(run.info.run_id, status, val_loss, metrics)


def log_trained_model(net: Any, spec: dict[str, Any], versions_dir: Path = VERSIONS_DIR) -> Any:
    """Log the models-from-code pyfunc (weights + JSON config + recent rows) to the active run."""
    from registry.pyfunc import log_forecaster

    return log_forecaster(net, spec, recent_rows(spec["data_version"], versions_dir))


def save_checkpoint(net: Any, spec: dict[str, Any], tmp: Path) -> None:
    """State dict + config as plain run artifacts, to log as a pyfunc later if this run wins."""
    import mlflow
    import torch

    torch.save(net.state_dict(), tmp / "weights.pt")
    (tmp / "config.json").write_text(json.dumps(spec, indent=2, default=str))
    mlflow.log_artifact(str(tmp / "weights.pt"), "checkpoint")
    mlflow.log_artifact(str(tmp / "config.json"), "checkpoint")
