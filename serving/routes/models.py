"""GET /models (versions, aliases, key metrics) and GET /sweeps/latest (from MLflow runs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from registry.store import version_summary
from serving.cache import ModelCache
from serving.deps import get_cache
from serving.problems import problem_responses
from serving.schemas import ModelsResponse, SweepResponse

router = APIRouter(tags=["registry"])
# Read from each version's training run (the version tags carry MASE and CRPS only).
RUN_METRICS = ("test_mae", "test_rmse", "test_crps", "test_coverage_80", "test_coverage_95")


@router.get("/models", response_model=ModelsResponse, responses=problem_responses(503))
def list_models(cache: Annotated[ModelCache, Depends(get_cache)]) -> dict[str, object]:
    """Registered versions (newest first), aliases and test metrics from version tags."""
    aliases = cache.registry_call(cache.registry.aliases)
    versions = cache.registry_call(cache.registry.versions)
    runs = cache.registry_call(
        lambda: cache.registry.run_metrics([mv.run_id for mv in versions if mv.run_id])
    )
    loaded = set(cache.loaded_versions())
    entries = []
    for mv in versions:
        held = sorted(a for a, v in aliases.items() if v == int(mv.version))
        entry = version_summary(mv, held, int(mv.version) in loaded)
        metrics = runs.get(mv.run_id or "", {})
        entry["metrics"] |= {m: metrics.get(m) for m in RUN_METRICS if m in metrics}
        entries.append(entry)
    return {"name": cache.registry.name, "aliases": aliases, "versions": entries}


@router.get("/sweeps/latest", response_model=SweepResponse, responses=problem_responses(404, 503))
def latest_sweep(cache: Annotated[ModelCache, Depends(get_cache)]) -> dict[str, object]:
    """The newest Optuna sweep (parent run tagged coinflow.kind=sweep) and its trial runs."""
    return cache.registry_call(cache.registry.latest_sweep)
