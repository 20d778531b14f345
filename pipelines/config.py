"""Typed view of params.yaml: the single source of tunables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.paths import project
from pipelines.rules import OhlcRules

Cell = Literal["rnn", "lstm", "gru"]


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


class ValidateParams(_Strict):
    min_rows: int = Field(gt=0)
    max_rows: int = Field(gt=0)
    max_gap_days: int = Field(ge=1)
    max_abs_log_move: float = Field(gt=0)
    ohlc_tolerance: float = Field(ge=0, lt=0.1)
    max_wick: float = Field(gt=1)

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


class SearchSpace(_Strict):
    hidden_size: tuple[int, int]
    num_layers: tuple[int, int]
    lr: tuple[float, float]
    lookback: tuple[int, int]
    cell: list[Cell]


class SweepParams(_Strict):
    study_name: str
    n_trials: int = Field(ge=1)
    timeout_s: float = Field(gt=0)
    seed: int
    max_epochs: int = Field(ge=1)
    space: SearchSpace


class RegistryParams(_Strict):
    model_name: str
    metric: Literal["crps", "mase"]
    promote_margin: float = Field(ge=0, lt=1)
    max_mase: float = Field(gt=0)
    alpha: float = Field(gt=0, lt=1)
    coverage_tol: float = Field(gt=0, lt=1)


class Params(_Strict):
    data: DataParams
    validate_: ValidateParams = Field(alias="validate")
    features: FeatureParams
    train: TrainParams
    sweep: SweepParams
    registry: RegistryParams


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate params.yaml (default: the project root's); bad keys name themselves."""
    path = Path(path) if path is not None else project().params_file
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Params.model_validate(raw)
