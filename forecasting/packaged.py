"""A registered version as its own kernel sees it: config + shipped rows (+ weights) → forecasts.

Every coinflow model forecasts RAW quantiles of the next day's log return from raw daily rows;
PackagedModel owns their calibration (forecasting.calibration): config["calibration"] holds
the state the version ships (fitted by running the calibrator over its validation days, in day
order), and every forecast takes a state — that one by default, or a newer one the platform
advanced from its own rows (`advance`). On top of that: `forecast` gives the close quantiles
of every forecast day (day 1 exact, later days from seeded sampled paths with the same state:
forecast.forecast_quantiles), `calibrated_run` scores a run of days as they would have been
served (what backtests and re-scores use), and `predict_frame` is the DataFrame face MLflow's
pyfunc shows.

Configs of interface 1 carry split-conformal offsets ({"0.8": 0.01, ...}) instead of a state:
they load as a fixed calibration (calibration.fixed_state: step 0, realised closes never move
it), so such a config computes what it did.

`load_artifacts` is the one reader of a packaged version's files (config.json, recent_rows.json,
weights.pt); pipelines.training.packaging writes them. Whoever serves a version calls the
`load_artifacts` of the kernel the version shipped, so a version always computes with the code
it was trained and scored with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .baselines import EmpiricalQuantiles, EwmaQuantiles
from .calibration import CalibrationState, apply, load_state, run
from .features import CLOSE, Scaler
from .forecast import (
    PATHS,
    InputRowsError,
    QuantileModel,
    forecast_quantiles,
    forecast_seed,
    input_frame,
    rows_to_arrays,
    windows_at,
)
from .quantiles import median_index

# What a caller may rely on in a kernel it did not ship with: bumped when the methods of
# PackagedModel or the signature of load_artifacts change (core.kernels checks it).
INTERFACE = 2
KINDS = ("torch", "persistence", "ewma")


def quantile_columns(levels: tuple[float, ...]) -> list[str]:
    """The output columns of `predict_frame` holding each level's close (q0.025 ...)."""
    return [f"q{level:g}" for level in levels]


@dataclass(frozen=True)
class Calibrated:
    """A quantile model seen through one calibration state (a QuantileModel: what the path
    sampler reads, so every forecast day uses the same state)."""

    model: QuantileModel
    state: CalibrationState

    @property
    def levels(self) -> tuple[float, ...]:
        return self.model.levels

    @property
    def rows_needed(self) -> int:
        return self.model.rows_needed

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        return apply(self.model.return_quantiles(windows), self.state)


class PackagedModel:
    """A version's config, its latest raw rows, its quantile model and its shipped calibration
    state: ready to forecast."""

    def __init__(self, config: dict[str, Any], rows: list[dict[str, Any]], model: Any) -> None:
        self.config = config
        self.recent_rows = input_frame(rows)
        self.levels = tuple(float(t) for t in config["levels"])
        self.model = model
        self.state = self.load_state(config.get("calibration"))

    @property
    def kind(self) -> str:
        """torch | persistence | ewma (the `coinflow.kind` it is registered as)."""
        return str(self.config.get("kind", "torch"))

    @property
    def median_kind(self) -> str:
        """persistence (the median is today's close) | learned (the network's own)."""
        default = "learned" if self.kind == "torch" else "persistence"
        return str(self.config.get("median", default))

    @property
    def rows_needed(self) -> int:
        """Raw daily rows one forecast reads: lookback windows need one extra day for returns."""
        return int(self.config["lookback"]) + 1

    @property
    def median(self) -> int:
        return median_index(self.levels)

    def load_state(self, entry: Mapping[str, Any] | None) -> CalibrationState:
        """A calibration state as this kernel reads it: a `CalibrationState.to_dict` (stored by
        the platform, or shipped), or an interface-1 offsets mapping (fixed)."""
        state = load_state(entry, self.levels)
        if state.levels != self.levels:
            raise ValueError(f"a state for levels {state.levels}, not this model's {self.levels}")
        return state

    def recent_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The shipped rows as (dates datetime64[D], values float64)."""
        return rows_to_arrays(self.recent_rows)

    def calibrated(self, state: CalibrationState | None = None) -> Calibrated:
        """The quantile model calibrated with `state` (default: the shipped one)."""
        return Calibrated(self.model, self.state if state is None else state)

    def return_quantiles(
        self, windows: np.ndarray, state: CalibrationState | None = None
    ) -> np.ndarray:
        """(n, rows_needed, columns) raw rows → (n, levels) log-return quantiles calibrated with
        `state` (default: the shipped one)."""
        return self.calibrated(state).return_quantiles(windows)

    def forecast(
        self,
        dates: np.ndarray,
        values: np.ndarray,
        horizon: int,
        state: CalibrationState | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(forecast dates, USD close quantiles (horizon, levels)) after the latest rows, every
        day calibrated with `state`; the same rows and state always give the same bands (the
        path sampler is seeded by the rows read)."""
        seed = forecast_seed(
            self.kind, self.config.get("trained_at"), horizon, values=values[-self.rows_needed :]
        )
        return forecast_quantiles(self.calibrated(state), dates, values, horizon, PATHS, seed)

    def calibrated_run(
        self,
        dates: np.ndarray,
        values: np.ndarray,
        ends: np.ndarray,
        state: CalibrationState | None = None,
    ) -> tuple[np.ndarray, CalibrationState]:
        """Next-day log-return quantiles for each row index in `ends` (ascending) of raw rows on
        consecutive days, as they would have been served: each calibrated with the state after
        the closes before it only, starting from `state` (default: the shipped one), then that
        day's close folded in. (calibrated quantiles per end, the state after the last close
        the rows hold)."""
        state = self.state if state is None else state
        ends = np.asarray(ends, dtype="int64")
        dates = np.asarray(dates, dtype="datetime64[D]")
        if not len(ends):
            return np.empty((0, len(self.levels))), state
        first, last = ends.min() - self.rows_needed + 1, min(ends.max() + 1, len(values) - 1)
        if first >= 0 and (np.diff(dates[first : last + 1]).astype(int) != 1).any():
            raise InputRowsError("rows must be on consecutive calendar days, oldest first")
        raw = self.model.return_quantiles(windows_at(values, ends, self.rows_needed))
        if not np.isfinite(raw).all():
            raise InputRowsError("a forecast window holds missing or non-finite inputs")
        known = ends + 1 < len(values)
        realised = np.full(len(ends), np.nan)
        after = values[ends[known] + 1, CLOSE]
        realised[known] = np.log(after / values[ends[known], CLOSE])
        return run(state, raw, realised, dates[ends] + np.timedelta64(1, "D"))

    def advance(
        self,
        dates: np.ndarray,
        values: np.ndarray,
        through: str,
        state: CalibrationState | None = None,
    ) -> CalibrationState:
        """`state` (default: the shipped one) with every realised close after its as_of, up to
        and including day `through`, folded in from raw rows on consecutive days, in day order;
        rows after `through` are never read. Idempotent."""
        state = self.state if state is None else state
        dates = np.asarray(dates, dtype="datetime64[D]")
        target = dates + np.timedelta64(1, "D")  # the close each row's forecast is scored on
        todo = (target <= np.datetime64(through, "D")) & (np.arange(len(dates)) + 1 < len(dates))
        todo &= np.arange(len(dates)) >= self.rows_needed - 1
        if state.as_of is not None:
            todo &= target > np.datetime64(state.as_of, "D")
        ends = np.flatnonzero(todo)
        if state.step == 0 and len(ends):  # fixed: closes cannot move it (exp(0)), only its day
            return replace(state, as_of=str(target[ends[-1]]), updates=state.updates + len(ends))
        return self.calibrated_run(dates, values, ends, state)[1]

    def predict_frame(
        self, rows: pd.DataFrame, horizon: int = 1, state: CalibrationState | None = None
    ) -> pd.DataFrame:
        """Input rows (the pyfunc schema) → per forecast day: date, median close, each level
        (calibrated with `state`, default: the shipped one)."""
        dates, closes = self.forecast(*rows_to_arrays(input_frame(rows)), horizon, state)
        out = pd.DataFrame(closes, columns=quantile_columns(self.levels))
        out.insert(0, "close", closes[:, self.median])
        out.insert(0, "date", np.datetime_as_string(dates, unit="D"))
        return out


def build_model(config: dict[str, Any], weights: Mapping[str, Any] | None) -> Any:
    """The quantile model a config describes (torch needs its state_dict)."""
    kind = str(config.get("kind", "torch"))
    levels = tuple(float(t) for t in config["levels"])
    if kind == "persistence":
        return EmpiricalQuantiles(levels, int(config["window"]))
    if kind == "ewma":
        return EwmaQuantiles(levels, int(config["window"]), float(config["decay"]))
    if kind != "torch":
        raise ValueError(f"unknown model kind {kind!r}: one of {KINDS}")
    if weights is None:
        raise ValueError("a torch model needs its weights")
    from .network import Forecaster, ModelConfig, NetQuantiles

    net = Forecaster(ModelConfig.from_dict(config["model"]))
    net.load_state_dict(dict(weights))
    scaler = Scaler(**config["scaler"])
    return NetQuantiles(net, scaler, int(config["lookback"]))


def load_artifacts(artifacts: Mapping[str, str | Path]) -> PackagedModel:
    """A packaged version from its artifact files: `config`, `recent_rows` and, for a torch
    model, `weights` (a state_dict, loaded with weights_only: no pickle runs)."""
    config = json.loads(Path(artifacts["config"]).read_text())
    rows = json.loads(Path(artifacts["recent_rows"]).read_text())
    weights = None
    if "weights" in artifacts:
        import torch

        weights = torch.load(artifacts["weights"], weights_only=True, map_location="cpu")
    return PackagedModel(config, rows, build_model(config, weights))
