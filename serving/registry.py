"""The API's view of the MLflow registry and tracking store; MLflow errors become typed ones."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

from serving.problems import (
    AliasNotSetError,
    NotFoundError,
    RegistryUnavailableError,
    UnknownVersionError,
)

T = TypeVar("T")
TAG = "coinflow."
_USERINFO = re.compile(r"://[^/\s]+@")


def _call(what: str, fn: Callable[[], T], not_found: Callable[[str], Exception] | None = None) -> T:
    """Run one MLflow call: RESOURCE_DOES_NOT_EXIST → `not_found`, anything else → 503."""
    from mlflow.exceptions import MlflowException

    try:
        return fn()
    except MlflowException as exc:
        if not_found is not None and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise not_found(exc.message) from exc
        raise RegistryUnavailableError(f"{what}: {_short(exc)}") from exc
    except Exception as exc:  # connection errors, timeouts, a broken store
        raise RegistryUnavailableError(f"{what}: {_short(exc)}") from exc


def redact(text: str) -> str:
    """Hide URL credentials (user:password@) in text shown to clients or logs."""
    return _USERINFO.sub("://***@", text)


def _short(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return redact(text.splitlines()[0][:300])


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds → ISO 8601 UTC."""
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat()


class Registry:
    """Registry look-ups for one registered model name."""

    def __init__(self, tracking_uri: str, registry_uri: str, model_name: str) -> None:
        from mlflow import MlflowClient

        self.uri = redact(registry_uri)  # for messages only
        self.name = model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)

    def aliases(self) -> dict[str, int]:
        """Alias → version of the model; empty when the model is not registered yet."""
        from mlflow.exceptions import MlflowException

        def fetch() -> dict[str, int]:
            try:
                model = self.client.get_registered_model(self.name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return {}
                raise
            return {alias: int(v) for alias, v in (model.aliases or {}).items()}

        return _call(f"reading the aliases of {self.name!r}", fetch)

    def alias_version(self, alias: str) -> int:
        """The version an alias points at; AliasNotSetError when it is not set."""
        versions = self.aliases()
        if alias not in versions:
            raise AliasNotSetError(
                f"alias {alias!r} is not set on registered model {self.name!r}"
                f" (set aliases: {sorted(versions) or 'none'})"
            )
        return versions[alias]

    def version(self, version: int) -> Any:
        """The ModelVersion entity; UnknownVersionError when it does not exist."""
        return _call(
            f"reading {self.name!r} version {version}",
            lambda: self.client.get_model_version(self.name, str(version)),
            lambda _: UnknownVersionError(
                f"registered model {self.name!r} has no version {version}"
            ),
        )

    def run_tags(self, run_id: str) -> dict[str, str]:
        """Tags of a training run (empty when the run is gone)."""
        try:
            return dict(self.client.get_run(run_id).data.tags)
        except Exception:  # lineage falls back to the version's own tags
            return {}

    def load(self, version: int) -> Any:
        """The pyfunc of one version (downloaded and loaded: ~2 s)."""
        import mlflow

        return _call(
            f"loading {self.name!r} version {version}",
            lambda: mlflow.pyfunc.load_model(f"models:/{self.name}/{version}"),
            lambda _: UnknownVersionError(
                f"registered model {self.name!r} has no version {version}"
            ),
        )

    def versions(self) -> list[Any]:
        """Every ModelVersion of the model, newest first."""
        escaped = self.name.replace("'", "\\'")
        found = _call(
            f"listing versions of {self.name!r}",
            lambda: self.client.search_model_versions(f"name='{escaped}'"),
        )
        return sorted(found, key=lambda v: int(v.version), reverse=True)

    def latest_sweep(self) -> dict[str, Any]:
        """The newest run tagged coinflow.kind=sweep and its trial runs, as plain dicts."""
        experiments = _call("listing experiments", lambda: self.client.search_experiments())
        ids = [e.experiment_id for e in experiments]
        parents = (
            _call(
                "searching sweep runs",
                lambda: self.client.search_runs(
                    ids,
                    "tags.`coinflow.kind` = 'sweep'",
                    order_by=["attributes.start_time DESC"],
                    max_results=1,
                ),
            )
            if ids
            else []
        )
        if not parents:
            raise NotFoundError("no sweep run found (runs tagged coinflow.kind=sweep)")
        parent = parents[0]
        trials = _call(
            "searching trial runs",
            lambda: self.client.search_runs(
                [parent.info.experiment_id],
                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                max_results=5000,
            ),
        )
        rows = [_trial(run) for run in trials]
        rows.sort(key=lambda t: (t["trial_number"] is None, t["trial_number"] or 0))
        tags, params = parent.data.tags, parent.data.params
        return {
            "parent_run_id": parent.info.run_id,
            "status": parent.info.status,
            "study_name": tags.get(TAG + "study_name")
            or params.get("study_name")
            or parent.info.run_name,
            "trials": rows,
        }


def _trial(run: Any) -> dict[str, Any]:
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    return {
        "run_id": run.info.run_id,
        "trial_number": _int(tags.get(TAG + "trial_number")),
        "status": run.info.status,
        "hidden_size": _int(params.get("hidden_size")),
        "num_layers": _int(params.get("num_layers")),
        "cell": params.get("cell"),
        "lookback": _int(params.get("lookback")),
        "lr": _float(params.get("lr")),
        "val_loss": _float(metrics.get("best_val_loss", metrics.get("val_loss"))),
        "test_mase": _float(metrics.get("test_mase")),
    }


def version_summary(mv: Any, aliases: list[str], loaded: bool) -> dict[str, Any]:
    """One /models entry from a ModelVersion and its version tags."""
    tags = mv.tags or {}
    return {
        "version": int(mv.version),
        "aliases": aliases,
        "kind": tags.get(TAG + "kind"),
        "run_id": tags.get(TAG + "run_id") or mv.run_id,
        "data_version": tags.get(TAG + "data_version"),
        "dvc_md5": tags.get(TAG + "dvc_md5"),
        "created_at": iso_ms(mv.creation_timestamp),
        "loaded": loaded,
        "metrics": {
            m: _float(tags.get(f"{TAG}{m}")) for m in ("test_mase", "test_mae", "test_rmse")
        },
    }
