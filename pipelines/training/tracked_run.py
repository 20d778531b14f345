"""The MLflow shell around one training run: params, per-epoch losses, scores, plot, model."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core import tags as tag
from core.gate_record import validation_record
from core.params import TrainParams
from core.paths import Project, project
from core.tracking import lineage_tags
from forecasting.forecast import rows_to_arrays
from forecasting.scores import calibration_scores
from pipelines.gate.drift import drift_metrics
from pipelines.training.train import (
    DivergedError,
    EpochHook,
    TrainingData,
    calibrated_quantiles,
    predict_quantiles,
    train_model,
)

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from forecasting.calibration import CalibrationState
    from forecasting.network import Forecaster
    from pipelines.training.backtest import Fold, FoldHook

log = logging.getLogger(__name__)
OBJECTIVE = "objective"  # the metric a sweep minimises: mean fold skill, else best val loss


@dataclass(frozen=True)
class RunOutcome:
    """What a tracked run ended as: FINISHED, KILLED (pruned) or FAILED (diverged)."""

    run_id: str
    status: str
    val_loss: float
    metrics: dict[str, float]
    objective: float = float("nan")  # what a sweep minimises: backtest skill, else val loss


def model_spec(
    params: TrainParams, data: TrainingData, net: Forecaster, calibration: CalibrationState
) -> dict[str, Any]:
    """The JSON config a logged forecaster is rebuilt from (its scaler: the one its median
    reads; its calibration: the state fitted on the validation days)."""
    from dataclasses import asdict

    from core.fingerprint import code_fingerprint
    from forecasting.features import FEATURE_COLUMNS, INPUT_COLUMNS

    return {
        "model": net.config.to_dict(),
        "lookback": params.lookback,
        "median": params.median,
        "scaler": asdict(data.scaler.for_median(params.median)),
        "features": FEATURE_COLUMNS,
        "inputs": INPUT_COLUMNS,
        "data_version": data.version,
        "dvc_md5": data.md5,
        "train": params.model_dump(),
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "code_fingerprint": code_fingerprint(),
        "levels": list(net.config.levels),
        "calibration": calibration.to_dict(),
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


def log_dataset(data: TrainingData, proj: Project) -> None:
    """The version's features table as the active run's training input (name btc-<version>,
    digest = the version's DVC md5).

    MLflow stores one dataset row per (experiment, name, digest), found or inserted in one
    transaction without a lock: two runs logging the same new dataset at once (parallel sweep
    workers) make one insert collide with the other's (a unique-key error from SQLite or
    Postgres). The row exists once the collision is seen, so the loser's second call links it.
    """
    import mlflow
    import mlflow.data.pandas_dataset

    # Registered by MLflow at import (one class per artifact-repository scheme).
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]
    from mlflow.exceptions import MlflowException

    table = pd.read_parquet(proj.features / "table.parquet")
    dataset = mlflow.data.pandas_dataset.from_pandas(
        table,
        # An explicit source: a bare path string makes MLflow guess among source types (warning).
        source=LocalArtifactDatasetSource(str(proj.version_file(data.version))),
        targets="target",
        name=f"btc-{data.version}",
        digest=data.md5,
    )
    try:
        mlflow.log_input(dataset, context="training")
    except MlflowException:  # any other cause fails the second call too, and is raised
        log.info("dataset %s: inserted by a concurrent run first; linking that row", dataset.name)
        mlflow.log_input(dataset, context="training")


def log_data_docs(docs: Path) -> None:
    """The GE Data Docs pages of the run's version (HTML only: the 4 MB of fonts stay behind)."""
    import mlflow

    for page in sorted(docs.rglob("*.html")):
        mlflow.log_artifact(str(page), str(Path("ge_data_docs") / page.parent.relative_to(docs)))


def log_forecast_report(
    net: Forecaster, spec: dict[str, Any], data: TrainingData, plot_dir: Path, proj: Project
) -> dict[str, float]:
    """The test window's forecast-vs-actual PNG (median and calibrated 80% band, logged under
    plots/) and the coverage of 7-day forecasts per horizon day, as the packaged version will
    serve them from the dataset version's rows (`test_coverage_80_d1`, ... logged)."""
    import mlflow

    from forecasting.calibration import CalibrationState
    from forecasting.quantiles import interval_pairs
    from forecasting.scores import score_quantiles
    from pipelines.training.evaluation import horizon_coverage
    from pipelines.training.packaging import packaged_in_memory, version_rows
    from pipelines.training.plots import plot_forecast

    lookback = int(spec["lookback"])
    state = CalibrationState.from_dict(spec["calibration"])
    rows = data.end_rows("test", lookback)
    quant, _ = calibrated_quantiles(net, data, "test", lookback, state)
    levels = net.config.levels
    scores = score_quantiles(quant, data.close[rows], data.next_close[rows], levels)
    lo, hi = interval_pairs(levels).get(0.8, (0, len(levels) - 1))
    plot = plot_forecast(
        data.dates[rows],
        data.close[rows],
        data.next_close[rows],
        quant[:, net.median],
        f"{data.version} test: median MASE {scores['mase']:.3f}, CRPS ${scores['crps']:.0f}, "
        f"80% band covers {scores.get('coverage_80', float('nan')):.0%}",
        plot_dir / "forecast_vs_actual.png",
        band=(quant[:, lo], quant[:, hi]),
    )
    mlflow.log_artifact(str(plot), "plots")
    frame = version_rows(data.version, proj)
    py = packaged_in_memory(spec, frame.tail(1).reset_index(), net)
    dates, values = rows_to_arrays(frame)
    origins = frame.index.get_indexer(data.dates[rows])
    by_day = {f"test_{k}": v for k, v in horizon_coverage(py, dates, values, origins).items()}
    mlflow.log_metrics(by_day)
    return by_day


def log_scores(
    net: Forecaster, params: TrainParams, data: TrainingData, state: CalibrationState
) -> dict[str, float]:
    """Validation/test scores in USD (median point scores, pinball, CRPS, coverage, width of
    the calibrated quantiles: validation days calibrated from the raw spread, test days from
    the shipped `state`, day by day; the raw network's validation coverage; test coverage per
    volatility tercile), logged to the run."""
    import mlflow

    from forecasting.calibration import initial_state
    from forecasting.scores import coverage_by_volatility, score_quantiles, trailing_volatility

    def scores(part: str, start: CalibrationState) -> tuple[np.ndarray, np.ndarray]:
        rows = data.end_rows(part, params.lookback)
        quant, _ = calibrated_quantiles(net, data, part, params.lookback, start)
        found = score_quantiles(quant, data.close[rows], data.next_close[rows], params.levels)
        metrics.update({f"{part}_{k}": v for k, v in found.items()})
        return quant, rows

    metrics: dict[str, float] = {}
    scores("val", initial_state(params.levels, params.calibration_step))
    quant, rows = scores("test", state)
    terciles = coverage_by_volatility(
        quant,
        np.log(data.next_close[rows] / data.close[rows]),
        trailing_volatility(data.close)[rows],
        params.levels,
    )
    metrics |= {f"test_{k}": v for k, v in terciles.items()}
    rows = data.end_rows("val", params.lookback)
    raw = score_quantiles(
        predict_quantiles(net, data, "val", params.lookback),
        data.close[rows],
        data.next_close[rows],
        params.levels,
    )
    metrics |= {f"val_raw_{k}": v for k, v in raw.items() if k.startswith("coverage_")}
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
    backtest: Backtest | None = None,
) -> RunOutcome:
    """Train once inside an MLflow run; a diverged run ends FAILED and returns, it never raises.

    With log_model the run gets the pyfunc and the forecast plot; without (sweep trials) a
    checkpoint only, so that a trial costs its training and little else. With a backtest, one
    model per fold is trained and scored first (the fold table is logged; pruning acts per fold
    and the objective is the mean fold skill), then the final model on the version's split.
    """
    import mlflow

    proj = proj or project()
    run_tags = {
        **lineage_tags(data.version, data.md5, proj),
        tag.MEDIAN: params.median,
        **(tags or {}),
    }
    run = mlflow.start_run(run_name=run_name, nested=nested, tags=run_tags)
    status, val_loss, objective = "FAILED", float("nan"), float("nan")
    metrics: dict[str, float] = {}
    try:
        mlflow.log_params({**params.model_dump(), "data_version": data.version})
        log_dataset(data, proj)
        log_data_docs(proj.validation_docs(data.version))
        mlflow.log_metrics(drift_metrics(validation_record(data.version, proj)))
        if backtest is not None and backtest.folds:
            objective, pruned = log_backtest(params, data, backtest)
            if pruned:
                status = "KILLED"  # MLflow's word; the sweep tags the Optuna state PRUNED
                return RunOutcome(run.info.run_id, status, val_loss, metrics, objective)
            on_epoch = None  # pruning acted per fold; epochs of the final fit report nothing
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
            if fit.pruned or fit.calibration is None:
                status = "KILLED"  # MLflow's word; the sweep tags the Optuna state PRUNED
            else:
                metrics = log_scores(net, params, data, fit.calibration)
                spec = model_spec(params, data, net, fit.calibration)
                if log_model:
                    metrics |= log_forecast_report(net, spec, data, tmp, proj)
                spec["scores"] = calibration_scores(metrics)
                if log_model:
                    log_trained_model(net, spec, proj)
                else:
                    save_checkpoint(net, spec, tmp)
                status = "FINISHED"
    except DivergedError as exc:
        log.warning("run %s failed: %s", run.info.run_id, exc)
        mlflow.set_tag(tag.FAILURE, str(exc))
    finally:
        mlflow.end_run(status=status)
    if backtest is None or not backtest.folds:
        objective = val_loss
    if np.isfinite(objective):
        mlflow.MlflowClient().log_metric(run.info.run_id, OBJECTIVE, objective)
    return RunOutcome(run.info.run_id, status, val_loss, metrics, objective)


@dataclass(frozen=True)
class Backtest:
    """Rolling-origin folds to train and score before the final model, and the per-fold hook."""

    folds: list[Fold]
    baseline_window: int
    on_fold: FoldHook | None = None


def log_backtest(params: TrainParams, data: TrainingData, backtest: Backtest) -> tuple[float, bool]:
    """Run the folds inside the active run: backtest/folds.json, fold<k>_* metrics and the mean
    skill (CRPS over the baseline's); (mean skill, pruned?)."""
    import mlflow

    from pipelines.training.backtest import run_backtest

    table, pruned = run_backtest(
        params, data, backtest.folds, backtest.baseline_window, backtest.on_fold
    )
    mlflow.log_dict({"folds": table}, "backtest/folds.json")
    skill = float(np.mean([row["skill"] for row in table]))
    metrics = {
        f"fold{row['fold']}_{k}": float(row[k])
        for row in table
        for k in ("crps", "skill", "coverage_80", "coverage_95", "mase")
    }
    mlflow.log_metrics({**metrics, "backtest_skill": skill, "backtest_folds": len(table)})
    return skill, pruned


def log_trained_model(
    net: Forecaster, spec: dict[str, Any], proj: Project | None = None
) -> ModelInfo:
    """Log the models-from-code pyfunc (weights + JSON config + recent rows) to the active run."""
    from pipelines.training.packaging import log_packaged, recent_rows

    return log_packaged(spec, recent_rows(spec["data_version"], proj), net=net)


def save_checkpoint(net: Forecaster, spec: dict[str, Any], tmp: Path) -> None:
    """State dict + config as plain run artifacts, to log as a pyfunc later if this run wins."""
    import mlflow
    import torch

    torch.save(net.state_dict(), tmp / "weights.pt")
    (tmp / "config.json").write_text(json.dumps(spec, indent=2, default=str))
    mlflow.log_artifact(str(tmp / "weights.pt"), "checkpoint")
    mlflow.log_artifact(str(tmp / "config.json"), "checkpoint")
