"""What a finished sweep leaves behind: the winner's pyfunc, the parent run's summary, PNG plots."""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from core import tags
from core.files import write_json
from core.paths import Project, project

log = logging.getLogger(__name__)
PLOTS = ("optimization_history.png", "param_importances.png")


def log_best_model(run_id: str, proj: Project | None = None) -> str:
    """Log a trial run's checkpoint as the pyfunc `model` (and its forecast plot and coverage
    per horizon day) in that run.

    Trials log a checkpoint only; the winner alone pays for the pyfunc, the PNG and the
    multi-day forecasts. Skipped when the run already has its model (a re-close).
    """
    import mlflow
    import torch

    from forecasting.network import Forecaster, ModelConfig
    from pipelines.training.tracked_run import log_forecast_report, log_trained_model
    from pipelines.training.train import load_training_data

    proj = proj or project()
    client = mlflow.MlflowClient()
    logged = client.get_run(run_id).data.tags.get(tags.MODEL_URI)
    if logged:
        return logged
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="checkpoint", dst_path=tmp
            )
        )
        spec = json.loads((folder / "config.json").read_text())
        net = Forecaster(ModelConfig.from_dict(spec["model"]))
        net.load_state_dict(
            torch.load(folder / "weights.pt", weights_only=True, map_location="cpu")
        )
    data = load_training_data(proj.features)
    # The trial's run is finished; reopen it to add the model.
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
        spec["scores"] |= log_forecast_report(net, spec, data, Path(tmp), proj)
        info = log_trained_model(net, spec, proj)
        mlflow.set_tags({tags.MODEL_URI: info.model_uri})
    return str(info.model_uri)


def _figure_with_text(text: str) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


def draw_plots(study: Any, out_dir: Path) -> list[Path]:
    """Optimization history and hyper-parameter importance PNGs (matplotlib, not plotly)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as oplt

    out_dir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's matplotlib plots are "experimental"
        for name, draw, needs in (
            (PLOTS[0], oplt.plot_optimization_history, 1),
            (PLOTS[1], oplt.plot_param_importances, 2),
        ):
            fig: Any = None
            if len(complete) >= needs:
                try:
                    ax = draw(study)
                    fig = ax.figure
                    fig.set_size_inches(9, 5)
                    fig.tight_layout()
                except (ValueError, RuntimeError) as exc:  # e.g. every trial had the same value
                    log.warning("%s: %s", name, exc)
            if fig is None:
                fig = _figure_with_text(
                    f"{name.removesuffix('.png').replace('_', ' ')} needs "
                    f">= {needs} complete trials with distinct results "
                    f"({len(complete)} complete)"
                )
            fig.savefig(out_dir / name, dpi=100, bbox_inches="tight")
            plt.close(fig)
            paths.append(out_dir / name)
    return paths


def finish_parent(
    parent_run_id: str,
    best: Any,
    best_run_id: str,
    model_uri: str,
    best_metrics: dict[str, float],
    counts: dict[str, int],
    plots: list[Path],
) -> None:
    """Best params (best_*), best metrics, counts, plots and tags on the parent; end it FINISHED."""
    import mlflow
    from mlflow.entities import Param

    client = mlflow.MlflowClient()
    existing = client.get_run(parent_run_id).data.params
    # Params are write-once in MLflow: a re-close with the same winner logs nothing new.
    new = [
        Param(f"best_{k}", str(v)) for k, v in best.params.items() if f"best_{k}" not in existing
    ]
    if new:
        client.log_batch(parent_run_id, params=new)
    metrics: dict[str, float] = {
        "best_objective": float(best.value),
        **counts,
        **{f"best_{k}": v for k, v in best_metrics.items() if k.startswith(("val_", "test_"))},
    }
    for key, value in metrics.items():
        client.log_metric(parent_run_id, key, float(value))
    parent_tags = {
        tags.BEST_RUN_ID: best_run_id,
        "best_trial": str(best.number),
        tags.BEST_MODEL_URI: model_uri,
    }
    for tag, text in parent_tags.items():
        client.set_tag(parent_run_id, tag, text)
    for path in plots:
        client.log_artifact(parent_run_id, str(path), "plots")
    client.set_terminated(parent_run_id, "FINISHED")


def write_sweep_metrics(result: Any, path: Path) -> None:
    """metrics/sweep.json for dvc: run ids, best trial and params, its val/test scores, counts."""
    keep = (
        *("test_mase", "test_mae", "test_rmse", "test_dir_acc", "val_mase", "val_mae"),
        *("test_crps", "test_coverage_80", "test_coverage_95", "val_crps"),
    )
    payload = {
        "study_name": result.study_name,
        "parent_run_id": result.parent_run_id,
        "best_run_id": result.best_run_id,
        "best_trial": result.best_trial,
        "best_objective": result.best_value,
        "best_params": result.best_params,
        **{k: result.metrics[k] for k in keep if k in result.metrics},
        "n_complete": result.n_complete,
        "n_pruned": result.n_pruned,
        "n_failed": result.n_failed,
        "model_uri": result.model_uri,
    }
    write_json(path, payload)
