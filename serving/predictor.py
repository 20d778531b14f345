"""A loaded model version: its pyfunc, a numpy forecasting path, its latest rows and lineage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipelines.forecast import InputRowsError, check_arrays, forecast_arrays, rows_to_arrays

TAG = "coinflow."
CLOSE = 3  # btc_close in INPUT_COLUMNS


def points(dates: np.ndarray, closes: np.ndarray) -> list[dict[str, object]]:
    """[{"date": ISO, "close": float}] from parallel arrays."""
    return [
        {"date": d, "close": c}
        for d, c in zip(
            np.datetime_as_string(dates, unit="D").tolist(), closes.tolist(), strict=True
        )
    ]


class Forecast(Protocol):
    """(dates, values) → (forecast dates datetime64[D], closes USD)."""

    def __call__(
        self, dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]: ...


def torch_forecast(py: Any) -> Forecast:
    """The torch forecaster's arithmetic without pandas (pipelines.forecast.forecast_arrays)."""
    lookback = int(py.config["lookback"])

    def forecast(
        dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return forecast_arrays(py.predict_returns, py.scaler, lookback, dates, values, horizon)

    return forecast


def pyfunc_forecast(py: Any) -> Forecast:
    """Any other coinflow pyfunc (e.g. persistence): its own predict() on a DataFrame."""
    import pandas as pd

    from pipelines.features import INPUT_COLUMNS
    from pipelines.forecast import input_frame

    def forecast(
        dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        frame = pd.DataFrame(values, columns=INPUT_COLUMNS)
        frame.insert(0, "date", np.datetime_as_string(dates, unit="D"))
        out = py.predict(None, input_frame(frame), {"horizon": horizon})
        return (
            np.asarray(pd.to_datetime(out["date"]).values, dtype="datetime64[D]"),
            out["close"].to_numpy(dtype="float64"),
        )

    return forecast


def model_kind(py: Any, tags: dict[str, str]) -> str:
    """torch | persistence | ..., from the version tag, else the pyfunc config."""
    if tags.get(TAG + "kind"):
        return tags[TAG + "kind"]
    return str(py.config.get("kind") or ("torch" if "model" in py.config else "unknown"))


@dataclass
class LoadedModel:
    """One registry version held in memory, ready to forecast."""

    name: str
    version: int
    kind: str
    rows_needed: int
    lineage: dict[str, Any]
    forecast: Forecast
    recent_dates: np.ndarray
    recent_values: np.ndarray
    loaded_at: float = field(default_factory=time.time)
    _history: dict[int, list[dict[str, object]]] = field(default_factory=dict, repr=False)

    def recent_history(self, days: int) -> list[dict[str, object]]:
        """The latest `days` actual closes of the shipped rows (memoised: they never change)."""
        if days not in self._history:
            self._history[days] = (
                points(self.recent_dates[-days:], self.recent_values[-days:, CLOSE]) if days else []
            )
        return self._history[days]

    def predict(
        self, dates: np.ndarray | None, values: np.ndarray | None, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Forecast from explicit rows, or from the latest rows of the model's dataset version."""
        if dates is None or values is None:
            dates, values = self.recent_dates, self.recent_values
        elif len(values) != self.rows_needed:
            raise InputRowsError(
                f"version {self.version} needs exactly {self.rows_needed} "
                f"consecutive daily rows (lookback + 1), got {len(values)}"
            )
        out_dates, closes = self.forecast(dates, values, horizon)
        if not np.isfinite(closes).all():
            raise InputRowsError("the forecast is not finite: input prices are out of range")
        return out_dates, closes


def build_loaded_model(
    name: str,
    version: int,
    py: Any,
    mv_tags: dict[str, str],
    run_id: str | None,
    run_tags: dict[str, str],
) -> LoadedModel:
    """Wrap an unwrapped pyfunc; checks its shipped rows and warms it up with one forecast."""
    config = dict(py.config)
    kind = model_kind(py, mv_tags)
    fast = hasattr(py, "predict_returns") and hasattr(py, "scaler") and "lookback" in config
    forecast = torch_forecast(py) if fast else pyfunc_forecast(py)
    dates, values = rows_to_arrays(py.recent_rows)
    rows_needed = int(py.rows_needed)
    check_arrays(dates, values, rows_needed)

    def pick(key: str) -> Any:
        return mv_tags.get(TAG + key) or config.get(key) or run_tags.get(TAG + key)

    lineage = {
        "model_name": name,
        "version": version,
        "run_id": mv_tags.get(TAG + "run_id") or run_id,
        "data_version": pick("data_version"),
        "dvc_md5": pick("dvc_md5"),
        "git_sha": pick("git_sha"),
        "trained_at": pick("trained_at"),
        "kind": kind,
        "rows_needed": rows_needed,
    }
    model = LoadedModel(name, version, kind, rows_needed, lineage, forecast, dates, values)
    model.predict(None, None, 1)  # first call pays torch's lazy set-up, not a user request
    return model
