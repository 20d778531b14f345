"""Why a version serves or not: GET /models/{version}/decision and GET /models/compare."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from core import tags
from registry.records import decision_view
from serving.cache import ModelCache
from serving.comparison import SameDayScores
from serving.deps import get_cache
from serving.problems import problem_responses

router = APIRouter(tags=["registry"])


class Scores(BaseModel):
    """A model's scores on a set of test days (USD except MASE and coverage shares)."""

    mase: float | None = Field(None, description="median's MAE / persistence's (1 = persistence)")
    crps: float | None = Field(None, description="mean CRPS of the quantile forecast, USD")
    coverage_80: float | None = Field(None, description="share of days inside the 80% interval")
    coverage_95: float | None = Field(None, description="share of days inside the 95% interval")
    mae: float | None = Field(None, description="median's mean absolute error, USD")
    rmse: float | None = Field(None, description="median's root mean squared error, USD")


class RoleScores(Scores):
    """The scores of one model the rule compared: challenger, champion or baseline."""

    role: str
    version: int | None = None
    kind: str | None = None


class EvalWindow(BaseModel):
    """The test days a decision (or the comparison) scored every model on."""

    data_version: str | None = None
    dvc_md5: str | None = None
    rows: int | None = None
    first_day: str | None = None
    last_day: str | None = None


class DecisionView(BaseModel):
    """A version's latest applied decision, from its record in the registry's audit trail."""

    action: str = Field(description="first-champion | code-upgrade | promote | refuse | rollback")
    outcome: str = Field(description="first-champion | promoted | refused | restored")
    version: int | None = None
    decided_at: str | None = None
    actor: str | None = None
    reason: str = Field(description="why, with the numbers the rule compared")
    rule: str | None = Field(None, description="the promotion rule in words")
    champion_before: int | None = None
    champion_after: int | None = None
    eval: EvalWindow | None = None
    scores: list[RoleScores] = []
    dm_p_value: float | None = Field(None, description="Diebold-Mariano p-value (crps rule)")
    record_run_id: str | None = None


class DecisionResponse(BaseModel):
    """`GET /models/{version}/decision`."""

    name: str
    version: int
    aliases: list[str]
    decision: DecisionView | None = Field(description="null: no decision was ever taken on it")


class ComparedVersion(Scores):
    """One version scored on the comparison's days, with its latest decision."""

    version: int
    aliases: list[str] = []
    kind: str | None = None
    trained_on: str | None = Field(None, description="the dataset version it was fitted on")
    error: str | None = Field(None, description="why it has no scores (e.g. it does not load)")
    decision: DecisionView | None = None


class BaselineScores(Scores):
    """The reference baseline (persistence with calibrated empirical quantiles) on those days."""

    kind: str = "persistence"


class CompareResponse(BaseModel):
    """`GET /models/compare`: every version on the SAME test days (as promotion scores them)."""

    name: str
    eval: EvalWindow
    baseline: BaselineScores
    versions: list[ComparedVersion]


def same_day_scores(request: Request) -> SameDayScores:
    """The app's comparison cache (created on first use)."""
    scores: SameDayScores | None = getattr(request.app.state, "same_day_scores", None)
    if scores is None:
        scores = request.app.state.same_day_scores = SameDayScores()
    return scores


@router.get(
    "/models/{version}/decision",
    response_model=DecisionResponse,
    responses=problem_responses(404, 503),
)
def version_decision(
    version: Annotated[int, Path(ge=1, le=1_000_000)],
    cache: Annotated[ModelCache, Depends(get_cache)],
) -> dict[str, Any]:
    """The latest decision on a version: promoted / refused / first-champion / restored, when,
    by which rule, why (with the numbers) and the scores compared."""
    model_version = cache.registry_call(lambda: cache.registry.version(version))
    run_id = (model_version.tags or {}).get(tags.DECISION_RUN)
    decision = None
    if run_id:
        record = cache.registry_call(lambda: cache.registry.decision(run_id))
        decision = decision_view({**record, "record_run_id": run_id})
    aliases = cache.registry_call(cache.registry.aliases)
    return {
        "name": cache.registry.name,
        "version": version,
        "aliases": sorted(a for a, v in aliases.items() if v == version),
        "decision": decision,
    }


@router.get(
    "/models/compare", response_model=CompareResponse, responses=problem_responses(404, 503)
)
async def compare_versions(
    cache: Annotated[ModelCache, Depends(get_cache)],
    scores: Annotated[SameDayScores, Depends(same_day_scores)],
) -> dict[str, Any]:
    """Every version scored on the same days (the newest dataset version's test window, as
    promotion scores them), with its latest decision; cached per data version and version."""
    return await run_in_threadpool(scores.compare, cache)
