"""The one read/write layer over the MLflow registry and tracking store.

Every MLflow call of the registry (and of the serving API, which wraps this module) goes
through `mlflow_call`, so "not found" and "not reachable" are typed the same way everywhere.
Decision records are `promotion` runs holding a JSON file; a record is RUNNING while its
decision is being applied and FINISHED once it is (see registry.aliases).
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from core import tags
from core.tracking import redact
from registry.errors import (
    AliasNotSetError,
    ModelLoadError,
    RegistryUnavailableError,
    UnknownVersionError,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from forecasting.packaged import PackagedModel
log = logging.getLogger(__name__)
T = TypeVar("T")
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
MODEL_DESCRIPTION = (
    "Next-day BTC close forecasts (USD; ETH and gold as extra features), trained by coinflow's "
    "Optuna sweeps on DVC-versioned data that passed the Great Expectations gate. `champion` is "
    "what the API serves: a challenger replaces it only when `coinflow registry promote` "
    "re-scores both on the newest version's test window and the promotion rule says so "
    "(recorded in each version's description). `previous-champion` is the version it replaced."
)


@dataclass(frozen=True)
class Registry:
    """One registered model in one store; `experiment_id` is where decision records go."""

    name: str
    client: MlflowClient
    experiment_id: str | None = None


def open_registry(name: str) -> Registry:
    """The pipeline side: point MLflow at the configured store (creating the experiment)."""
    from mlflow import MlflowClient

    from core.tracking import configure_mlflow

    experiment_id = configure_mlflow()
    return Registry(name, MlflowClient(), experiment_id)


def connect(name: str, tracking_uri: str, registry_uri: str) -> Registry:
    """A read-mostly handle (the serving API): nothing is created in the store."""
    from mlflow import MlflowClient

    return Registry(name, MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri))


def error_code(exc: BaseException) -> str:
    """MLflow's error code of an exception ('' when it has none)."""
    return str(getattr(exc, "error_code", ""))


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return redact(text.splitlines()[0][:300])


def mlflow_call(
    what: str, fn: Callable[[], T], not_found: Callable[[str], Exception] | None = None
) -> T:
    """One MLflow call: 'does not exist' → `not_found`, any other failure → unavailable."""
    from mlflow.exceptions import MlflowException

    try:
        return fn()
    except MlflowException as exc:
        if not_found is not None and exc.error_code in NOT_FOUND:
            raise not_found(exc.message) from exc
        raise RegistryUnavailableError(f"{what}: {_short(exc)}") from exc
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise RegistryUnavailableError(f"{what}: {_short(exc)}") from exc
    except Exception as exc:  # a database driver's own errors (e.g. SQLAlchemy's), raw
        if type(exc).__module__.split(".")[0] in ("sqlalchemy", "requests", "urllib3"):
            raise RegistryUnavailableError(f"{what}: {_short(exc)}") from exc
        raise


# --- reading ------------------------------------------------------------------------------
def aliases(registry: Registry) -> dict[str, int]:
    """alias → version of the registered model ({} when it does not exist yet)."""

    def fetch() -> dict[str, int]:
        from mlflow.exceptions import MlflowException

        try:
            model = registry.client.get_registered_model(registry.name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        return {alias: int(v) for alias, v in (model.aliases or {}).items()}

    return mlflow_call(f"reading the aliases of {registry.name!r}", fetch)


def versions(registry: Registry) -> list[ModelVersion]:
    """Every version of the registered model, newest first."""
    escaped = registry.name.replace("'", "\\'")
    found = mlflow_call(
        f"listing versions of {registry.name!r}",
        lambda: registry.client.search_model_versions(f"name = '{escaped}'"),
    )
    return sorted(found, key=lambda model_version: int(model_version.version), reverse=True)


def _known(registry: Registry) -> str:
    try:
        return (
            ", ".join(f"v{model_version.version}" for model_version in reversed(versions(registry)))
            or "none"
        )
    except RegistryUnavailableError:
        return "unknown"


def get_version(registry: Registry, ref: int | str) -> ModelVersion:
    """A ModelVersion by number ("3") or alias ("champion"); unknown ones raise clearly."""
    ref = str(ref).strip()
    if ref.isdigit():
        return mlflow_call(
            f"reading {registry.name!r} version {ref}",
            lambda: registry.client.get_model_version(registry.name, ref),
            lambda _: UnknownVersionError(
                f"registered model {registry.name!r} has no version {ref} "
                f"(versions: {_known(registry)})"
            ),
        )
    return mlflow_call(
        f"reading alias {ref!r} of {registry.name!r}",
        lambda: registry.client.get_model_version_by_alias(registry.name, ref),
        lambda _: AliasNotSetError(
            f"alias {ref!r} is not set on registered model {registry.name!r} (set aliases: "
            f"{', '.join(sorted(aliases(registry))) or 'none'})"
        ),
    )


def run_tags(registry: Registry, run_id: str | None) -> dict[str, str]:
    """Tags of a run ({} when there is none or it is gone)."""
    if not run_id:
        return {}
    try:
        run = mlflow_call(
            f"reading run {run_id}", lambda: registry.client.get_run(run_id), KeyError
        )
    except (KeyError, RegistryUnavailableError):
        return {}
    return dict(run.data.tags)


def load_packaged(registry: Registry, version: int) -> PackagedModel:
    """One version, ready to forecast, computing with the kernel it shipped (core.kernels): the
    running kernel when the fingerprints agree, else the version's own copy.

    A registry that does not answer is RegistryUnavailableError; a version that answers but
    cannot be loaded (missing or corrupt artifacts, a kernel that cannot be imported, not a
    coinflow model) is ModelLoadError naming the version, its kernel and the reason.
    """
    import mlflow
    import yaml

    from core.kernels import packaged_module

    model_version = get_version(registry, version)
    fingerprint = (model_version.tags or {}).get(tags.CODE) or "(unrecorded)"
    uri = f"models:/{registry.name}/{version}"
    try:
        with tempfile.TemporaryDirectory(prefix="coinflow-version-") as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
            conf = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
            code = local / conf["code"] / "forecasting" if conf.get("code") else None
            kernel = packaged_module(fingerprint, code)
            artifacts = {k: local / v["path"] for k, v in conf.get("artifacts", {}).items()}
            model: PackagedModel = kernel.load_artifacts(artifacts)
            model.rows_needed  # noqa: B018  (a coinflow model: its config is read)
    except Exception as exc:
        raise ModelLoadError(
            f"{registry.name} v{version} failed to load (kernel {fingerprint}): "
            f"{type(exc).__name__}: {_short(exc)}",
            version=int(version),
            fingerprint=fingerprint,
        ) from exc
    return model


# --- time and actor -----------------------------------------------------------------------
def iso_ms(millis: int | None) -> str | None:
    """An MLflow millisecond timestamp as ISO-8601 UTC (seconds); None when missing."""
    if not millis:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="seconds")


def now_iso() -> str:
    """Current UTC time, ISO-8601 to the millisecond (sorts, and unique enough for names)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def actor() -> str:
    """Who took a decision: user@host (recorded with every alias move)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# --- writing ------------------------------------------------------------------------------
def describe_model(registry: Registry) -> None:
    """Create the registered model (once) with a description of what it is and how it moves."""
    from mlflow.exceptions import MlflowException

    try:
        model = registry.client.get_registered_model(registry.name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            registry.client.create_registered_model(registry.name, description=MODEL_DESCRIPTION)
        except MlflowException as created:  # by a concurrent first registration, meanwhile
            if created.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return
    if not model.description:
        registry.client.update_registered_model(registry.name, description=MODEL_DESCRIPTION)
