"""Request and response models of the API (pydantic v2, with bounds)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.forecast import MAX_HORIZON

MAX_ROWS = 1000
ALIAS_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Price = Annotated[float, Field(gt=0, le=1e9, description="USD")]


class Row(BaseModel):
    """One day of raw inputs (pipelines.features.INPUT_COLUMNS): USD prices, BTC volume."""

    model_config = ConfigDict(allow_inf_nan=False, extra="ignore")

    date: dt.date
    btc_open: Price
    btc_high: Price
    btc_low: Price
    btc_close: Price
    btc_volume: float = Field(ge=0, le=1e15)
    eth_close: Price
    gold_close: Price
    gold_filled: int = Field(ge=0, le=1, description="1 where gold did not trade that day")


class PredictRequest(BaseModel):
    """Forecast `horizon` days ahead from `rows`, or from the model's latest dataset rows."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"horizon": 7}]})

    horizon: int = Field(default=1, ge=1, le=MAX_HORIZON, description="days ahead, recursive")
    rows: list[Row] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ROWS,
        description="consecutive daily rows, oldest first: exactly the model's rows_needed "
        "(its lookback + 1; every response's lineage states it)",
    )

    @model_validator(mode="after")
    def _consecutive_days(self) -> PredictRequest:
        rows = self.rows or []
        for before, after in zip(rows, rows[1:], strict=False):
            if (after.date - before.date).days != 1:
                raise ValueError(
                    f"rows must be on consecutive calendar days, oldest first: "
                    f"{before.date} is followed by {after.date}"
                )
        return self


class Point(BaseModel):
    """A dated BTC close in USD."""

    date: str = Field(description="ISO date", examples=["2024-11-01"])
    close: float


class Lineage(BaseModel):
    """Where the forecast came from: registry version, training run, data version, code."""

    model_name: str
    version: int
    aliases: list[str]
    run_id: str | None
    data_version: str | None
    dvc_md5: str | None
    git_sha: str | None
    trained_at: str | None
    code_fingerprint: str | None = Field(description="model code the version was built with")
    kind: str
    rows_needed: int


class PredictResponse(BaseModel):
    """Forecast closes, the actual closes they were made from, and the model's lineage."""

    forecasts: list[Point]
    history: list[Point]
    lineage: Lineage


class VersionMetrics(BaseModel):
    """Test-window scores of the version's training run (MASE is also a version tag)."""

    test_mase: float | None = None
    test_mae: float | None = None
    test_rmse: float | None = None


class VersionInfo(BaseModel):
    """One registered version with its aliases and key metrics."""

    version: int
    aliases: list[str]
    kind: str | None
    run_id: str | None
    data_version: str | None
    dvc_md5: str | None
    created_at: str | None
    metrics: VersionMetrics
    decision: str | None = Field(description="outcome of the latest decision on this version")
    loaded: bool = Field(description="held in this API's model cache")


class ModelsResponse(BaseModel):
    """The registered model's versions, newest first, and its alias → version map."""

    name: str
    aliases: dict[str, int]
    versions: list[VersionInfo]


class Trial(BaseModel):
    """One Optuna trial run of a sweep."""

    run_id: str
    trial_number: int | None
    status: str = Field(description="the MLflow run status (KILLED for a pruned trial)")
    state: str | None = Field(description="how Optuna ended the trial: COMPLETE, PRUNED, FAIL")
    hidden_size: int | None
    num_layers: int | None
    cell: str | None
    lookback: int | None
    lr: float | None
    val_loss: float | None
    test_mase: float | None


class SweepResponse(BaseModel):
    """The latest sweep (parent run tagged coinflow.kind=sweep) and its trials."""

    parent_run_id: str
    study_name: str | None
    status: str
    trials: list[Trial]


class HealthResponse(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]
    uptime_s: float


class RegistryState(BaseModel):
    """What the API last heard from the registry."""

    reachable: bool
    last_ok: str | None
    last_error: str | None


class ReadyResponse(BaseModel):
    """Readiness, with every degraded state spelled out in `reasons`."""

    status: Literal["ready", "degraded", "not_ready"]
    startup: Literal["loading", "done"] = Field(
        description="whether the first background load attempt has ended"
    )
    model_name: str
    default_alias: str
    serving_version: int | None
    aliases: dict[str, int]
    loaded_versions: list[int]
    registry: RegistryState
    reasons: list[str]


class ReloadResponse(BaseModel):
    """Alias moves the reload applied: {alias: {"from": old, "to": new}}."""

    changed: dict[str, dict[str, int | None]]
    aliases: dict[str, int]
