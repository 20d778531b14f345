"""GET /models (versions, aliases, key metrics) and GET /sweeps/latest (from MLflow runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends

from core import tags
from core.tag_values import as_float
from registry.store import iso_ms
from serving.cache import ModelCache
from serving.deps import get_cache
from serving.problems import problem_responses
from serving.schemas import ModelsResponse, SweepResponse

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

router = APIRouter(tags=["registry"])
# Read from each version's training run (the version tags carry MASE and CRPS only).
RUN_METRICS = ("test_mae", "test_rmse", "test_crps", "test_coverage_80", "test_coverage_95")


def version_summary(model_version: ModelVersion, held: list[str], loaded: bool) -> dict[str, Any]:
    """One /models entry from a ModelVersion and its version tags."""
    version_tags = model_version.tags or {}
    return {
        "version": int(model_version.version),
        "aliases": held,
        "kind": version_tags.get(tags.KIND),
        "run_id": model_version.run_id,
        "data_version": version_tags.get(tags.DATA_VERSION),
        "dvc_md5": version_tags.get(tags.DVC_MD5),
        "created_at": iso_ms(model_version.creation_timestamp),
        "loaded": loaded,
        "decision": version_tags.get(tags.DECISION),
        "metrics": {
            "test_mase": as_float(version_tags.get(tags.TEST_MASE)),
            "test_crps": as_float(version_tags.get(tags.TEST_CRPS)),
        },
    }


@router.get("/models", response_model=ModelsResponse, responses=problem_responses(503))
def list_models(cache: Annotated[ModelCache, Depends(get_cache)]) -> dict[str, object]:
    """Registered versions (newest first), aliases and test metrics from version tags."""
    aliases = cache.registry_call(cache.registry.aliases)
    versions = cache.registry_call(cache.registry.versions)
    runs = cache.registry_call(
        lambda: cache.registry.run_metrics(
            [model_version.run_id for model_version in versions if model_version.run_id]
        )
    )
    loaded = set(cache.loaded_versions())
    entries = []
    for model_version in versions:
        held = sorted(a for a, v in aliases.items() if v == int(model_version.version))
        entry = version_summary(model_version, held, int(model_version.version) in loaded)
        metrics = runs.get(model_version.run_id or "", {})
        entry["metrics"] |= {m: metrics.get(m) for m in RUN_METRICS if m in metrics}
        entries.append(entry)
    return {"name": cache.registry.name, "aliases": aliases, "versions": entries}


@router.get("/sweeps/latest", response_model=SweepResponse, responses=problem_responses(404, 503))
def latest_sweep(cache: Annotated[ModelCache, Depends(get_cache)]) -> dict[str, object]:
    """The newest Optuna sweep (parent run tagged coinflow.kind=sweep) and its trial runs."""
    return cache.registry_call(cache.registry.latest_sweep)
