"""A registered version as its own kernel sees it: config + shipped rows (+ weights) → forecasts.

Every coinflow model forecasts quantiles of the next day's log return from raw daily rows
(`return_quantiles`, calibrated with conformal offsets fitted on validation rows). On top of
that: `forecast` gives the close quantiles of every forecast day (day 1 exact, later days from
seeded sampled paths: forecast.forecast_quantiles), `next_day_quantiles` scores a whole window
of days at once, and `predict_frame` is the DataFrame face MLflow's pyfunc shows.

`load_artifacts` is the one reader of a packaged version's files (config.json, recent_rows.json,
weights.pt); pipelines.training.packaging writes them. Whoever serves a version calls the
`load_artifacts` of the kernel the version shipped, so a version always computes with the code
it was trained and scored with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .baselines import EmpiricalQuantiles, EwmaQuantiles
from .features import Scaler
from .forecast import (
    PATHS,
    forecast_quantiles,
    forecast_seed,
    input_frame,
    rows_to_arrays,
    windows_at,
)
from .quantiles import median_index

# What a caller may rely on in a kernel it did not ship with: bumped when the methods of
# PackagedModel or the signature of load_artifacts change (core.kernels checks it).
INTERFACE = 1
KINDS = ("torch", "persistence", "ewma")


def quantile_columns(levels: tuple[float, ...]) -> list[str]:
    """The output columns of `predict_frame` holding each level's close (q0.025 ...)."""
    return [f"q{level:g}" for level in levels]


class PackagedModel:
    """A version's config, its latest raw rows and its quantile model: ready to forecast."""

    def __init__(self, config: dict[str, Any], rows: list[dict[str, Any]], model: Any) -> None:
        self.config = config
        self.recent_rows = input_frame(rows)
        self.levels = tuple(float(t) for t in config["levels"])
        self.model = model

    @property
    def kind(self) -> str:
        """torch | persistence | ewma (the `coinflow.kind` it is registered as)."""
        return str(self.config.get("kind", "torch"))

    @property
    def rows_needed(self) -> int:
        """Raw daily rows one forecast reads: lookback windows need one extra day for returns."""
        return int(self.config["lookback"]) + 1

    @property
    def median(self) -> int:
        return median_index(self.levels)

    def recent_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The shipped rows as (dates datetime64[D], values float64)."""
        return rows_to_arrays(self.recent_rows)

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        """(n, rows_needed, columns) raw rows → (n, levels) calibrated log-return quantiles."""
        quantiles: np.ndarray = self.model.return_quantiles(windows)
        return quantiles

    def forecast(
        self, dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(forecast dates, USD close quantiles (horizon, levels)) after the latest rows; the
        same rows always give the same bands (the path sampler is seeded by the rows read)."""
        seed = forecast_seed(
            self.kind, self.config.get("trained_at"), horizon, values=values[-self.rows_needed :]
        )
        return forecast_quantiles(self, dates, values, horizon, PATHS, seed)

    def next_day_quantiles(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Next-day log-return quantiles for each row index in `ends` of a raw-row array."""
        return self.return_quantiles(windows_at(values, ends, self.rows_needed))

    def predict_frame(self, rows: pd.DataFrame, horizon: int = 1) -> pd.DataFrame:
        """Input rows (the pyfunc schema) → per forecast day: date, median close, each level."""
        dates, closes = self.forecast(*rows_to_arrays(input_frame(rows)), horizon)
        out = pd.DataFrame(closes, columns=quantile_columns(self.levels))
        out.insert(0, "close", closes[:, self.median])
        out.insert(0, "date", np.datetime_as_string(dates, unit="D"))
        return out


def offsets_of(config: dict[str, Any]) -> dict[float, float]:
    """The conformal offsets a config carries (nominal coverage → log-return widening)."""
    return {float(k): float(v) for k, v in config.get("calibration", {}).items()}


def build_model(config: dict[str, Any], weights: Mapping[str, Any] | None) -> Any:
    """The quantile model a config describes (torch needs its state_dict)."""
    kind = str(config.get("kind", "torch"))
    levels = tuple(float(t) for t in config["levels"])
    if kind == "persistence":
        return EmpiricalQuantiles(levels, int(config["window"]), offsets_of(config))
    if kind == "ewma":
        return EwmaQuantiles(
            levels, int(config["window"]), float(config["decay"]), offsets_of(config)
        )
    if kind != "torch":
        raise ValueError(f"unknown model kind {kind!r}: one of {KINDS}")
    if weights is None:
        raise ValueError("a torch model needs its weights")
    from .network import Forecaster, ModelConfig, NetQuantiles

    net = Forecaster(ModelConfig.from_dict(config["model"]))
    net.load_state_dict(dict(weights))
    scaler = Scaler(**config["scaler"])
    return NetQuantiles(net, scaler, int(config["lookback"]), offsets_of(config))


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
