"""Typed HTTP client for the coinflow serving API; failures become friendly typed errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

COMPARE_TIMEOUT_S = 120.0


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Limits(_Response):
    """The bounds the API sets on a forecast request (`GET /limits`)."""

    max_horizon: int
    max_rows: int
    history_days: int


class Point(_Response):
    """One dated BTC close in USD."""

    date: str
    close: float


class Calibration(_Response):
    """How a model's intervals were conformalised and how they scored at training time."""

    offsets: dict[str, float] = {}
    scores: dict[str, float] = {}


class Lineage(_Response):
    """Where a served model came from: registry version, run, data and code."""

    model_name: str
    version: int
    aliases: list[str] = []
    run_id: str | None = None
    data_version: str | None = None
    dvc_md5: str | None = None
    git_sha: str | None = None
    trained_at: str | None = None
    code_fingerprint: str | None = None
    kind: str | None = None
    levels: list[float] = []
    calibration: Calibration | None = None


class Interval(_Response):
    """A central interval of a forecast close (USD) meant to hold it `level` of the time."""

    level: float
    lower: float
    upper: float


class ForecastPoint(Point):
    """One forecast day: the median close and its central intervals."""

    intervals: list[Interval] = []


class Forecast(_Response):
    """`POST /predict`: the forecast, the actual closes it was made from, and lineage."""

    forecasts: list[ForecastPoint]
    history: list[Point]
    lineage: Lineage


class VersionMetrics(_Response):
    """Test-split scores recorded on a registered version."""

    test_mase: float | None = None
    test_mae: float | None = None
    test_rmse: float | None = None
    test_crps: float | None = None
    test_coverage_80: float | None = None
    test_coverage_95: float | None = None


class ModelVersion(_Response):
    """One registered version as `GET /models` lists it."""

    version: int
    aliases: list[str] = []
    kind: str | None = None
    run_id: str | None = None
    data_version: str | None = None
    dvc_md5: str | None = None
    created_at: str | int | float | None = None
    decision: str | None = None
    metrics: VersionMetrics = VersionMetrics()


class Models(_Response):
    """`GET /models`: the registered model, its aliases and versions."""

    name: str
    aliases: dict[str, int] = {}
    versions: list[ModelVersion] = []


class Scores(_Response):
    """Scores on a set of test days (USD except MASE and the coverage shares)."""

    mase: float | None = None
    crps: float | None = None
    coverage_80: float | None = None
    coverage_95: float | None = None
    mae: float | None = None
    rmse: float | None = None


class RoleScores(Scores):
    """One model a decision compared: challenger, champion or baseline."""

    role: str
    version: int | None = None
    kind: str | None = None


class EvalWindow(_Response):
    """The test days a decision (or the comparison) scored models on."""

    data_version: str | None = None
    dvc_md5: str | None = None
    rows: int | None = None
    first_day: str | None = None
    last_day: str | None = None


class Decision(_Response):
    """A version's latest decision: what happened, when, by which rule, why, the scores."""

    action: str
    outcome: str
    version: int | None = None
    decided_at: str | None = None
    actor: str | None = None
    reason: str = ""
    rule: str | None = None
    champion_before: int | None = None
    champion_after: int | None = None
    eval: EvalWindow | None = None
    scores: list[RoleScores] = []
    dm_p_value: float | None = None


class VersionDecision(_Response):
    """`GET /models/{version}/decision`."""

    name: str
    version: int
    aliases: list[str] = []
    decision: Decision | None = None


class ComparedVersion(Scores):
    """One version scored on the comparison's days, with its latest decision."""

    version: int
    aliases: list[str] = []
    kind: str | None = None
    trained_on: str | None = None
    error: str | None = None
    decision: Decision | None = None


class Comparison(_Response):
    """`GET /models/compare`: every version scored on the same test days."""

    name: str
    eval: EvalWindow
    baseline: Scores
    versions: list[ComparedVersion] = []


class Trial(_Response):
    """One trial (child run) of a sweep."""

    run_id: str | None = None
    trial_number: int | None = None
    status: str | None = None
    state: str | None = None  # COMPLETE | PRUNED | FAIL, as Optuna ended the trial
    hidden_size: int | None = None
    num_layers: int | None = None
    cell: str | None = None
    lookback: int | None = None
    lr: float | None = None
    val_loss: float | None = None
    objective: float | None = None  # what the sweep minimised (backtest skill, else val loss)
    test_mase: float | None = None
    test_crps: float | None = None


class LiveScore(_Response):
    """Live next-day scores of a version in one role over a window, as of a day."""

    version: int
    role: str
    window: str
    day: str
    n: int
    mase: float | None = None
    coverage_80: float | None = None
    coverage_95: float | None = None
    crps: float | None = None


class AliasMove(_Response):
    """A move of @champion from the registry's audit trail: a promotion or a rollback."""

    at: str
    action: str  # first-champion | code-upgrade | promote | rollback
    version: int  # the champion after the move


class Monitoring(_Response):
    """`GET /monitoring`: newest live scores per version/role/window, one window's series, and
    the champion's moves (an older API sends none)."""

    model_name: str
    computed_at: str | None = None
    latest: list[LiveScore] = []
    series: list[LiveScore] = []
    alias_moves: list[AliasMove] = []
    alias_moves_error: str | None = None


class Sweep(_Response):
    """`GET /sweeps/latest`: the latest sweep's parent run and its trials."""

    parent_run_id: str | None = None
    study_name: str | None = None
    trials: list[Trial] = []


@dataclass(frozen=True)
class ModelRef:
    """Which model to ask for: a registry alias or a version number."""

    kind: Literal["alias", "version"]
    value: str

    def query(self) -> dict[str, str]:
        """The `?alias=` / `?version=` query parameters of `POST /predict`."""
        return {self.kind: self.value}


class ApiClientError(Exception):
    """Base of the client's errors; `message` is safe to show to a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiUnavailable(ApiClientError):
    """The API could not be reached, or did not answer in time."""


class ApiError(ApiClientError):
    """The API answered with an error status or a body the UI cannot read."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


R = TypeVar("R", bound=BaseModel)


def error_detail(response: httpx.Response) -> str:
    """The human part of an error body: problem JSON `detail`/`title`, FastAPI 422 list, or text."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or body.get("message")
        if isinstance(detail, list):  # FastAPI request validation errors
            return "; ".join(
                str(item.get("msg", item)) if isinstance(item, dict) else str(item)
                for item in detail
            )
        if detail:
            return str(detail)
    return str(body)[:200]


class ApiClient:
    """Calls the serving API with timeouts; every failure is an `ApiClientError`."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0))
        )
        self._limits: Limits | None = None

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, model: type[R], **kwargs: Any) -> R:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiUnavailable(
                f"The forecast API at {self.base_url} did not answer within "
                f"{self.timeout_s:g} s ({type(exc).__name__})."
            ) from exc
        except httpx.TransportError as exc:
            raise ApiUnavailable(
                f"The forecast API at {self.base_url} is not reachable "
                f"({type(exc).__name__}). Is `coinflow serve` running?"
            ) from exc
        if response.is_error:
            raise ApiError(
                f"The API refused {method} {path} ({response.status_code}): "
                f"{error_detail(response)}",
                response.status_code,
            )
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise ApiError(
                f"The API's answer to {method} {path} is not what the UI expects: "
                f"{str(exc).splitlines()[0]}",
                response.status_code,
            ) from exc

    def models(self) -> Models:
        """Registered versions, aliases and their test metrics (`GET /models`)."""
        return self._call("GET", "/models", Models)

    def limits(self) -> Limits:
        """The API's request bounds (`GET /limits`), read once and kept."""
        if self._limits is None:
            self._limits = self._call("GET", "/limits", Limits)
        return self._limits

    def predict(self, ref: ModelRef, horizon: int) -> Forecast:
        """Forecast `horizon` days ahead with the model named by `ref` (`POST /predict`)."""
        most = self.limits().max_horizon
        if not 1 <= horizon <= most:
            raise ApiError(f"horizon must be between 1 and {most} days, got {horizon}")
        return self._call(
            "POST", "/predict", Forecast, params=ref.query(), json={"horizon": horizon}
        )

    def monitoring(self, window: str = "30d") -> Monitoring:
        """Live scores of served forecasts (`GET /monitoring`)."""
        return self._call("GET", "/monitoring", Monitoring, params={"window": window})

    def decision(self, version: int) -> VersionDecision:
        """A version's latest decision (`GET /models/{version}/decision`)."""
        return self._call("GET", f"/models/{int(version)}/decision", VersionDecision)

    def compare(self) -> Comparison:
        """Every version scored on the same test days (`GET /models/compare`)."""
        # The first call scores versions not scored on these days yet (~1 s each): wait longer.
        return self._call(
            "GET", "/models/compare", Comparison, timeout=max(self.timeout_s, COMPARE_TIMEOUT_S)
        )

    def latest_sweep(self) -> Sweep:
        """The latest sweep's trials (`GET /sweeps/latest`)."""
        return self._call("GET", "/sweeps/latest", Sweep)
