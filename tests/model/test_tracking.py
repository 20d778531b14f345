"""One tracked training run in a private MLflow store: everything a run must carry, and a model
that a fresh Python process loads and runs to the same forecasts as the in-memory network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.model

LOAD_AND_PREDICT = """
import json, sys
import mlflow
pyfunc = mlflow.pyfunc.load_model(sys.argv[1])
rows = pyfunc.unwrap_python_model().model.recent_rows
out = pyfunc.predict(rows, params={"horizon": 3})
again = pyfunc.predict(rows, params={"horizon": 3})
assert out.equals(again), "the same rows must give the same bands"
print(json.dumps({c: out[c].tolist() for c in out.columns}))
"""


def _git_commit(root: Path) -> str:
    """Make the workspace a git repo with one commit, so the run's git sha is a real one."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("add", "params.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "params")
    return git("rev-parse", "HEAD")


@pytest.mark.slow  # a whole tracked training run: params, epochs, plot, model, lineage
def test_tracked_run_logs_params_metrics_lineage_dataset_plot_and_model(workspace: Path) -> None:
    import mlflow
    import torch

    from core.files import file_md5
    from core.params import load_params
    from core.tracking import configure_mlflow
    from forecasting.calibration import CalibrationState, apply
    from forecasting.features import CLOSE, features_array
    from forecasting.forecast import rows_to_arrays
    from forecasting.scores import score_forecast
    from pipelines.training.packaging import recent_rows
    from pipelines.training.tracked_run import tracked_training
    from pipelines.training.train import load_training_data, predict_returns, train_model

    sha = _git_commit(workspace)
    docs = workspace / "reports" / "validation" / "v0.3"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html>GE data docs</html>")
    gate = json.loads((workspace / "metrics" / "validation.json").read_text())
    drift = {"series": [{"series": "btc_volume", "ks_statistic": 0.49, "p_value": 1e-9}]}
    (workspace / "metrics" / "validation.json").write_text(
        json.dumps({"v0.3": {**gate["v0.3"], "drift": drift}})
    )
    configure_mlflow()
    params = load_params().train
    data = load_training_data(Path("data/features"))
    outcome = tracked_training(params, data, run_name="tiny")
    assert outcome.status == "FINISHED"

    client = mlflow.MlflowClient()
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {
        **{k: str(v) for k, v in params.model_dump().items()},
        "data_version": "v0.3",
    }
    md5 = file_md5(workspace / "data" / "versions" / "v0.3.parquet")
    assert {
        k: run.data.tags[k]
        for k in (
            "coinflow.git_sha",
            "coinflow.data_version",
            "coinflow.dvc_md5",
            "coinflow.ge_status",
        )
    } == {
        "coinflow.git_sha": sha,
        "coinflow.data_version": "v0.3",
        "coinflow.dvc_md5": md5,
        "coinflow.ge_status": "success",
    }
    for name in ("train_loss", "val_loss"):
        history = client.get_metric_history(outcome.run_id, name)
        assert [m.step for m in history] == list(range(1, params.max_epochs + 1))
        assert all(np.isfinite(m.value) for m in history)
    metrics = run.data.metrics
    for key in (
        "best_val_loss",
        "best_epoch",
        "epochs",
        "val_mae",
        "val_mase",
        "test_mae",
        "test_rmse",
        "test_mape",
        "test_mase",
        "test_dir_acc",
        "test_persistence_mae",
        "test_crps",
        "test_pinball",
        "test_coverage_80",
        "test_coverage_95",
        "test_width_80",
        "val_coverage_80",
        "val_raw_coverage_80",
        *(f"test_coverage_{n}_{t}" for n in (50, 80, 90, 95) for t in ("calm", "turbulent")),
        *(f"test_coverage_{n}_d{h}" for n in (50, 95) for h in range(1, 8)),
    ):
        assert np.isfinite(metrics[key]), key
    assert run.data.tags["coinflow.median"] == params.median
    assert metrics["best_val_loss"] == pytest.approx(outcome.val_loss)
    # the gate's drift report of the run's version (pipelines.gate.drift.drift_metrics)
    assert (metrics["drift_btc_volume_ks"], metrics["drift_btc_volume_p"]) == (0.49, 1e-9)
    assert run.inputs is not None
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == md5 and dataset.dataset.name == "btc-v0.3"
    assert [t.value for t in dataset.tags if t.key == "mlflow.data.context"] == ["training"]
    arts = {
        a.path
        for folder in ("plots", "ge_data_docs")
        for a in client.list_artifacts(outcome.run_id, folder)
    }
    assert arts == {"plots/forecast_vs_actual.png", "ge_data_docs/index.html"}
    png = Path(
        mlflow.artifacts.download_artifacts(
            run_id=outcome.run_id, artifact_path="plots/forecast_vs_actual.png"
        )
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Same seed → the same network in memory; its test scores are the ones the run logged.
    net, fit = train_model(params, data)
    rows = data.end_rows("test", params.lookback)
    scores = score_forecast(
        predict_returns(net, data, "test", params.lookback), data.close[rows], data.next_close[rows]
    )
    assert metrics["test_mae"] == pytest.approx(scores["mae"], rel=1e-9)

    (model,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        output_format="list",
        filter_string=f"source_run_id = '{outcome.run_id}'",
    )
    assert model.name == "model"
    fresh = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, model.model_uri],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    loaded = json.loads(fresh.stdout.strip().splitlines()[-1])

    recent = recent_rows("v0.3")
    dates, values = rows_to_arrays(recent)
    window = data.scaler.transform(features_array(values[-params.lookback - 1 :]))
    with torch.inference_mode():
        scaled = net(torch.from_numpy(window[None].astype("float32"))).numpy()
    # The version ships the calibration state its validation days gave (as of the first test
    # day's close), and forecasts with it unless it is handed a newer one.
    assert fit.calibration is not None and fit.calibration.updates == data.split.n_val
    assert fit.calibration.as_of == str(data.dates[data.split.test_start].date())
    shipped = f"{model.artifact_location}/artifacts/config.json"
    config = json.loads(Path(mlflow.artifacts.download_artifacts(artifact_uri=shipped)).read_text())
    assert CalibrationState.from_dict(config["calibration"]) == fit.calibration
    assert config["median"] == params.median
    first = apply(data.scaler.target_from_scaled(scaled.astype("float64")), fit.calibration)[0]
    assert loaded["date"][0] == str(dates[-1] + np.timedelta64(1, "D"))
    levels = [f"q{level:g}" for level in params.levels]
    np.testing.assert_allclose(
        [loaded[c][0] for c in levels], values[-1, CLOSE] * np.exp(first), rtol=1e-5
    )
    assert loaded["close"] == loaded["q0.5"]
    for day in range(3):  # non-crossing, and the bands widen with the horizon
        assert all(np.diff([loaded[c][day] for c in levels]) >= 0)
    assert (
        loaded[levels[-1]][2] - loaded[levels[0]][2] > loaded[levels[-1]][0] - loaded[levels[0]][0]
    )
    assert loaded["date"][0] > recent["date"].iloc[-1]


def test_ge_status_follows_the_gate_record(workspace: Path) -> None:
    from core.tracking import lineage_tags

    assert lineage_tags("v0.3", "ab" * 16)["coinflow.ge_status"] == "failed"  # md5 mismatch
    (workspace / "metrics" / "validation.json").unlink()
    record = json.loads((workspace / "data" / "features" / "meta.json").read_text())
    assert lineage_tags("v0.3", record["md5"])["coinflow.ge_status"] == "failed"  # no record
