"""Fair re-scoring: every candidate forecasts the same test days of the same dataset version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.paths import FEATURES_DIR, VERSIONS_DIR, version_path
from registry.errors import EvalDataError


@dataclass(frozen=True)
class EvalSet:
    """The test split of one dataset version: forecast days, their closes, and the raw rows."""

    version: str
    md5: str
    dates: pd.DatetimeIndex  # day t: the forecast is made at t's close for t+1
    close: np.ndarray
    next_close: np.ndarray
    rows: pd.DataFrame  # the version's raw input rows, indexed by date, oldest first
    positions: np.ndarray  # position of each test day t in `rows`

    def describe(self) -> dict[str, Any]:
        """Which rows were scored, for decision records."""
        return {
            "data_version": self.version,
            "dvc_md5": self.md5,
            "rows": len(self.dates),
            "first_day": str(self.dates[0].date()),
            "last_day": str(self.dates[-1].date()),
        }


def load_eval_set(features_dir: Path = FEATURES_DIR, versions_dir: Path = VERSIONS_DIR) -> EvalSet:
    """Test split of the features stage's version, with that version's raw rows (md5-checked)."""
    from pipelines.features import INPUT_COLUMNS
    from pipelines.train import load_training_data
    from pipelines.version import file_md5

    if not (features_dir / "meta.json").is_file():
        raise EvalDataError(f"no features at {features_dir}: run the features stage first")
    data = load_training_data(features_dir)
    path = version_path(data.version, versions_dir)
    if not path.is_file():
        raise EvalDataError(f"dataset version file {path} (features' version) not found")
    if file_md5(path) != data.md5:
        raise EvalDataError(
            f"{path} has md5 {file_md5(path)} but the features were built from "
            f"md5 {data.md5}: re-run the features stage"
        )
    rows = pd.read_parquet(path)[INPUT_COLUMNS]
    test = data.end_rows("test", 1)
    dates = data.dates[test]
    positions = rows.index.get_indexer(dates)
    if (positions < 0).any() or not np.allclose(
        rows["btc_close"].to_numpy()[positions], data.close[test]
    ):
        raise EvalDataError(f"test days of the features do not match the rows of {path}")
    return EvalSet(
        data.version, data.md5, dates, data.close[test], data.next_close[test], rows, positions
    )


def _batched_returns(py: Any, ev: EvalSet) -> np.ndarray:
    """All test windows through the torch net at once (same arithmetic as forecast_closes)."""
    from pipelines.features import compute_features, make_windows

    lookback = int(py.config["lookback"])
    if ev.positions.min() - lookback + 1 < 1:  # row 0 has no previous day: NaN returns
        raise EvalDataError(f"the first test day lacks {lookback} days of history")
    feats = compute_features(ev.rows).to_numpy(dtype="float64")
    windows = make_windows(py.scaler.transform(feats), lookback, ev.positions).astype("float32")
    if not np.isfinite(windows).all():
        raise EvalDataError("a test window holds missing inputs")
    scaled = np.asarray(py.predict_returns(windows))
    return np.asarray(py.scaler.target_from_scaled(scaled), dtype="float64")


def _windowed_returns(py: Any, ev: EvalSet) -> np.ndarray:
    """Any pyfunc: one predict per test day on its last `rows_needed` raw rows (slow, generic)."""
    from pipelines.forecast import input_frame

    needed = int(py.rows_needed)
    out = np.empty(len(ev.positions))
    for i, pos in enumerate(ev.positions):
        window = input_frame(ev.rows.iloc[pos - needed + 1 : pos + 1].reset_index())
        forecast = py.predict(None, window, params={"horizon": 1})
        out[i] = np.log(float(forecast["close"].iloc[0]) / ev.close[i])
    return out


def predict_test_returns(py: Any, ev: EvalSet, batched: bool = True) -> np.ndarray:
    """Next-day log returns a model forecasts for each test day (persistence: exactly zero)."""
    if py.config.get("kind") == "persistence":
        return np.zeros(len(ev.dates))
    if batched and hasattr(py, "predict_returns") and hasattr(py, "scaler"):
        return _batched_returns(py, ev)
    return _windowed_returns(py, ev)


def score_on_split(py: Any, ev: EvalSet, batched: bool = True) -> dict[str, float]:
    """USD scores (mae, rmse, mape, mase vs persistence, dir_acc) of one unwrapped pyfunc."""
    from pipelines.metrics import score_forecast

    return score_forecast(predict_test_returns(py, ev, batched), ev.close, ev.next_close)


def persistence_scores(ev: EvalSet) -> dict[str, float]:
    """The baseline on the same rows: tomorrow's close = today's (MASE exactly 1.0)."""
    from pipelines.metrics import score_forecast

    return score_forecast(np.zeros(len(ev.dates)), ev.close, ev.next_close)
