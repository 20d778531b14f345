"""Reading the MLflow registry: versions by number or alias, aliases, models, decision records."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from registry.errors import ModelLoadError, UnknownVersionError

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
RECORD_KIND = "promotion"  # coinflow.kind of the runs that hold decision/rollback records


@dataclass(frozen=True)
class Registry:
    """One registered model in one tracking store, and the experiment its records go to."""

    name: str
    client: Any  # mlflow.MlflowClient
    experiment_id: str


def open_registry(name: str) -> Registry:
    """Point MLflow at the configured store (env, see pipelines.tracking) and open `name`."""
    from mlflow import MlflowClient

    from pipelines.tracking import configure_mlflow

    experiment_id = configure_mlflow()
    return Registry(name, MlflowClient(), experiment_id)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def aliases(reg: Registry) -> dict[str, int]:
    """alias → version of the registered model ({} when it does not exist yet)."""
    try:
        model = reg.client.get_registered_model(reg.name)
    except Exception as exc:
        if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    return {alias: int(v) for alias, v in model.aliases.items()}


def versions(reg: Registry) -> list[Any]:
    """Every version of the registered model, newest first."""
    found = reg.client.search_model_versions(f"name = '{reg.name}'")
    return sorted(found, key=lambda mv: int(mv.version), reverse=True)


def get_version(reg: Registry, ref: int | str) -> Any:
    """A ModelVersion by number ("3") or alias ("champion"); unknown ones raise clearly."""
    ref = str(ref).strip()
    try:
        if ref.isdigit():
            return reg.client.get_model_version(reg.name, ref)
        return reg.client.get_model_version_by_alias(reg.name, ref)
    except Exception as exc:
        if _code(exc) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        known = ", ".join(f"v{mv.version}" for mv in reversed(_safe_versions(reg))) or "none"
        what = f"version {ref}" if ref.isdigit() else f"alias {ref!r}"
        raise UnknownVersionError(
            f"registered model {reg.name!r} has no {what} (versions: {known})"
        ) from exc


def _safe_versions(reg: Registry) -> list[Any]:
    try:
        return versions(reg)
    except Exception:
        return []


def load_python_model(reg: Registry, version: int) -> Any:
    """The unwrapped pyfunc (CoinflowModel) of one version; any failure is a ModelLoadError."""
    import mlflow

    uri = f"models:/{reg.name}/{version}"
    try:
        return mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except Exception as exc:
        raise ModelLoadError(
            f"{reg.name} v{version} failed to load ({uri}): {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc


def now_iso() -> str:
    """Current UTC time, ISO-8601 to the millisecond (sorts and is unique enough for names)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def record_event(reg: Registry, action: str, version: int, record: dict[str, Any]) -> str:
    """A 'promotion' MLflow run holding the decision JSON (promotion/decision-<time>.json)."""
    stamp = record.get("decided_at", now_iso()).replace(":", "").replace("+0000", "Z")
    run = reg.client.create_run(
        reg.experiment_id,
        run_name=f"{action}-{reg.name}-v{version}",
        tags={
            "coinflow.kind": RECORD_KIND,
            "coinflow.action": action,
            "coinflow.model_name": reg.name,
            "coinflow.model_version": str(version),
        },
    )
    run_id = str(run.info.run_id)
    try:
        reg.client.log_dict(run_id, record, f"promotion/decision-{stamp}.json")
        scores = {
            f"{role}_{k}": float(v)
            for role in ("challenger", "champion", "baseline")
            for k, v in (record.get(role) or {}).items()
            if k in ("mase", "mae", "rmse")
        }
        if scores:
            reg.client.log_batch(run_id, metrics=_metrics(scores))
    except Exception:
        reg.client.set_terminated(run_id, "FAILED")
        raise
    reg.client.set_terminated(run_id, "FINISHED")
    return run_id


def _metrics(values: dict[str, float]) -> list[Any]:
    import math
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, v, now, 0) for k, v in values.items() if math.isfinite(v)]


def read_record(reg: Registry, run_id: str) -> dict[str, Any]:
    """The decision JSON of a promotion record run."""
    import mlflow

    files = reg.client.list_artifacts(run_id, "promotion")
    if not files:
        raise UnknownVersionError(f"run {run_id} holds no promotion record")
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/{files[-1].path}")
    return dict(json.loads(text))
