"""Typed view of params.yaml: the single source of tunables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.paths import project
from core.rules import OhlcRules
from forecasting.quantiles import check_levels

Cell = Literal["rnn", "lstm", "gru"]
Median = Literal["persistence", "learned"]  # forecasting.network.MEDIANS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Strict):
    version: str
    start: dt.date
    versions: dict[str, dt.date]

    @model_validator(mode="after")
    def _version_is_known(self) -> DataParams:
        if self.version not in self.versions:
            known = ", ".join(sorted(self.versions))
            raise ValueError(f"data.version {self.version!r} is not one of: {known}")
        return self

    @property
    def cutoff(self) -> dt.date:
        """Last day of the selected version."""
        return self.versions[self.version]


class DriftParams(_Strict):
    """The gate's drift report: newest window_days vs the training window, KS test."""

    window_days: int = Field(ge=20)
    alpha: float = Field(gt=0, lt=1)  # a p-value below it is drift
    action: Literal["warn", "fail"]


class ValidateParams(_Strict):
    min_rows: int = Field(gt=0)
    max_rows: int = Field(gt=0)
    max_gap_days: int = Field(ge=1)
    max_abs_log_move: float = Field(gt=0)
    ohlc_tolerance: float = Field(ge=0, lt=0.1)
    max_wick: float = Field(gt=1)
    # per exogenous series: most days in a row it may be carried forward (eth, gold)
    max_filled_run: dict[str, int]
    drift: DriftParams

    @field_validator("max_filled_run")
    @classmethod
    def _both_series(cls, runs: dict[str, int]) -> dict[str, int]:
        if set(runs) != {"eth", "gold"} or min(runs.values()) < 0:
            raise ValueError(f"max_filled_run needs eth and gold, each >= 0 days; got {runs}")
        return runs

    @property
    def ohlc(self) -> OhlcRules:
        """The OHLC rules these params set (the gate's and the API's)."""
        return OhlcRules(self.ohlc_tolerance, self.max_wick)


class FeatureParams(_Strict):
    train_frac: float = Field(gt=0, lt=1)
    val_frac: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _leaves_a_test_split(self) -> FeatureParams:
        if self.train_frac + self.val_frac >= 1:
            raise ValueError("features.train_frac + features.val_frac must be < 1 (test split)")
        return self


class TrainParams(_Strict):
    """One training run; the defaults live in params.yaml (`train`), nowhere else."""

    cell: Cell
    hidden_size: int = Field(ge=1)
    num_layers: int = Field(ge=1)
    bidirectional: bool
    dropout: float = Field(ge=0, lt=1)
    lr: float = Field(gt=0)
    lookback: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    patience: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    seed: int
    threads: int = Field(ge=1)
    levels: tuple[float, ...]
    precision: Literal["fp32", "bf16"]  # bf16: autocast for the training steps only
    median: Median  # persistence: the median is today's close, the network learns the spread
    calibration_step: float = Field(ge=0)  # forecasting.calibration's step (0: the raw spread)

    @field_validator("levels")
    @classmethod
    def _levels(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        return check_levels(levels)


class SearchSpace(_Strict):
    hidden_size: tuple[int, int]
    num_layers: tuple[int, int]
    lr: tuple[float, float]
    lookback: tuple[int, int]
    cell: list[Cell]
    median: list[Median]


class SweepParams(_Strict):
    study_name: str
    n_trials: int = Field(ge=1)
    timeout_s: float = Field(gt=0)
    seed: int
    max_epochs: int = Field(ge=1)
    folds: int = Field(ge=0)  # rolling-origin backtest folds per trial (0: the val loss decides)
    fold_days: int = Field(ge=1)
    fold_val_days: int = Field(ge=1)
    space: SearchSpace


class BaselineParams(_Strict):
    """The probabilistic baselines (forecasting.baselines)."""

    window: int = Field(ge=30)
    ewma_decay: float = Field(gt=0, lt=1)


class RegistryParams(_Strict):
    model_name: str
    metric: Literal["crps", "mase"]
    promote_margin: float = Field(ge=0, lt=1)
    max_mase: float = Field(gt=0)
    alpha: float = Field(gt=0, lt=1)
    coverage_tol: float = Field(gt=0, lt=1)


class MonitorParams(_Strict):
    window_days: Literal[7, 30, 90]  # one of the rolling windows live scores keep
    min_days: int = Field(ge=1)
    max_mase: float = Field(gt=0)
    coverage_tol: float = Field(gt=0, lt=1)
    auto_rollback: bool


class Params(_Strict):
    data: DataParams
    validate_: ValidateParams = Field(alias="validate")
    features: FeatureParams
    train: TrainParams
    sweep: SweepParams
    baselines: BaselineParams
    registry: RegistryParams
    monitor: MonitorParams


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate params.yaml (default: the project root's); bad keys name themselves."""
    path = Path(path) if path is not None else project().params_file
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Params.model_validate(raw)
