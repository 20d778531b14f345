"""Fair re-scoring: every candidate forecasts the same test days of the same dataset version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.forecast import InputRowsError
from pipelines.paths import Project, project
from registry.errors import EvalDataError

if TYPE_CHECKING:
    from registry.pyfunc import CoinflowModel


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


def load_eval_set(proj: Project | None = None) -> EvalSet:
    """Test split of the features stage's version, with that version's raw rows (md5-checked)."""
    from pipelines.features import INPUT_COLUMNS
    from pipelines.files import file_md5
    from pipelines.train import load_training_data

    proj = proj or project()
    if not (proj.features / "meta.json").is_file():
        raise EvalDataError(f"no features at {proj.features}: run the features stage first")
    data = load_training_data(proj.features)
    path = proj.version_file(data.version)
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


def _windowed_returns(py: CoinflowModel, ev: EvalSet) -> np.ndarray:
    """Any pyfunc: one predict per test day on its last `rows_needed` raw rows (slow, generic)."""
    from pipelines.forecast import input_frame

    needed = int(py.rows_needed)
    out = np.empty(len(ev.positions))
    for i, pos in enumerate(ev.positions):
        window = input_frame(ev.rows.iloc[pos - needed + 1 : pos + 1].reset_index())
        forecast = py.predict(None, window, params={"horizon": 1})
        out[i] = np.log(float(forecast["close"].iloc[0]) / ev.close[i])
    return out


def predict_test_returns(py: CoinflowModel, ev: EvalSet, batched: bool = True) -> np.ndarray:
    """Next-day log returns a model forecasts for each test day (all days in one batch, or
    one pyfunc predict per day: the two agree, which the tests check)."""
    if not batched:
        return _windowed_returns(py, ev)
    try:
        return py.next_day_returns(ev.rows.to_numpy(dtype="float64"), ev.positions)
    except InputRowsError as exc:
        raise EvalDataError(f"cannot score on {ev.version}'s test days: {exc}") from exc


def score_on_split(py: CoinflowModel, ev: EvalSet, batched: bool = True) -> dict[str, float]:
    """USD scores (mae, rmse, mape, mase vs persistence, dir_acc) of one unwrapped pyfunc."""
    from pipelines.metrics import score_forecast

    return score_forecast(predict_test_returns(py, ev, batched), ev.close, ev.next_close)


def persistence_scores(ev: EvalSet) -> dict[str, float]:
    """The baseline on the same rows: tomorrow's close = today's (MASE exactly 1.0)."""
    from pipelines.metrics import score_forecast

    return score_forecast(np.zeros(len(ev.dates)), ev.close, ev.next_close)
