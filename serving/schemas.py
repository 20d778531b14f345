"""Request and response models of the API (pydantic v2, with bounds)."""

from __future__ import annotations

import datetime as dt
import operator
import re
from functools import lru_cache
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from core.rules import MAX_PRICE, MAX_VOLUME, RULES, OhlcRules, ohlc_slacks
from forecasting.features import CLOSE, HIGH, INPUT_COLUMNS, LOW, OPEN
from forecasting.forecast import MAX_HORIZON

MAX_ROWS = 1000
ALIAS_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
FIRST_DAY = dt.date(2009, 1, 3)  # Bitcoin's genesis block: no BTC price is older
# Numbers must be JSON numbers (strict: "63205.1" is refused, not coerced), finite, bounded.
Price = Annotated[float, Field(gt=0, le=MAX_PRICE, strict=True, description="USD")]
MAX_LEVELS = 16  # more interval levels than any model forecasts


def _digits_only(value: object) -> object:
    """A version in a query is written in digits: "1.0", " 1" or "+1" are refused, not read
    as 1 (pydantic's int parsing would accept them)."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]+", value):
        raise ValueError(f"must be a whole number written in digits, such as 3 (got {value!r})")
    return value


def _split_commas(value: object) -> object:
    """?levels=0.8,0.95 and ?levels=0.8&levels=0.95 are the same request (at most MAX_LEVELS)."""
    if isinstance(value, list):
        value = [part for item in value for part in str(item).split(",")]
        if len(value) > MAX_LEVELS:
            raise ValueError(f"at most {MAX_LEVELS} levels (got {len(value)})")
    return value


# Query parameters of /predict (the validators wrap the whole optional type: FastAPI must
# still see a list to read repeated parameters); the OpenAPI schema shows types and bounds.
Level = Annotated[float, Field(gt=0, lt=1)]
VersionQuery = Annotated[
    Annotated[int, Field(ge=1, le=2**31 - 1)] | None, BeforeValidator(_digits_only)
]
# (FastAPI reads repeated parameters only into a plain list: the count is checked above.)
LevelsQuery = Annotated[list[Level] | None, BeforeValidator(_split_commas)]


@lru_cache(maxsize=1)
def ohlc_rules() -> OhlcRules:
    """The data gate's OHLC rules (params.yaml `validate`): request rows obey the same ones."""
    from core.params import load_params

    return load_params().validate_.ohlc


class Row(BaseModel):
    """One day of raw inputs (forecasting.features.INPUT_COLUMNS): USD prices, BTC volume."""

    model_config = ConfigDict(allow_inf_nan=False, extra="ignore")

    date: dt.date = Field(description=f"ISO date, from {FIRST_DAY} to tomorrow (UTC)")
    btc_open: Price
    btc_high: Price
    btc_low: Price
    btc_close: Price
    btc_volume: float = Field(ge=0, le=MAX_VOLUME, strict=True)
    eth_close: Price
    gold_close: Price
    gold_filled: float = Field(
        strict=True, description="1 where gold did not trade that day, else 0"
    )

    @field_validator("gold_filled")
    @classmethod
    def _flag(cls, value: float) -> float:
        if value not in (0, 1):
            raise ValueError(f"gold_filled must be 0 or 1, got {value}")
        return value


_row_values = operator.attrgetter(*INPUT_COLUMNS)  # one row's numbers, as a tuple
_EPOCH = dt.date(1970, 1, 1).toordinal()  # day 0 of datetime64[D]


def row_arrays(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    """(dates, values): the rows as the kernel reads them (values in INPUT_COLUMNS order).
    Dates go through day numbers: NumPy converts date objects one by one, ~10x slower."""
    days = np.array([r.date.toordinal() for r in rows], dtype="int64") - _EPOCH
    values = np.array([_row_values(r) for r in rows], dtype="float64")
    return days.astype("datetime64[D]"), values


class PredictRequest(BaseModel):
    """Forecast `horizon` days ahead from `rows`, or from the model's latest dataset rows."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"horizon": 7}]})

    horizon: int = Field(
        default=1, ge=1, le=MAX_HORIZON, strict=True, description="days ahead, recursive"
    )
    rows: list[Row] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ROWS,
        description="consecutive daily rows, oldest first: exactly the model's rows_needed "
        "(its lookback + 1; every response's lineage states it)",
    )
    # The rows as arrays, built once by the check below: the forecast reads these.
    _inputs: tuple[np.ndarray, np.ndarray] | None = PrivateAttr(default=None)

    def inputs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The request rows as (dates, values) arrays; None when it sent no rows."""
        if self._inputs is None and self.rows:
            self._inputs = row_arrays(self.rows)  # a request built without validation
        return self._inputs

    @model_validator(mode="after")
    def _rows_follow_the_rules(self) -> PredictRequest:
        """Sane dates, consecutive days, and the gate's OHLC rules (checked on all rows at
        once, on the arrays the forecast then reads: a per-row check would cost more than the
        forecast)."""
        rows = self.rows or []
        if not rows:
            return self
        latest = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
        # The first and last days bound every day: consecutive days are checked below.
        for day in (rows[0].date, rows[-1].date):
            if not FIRST_DAY <= day <= latest:
                raise ValueError(
                    f"date {day} is outside {FIRST_DAY} .. {latest}: no BTC price then"
                )
        dates, values = self._inputs = row_arrays(rows)
        slacks = ohlc_slacks(
            values[:, OPEN], values[:, HIGH], values[:, LOW], values[:, CLOSE], ohlc_rules()
        )
        stacked = np.array(list(slacks.values()))  # (rule, row); a NaN slack is broken too
        if not stacked.min() >= 0:
            broken = np.flatnonzero(~np.all(stacked >= 0, axis=0))
            row = rows[int(broken[0])]
            names = [RULES[k] for k, v in slacks.items() if not v[broken[0]] >= 0]
            raise ValueError(f"row {row.date} breaks the OHLC rules: {'; '.join(names)}")
        gaps = np.flatnonzero(np.diff(dates.view("int64")) != 1)
        if len(gaps):
            before, after = rows[int(gaps[0])], rows[int(gaps[0]) + 1]
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
    levels: list[float] = Field(description="the quantile levels the model forecasts")
    calibration: Calibration


class Interval(BaseModel):
    """A central interval of the forecast close: it should hold the close `level` of the time."""

    level: float = Field(description="nominal coverage, e.g. 0.8", examples=[0.8])
    lower: float = Field(description="USD")
    upper: float = Field(description="USD")


class ForecastPoint(BaseModel):
    """One forecast day: the median close (the point forecast) and its intervals (USD)."""

    date: str = Field(description="ISO date", examples=["2024-11-01"])
    close: float = Field(description="median forecast close, USD")
    intervals: list[Interval]


class Calibration(BaseModel):
    """How this answer's intervals were calibrated, and how the version scored when trained."""

    method: str = Field(
        description="adaptive conformal (a state updated by every realised close) or fixed "
        "conformal offsets (a version built before adaptive calibration)"
    )
    source: str = Field(
        description="stored: the newest state `coinflow monitor score` wrote; shipped: the "
        "version's own initial state; fixed: its offsets"
    )
    as_of: str | None = Field(None, description="the last realised close the state folded in")
    digest: str | None = Field(None, description="the state's digest (replay finds it by it)")
    updates: int | None = Field(None, description="realised closes the state has folded in")
    multipliers: dict[str, float] = Field(
        default_factory=dict, description="the state's interval multipliers per quantile level"
    )
    offsets: dict[str, float] = Field(
        description="fixed split-conformal widening (log-return units) per nominal coverage "
        "(older versions only)"
    )
    scores: dict[str, float] = Field(description="validation/test coverage, width and CRPS")


class PredictResponse(BaseModel):
    """Forecast closes with intervals, the actual closes they follow, and the model's lineage."""

    prediction_id: str | None = Field(
        None, description="id of this answer in the prediction log (null: logging is off)"
    )
    forecasts: list[ForecastPoint]
    history: list[Point]
    lineage: Lineage


class VersionMetrics(BaseModel):
    """Test-window scores of the version's training run (MASE is also a version tag)."""

    test_mase: float | None = None
    test_mae: float | None = None
    test_rmse: float | None = None
    test_crps: float | None = Field(None, description="CRPS in USD (lower is better)")
    test_coverage_80: float | None = Field(None, description="share of days in the 80% band")
    test_coverage_95: float | None = Field(None, description="share of days in the 95% band")


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
    objective: float | None = Field(
        None, description="what the sweep minimised: mean backtest fold skill, else val loss"
    )
    test_mase: float | None
    test_crps: float | None = None


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


class LimitsResponse(BaseModel):
    """The bounds a /predict request must keep (clients read them here, never hard-code them)."""

    max_horizon: int = Field(description="the largest `horizon` (days ahead)")
    max_rows: int = Field(description="the most `rows` one request may send")
    history_days: int = Field(description="actual closes returned with each forecast")


class RegistryState(BaseModel):
    """What the API last heard from the registry."""

    reachable: bool
    last_ok: str | None
    last_error: str | None


class LiveScore(BaseModel):
    """Live next-day scores of one version in one role over a trailing window, as of `day`."""

    version: int
    role: str = Field(description="the alias it answered for, 'version', or 'shadow'")
    window: str = Field(description="7d | 30d | 90d | since-promotion")
    day: dt.date
    n: int = Field(description="scored forecast days in the window")
    mae: float | None
    persistence_mae: float | None
    mase: float | None
    coverage_80: float | None
    coverage_95: float | None
    crps: float | None


class AliasMove(BaseModel):
    """One move of @champion from the registry's audit trail (a finished decision record)."""

    at: dt.datetime = Field(description="when the record was written (UTC)")
    action: Literal["first-champion", "code-upgrade", "promote", "rollback"]
    version: int = Field(description="the champion after the move")
    record_run_id: str


class MonitoringResponse(BaseModel):
    """What `coinflow monitor score` last computed: each version's newest scores per role and
    window, and the day-by-day series of the window asked for; with the champion's moves."""

    model_name: str
    computed_at: dt.datetime | None
    latest: list[LiveScore]
    series: list[LiveScore]
    alias_moves: list[AliasMove] = Field(
        default_factory=list, description="promotions and rollbacks of @champion, oldest first"
    )
    alias_moves_error: str | None = Field(
        None, description="why the audit trail could not be read (the scores still are)"
    )


class LogState(BaseModel):
    """The prediction log's writer: records written and dropped, queue depth, last error."""

    written: int
    dropped: int
    depth: int
    healthy: bool
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
    prediction_log: LogState | None = Field(None, description="null: logging is off")
    reasons: list[str]


class ReloadResponse(BaseModel):
    """Alias moves the reload applied: {alias: {"from": old, "to": new}}."""

    changed: dict[str, dict[str, int | None]]
    aliases: dict[str, int]
