"""The one read/write layer over the MLflow registry and tracking store.

Every MLflow call of the registry (and of the serving API, which wraps this module) goes
through `mlflow_call`, so "not found" and "not reachable" are typed the same way everywhere.
Decision records are `promotion` runs holding a JSON file; a record is RUNNING while its
decision is being applied and FINISHED once it is (see registry.aliases).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pipelines import tags
from pipelines.tracking import redact
from registry.errors import (
    AliasNotSetError,
    ModelCodeMismatchError,
    ModelLoadError,
    NotFoundError,
    RegistryUnavailableError,
    UnknownVersionError,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from registry.pyfunc import CoinflowModel

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

    from pipelines.tracking import configure_mlflow

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
def aliases(reg: Registry) -> dict[str, int]:
    """alias → version of the registered model ({} when it does not exist yet)."""

    def fetch() -> dict[str, int]:
        from mlflow.exceptions import MlflowException

        try:
            model = reg.client.get_registered_model(reg.name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        return {alias: int(v) for alias, v in (model.aliases or {}).items()}

    return mlflow_call(f"reading the aliases of {reg.name!r}", fetch)


def versions(reg: Registry) -> list[ModelVersion]:
    """Every version of the registered model, newest first."""
    escaped = reg.name.replace("'", "\\'")
    found = mlflow_call(
        f"listing versions of {reg.name!r}",
        lambda: reg.client.search_model_versions(f"name = '{escaped}'"),
    )
    return sorted(found, key=lambda mv: int(mv.version), reverse=True)


def _known(reg: Registry) -> str:
    try:
        return ", ".join(f"v{mv.version}" for mv in reversed(versions(reg))) or "none"
    except RegistryUnavailableError:
        return "unknown"


def get_version(reg: Registry, ref: int | str) -> ModelVersion:
    """A ModelVersion by number ("3") or alias ("champion"); unknown ones raise clearly."""
    ref = str(ref).strip()
    if ref.isdigit():
        return mlflow_call(
            f"reading {reg.name!r} version {ref}",
            lambda: reg.client.get_model_version(reg.name, ref),
            lambda _: UnknownVersionError(
                f"registered model {reg.name!r} has no version {ref} (versions: {_known(reg)})"
            ),
        )
    return mlflow_call(
        f"reading alias {ref!r} of {reg.name!r}",
        lambda: reg.client.get_model_version_by_alias(reg.name, ref),
        lambda _: AliasNotSetError(
            f"alias {ref!r} is not set on registered model {reg.name!r} (set aliases: "
            f"{', '.join(sorted(aliases(reg))) or 'none'})"
        ),
    )


def run_tags(reg: Registry, run_id: str | None) -> dict[str, str]:
    """Tags of a run ({} when there is none or it is gone)."""
    if not run_id:
        return {}
    try:
        run = mlflow_call(f"reading run {run_id}", lambda: reg.client.get_run(run_id), KeyError)
    except (KeyError, RegistryUnavailableError):
        return {}
    return dict(run.data.tags)


def check_code(name: str, version: int | str, version_tags: dict[str, str]) -> None:
    """Refuse a version whose model code is not the code this process runs."""
    from pipelines.fingerprint import code_fingerprint

    registered, running = version_tags.get(tags.CODE, ""), code_fingerprint()
    if registered != running:
        raise ModelCodeMismatchError(
            f"{name} v{version} was built with model code {registered or '(unrecorded)'} but "
            f"this process runs model code {running}: it would forecast with other features or "
            "another network than it was scored with; register a model trained with this code "
            "(or deploy the code it was built with)",
            registered or "(unrecorded)",
            running,
        )


def load_python_model(reg: Registry, version: int) -> CoinflowModel:
    """The unwrapped pyfunc of one version, refused unless it was built with the running code.

    A registry that does not answer is RegistryUnavailableError; a version that answers but
    cannot be loaded (missing or corrupt artifacts, not a coinflow model) is ModelLoadError.
    """
    import mlflow

    mv = get_version(reg, version)
    check_code(reg.name, version, dict(mv.tags or {}))
    uri = f"models:/{reg.name}/{version}"
    try:
        py: CoinflowModel = mlflow.pyfunc.load_model(uri).unwrap_python_model()
        py.rows_needed  # noqa: B018  (a coinflow pyfunc: its config is loaded)
    except Exception as exc:
        raise ModelLoadError(
            f"{reg.name} v{version} failed to load ({uri}): {type(exc).__name__}: {_short(exc)}"
        ) from exc
    return py


def latest_sweep(reg: Registry) -> dict[str, Any]:
    """The newest run tagged coinflow.kind=sweep and its trial runs, as plain dicts."""
    experiments = mlflow_call("listing experiments", lambda: reg.client.search_experiments())
    ids = [e.experiment_id for e in experiments]
    parents = (
        mlflow_call(
            "searching sweep runs",
            lambda: reg.client.search_runs(
                ids,
                f"tags.`{tags.KIND}` = 'sweep'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            ),
        )
        if ids
        else []
    )
    if not parents:
        raise NotFoundError(f"no sweep run found (runs tagged {tags.KIND}=sweep)")
    parent = parents[0]
    trials = mlflow_call(
        "searching trial runs",
        lambda: reg.client.search_runs(
            [parent.info.experiment_id],
            f"tags.`{tags.PARENT_RUN_ID}` = '{parent.info.run_id}'",
            max_results=5000,
        ),
    )
    rows = sorted(
        (_trial(run) for run in trials),
        key=lambda t: (t["trial_number"] is None, t["trial_number"] or 0),
    )
    run_tags_, params = parent.data.tags, parent.data.params
    return {
        "parent_run_id": parent.info.run_id,
        "status": parent.info.status,
        "study_name": run_tags_.get(tags.STUDY_NAME)
        or params.get("study_name")
        or parent.info.run_name,
        "trials": rows,
    }


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


def _trial(run: Run) -> dict[str, Any]:
    params, metrics, run_tags_ = run.data.params, run.data.metrics, run.data.tags
    return {
        "run_id": run.info.run_id,
        "trial_number": _int(run_tags_.get(tags.TRIAL_NUMBER)),
        "status": run.info.status,
        "state": run_tags_.get(tags.OPTUNA_STATE),
        "hidden_size": _int(params.get("hidden_size")),
        "num_layers": _int(params.get("num_layers")),
        "cell": params.get("cell"),
        "lookback": _int(params.get("lookback")),
        "lr": _float(params.get("lr")),
        "val_loss": _float(metrics.get("best_val_loss", metrics.get("val_loss"))),
        "objective": _float(metrics.get("objective")),
        "test_mase": _float(metrics.get("test_mase")),
        "test_crps": _float(metrics.get("test_crps")),
    }


def version_summary(mv: ModelVersion, held: list[str], loaded: bool) -> dict[str, Any]:
    """One /models entry from a ModelVersion and its version tags."""
    version_tags = mv.tags or {}
    return {
        "version": int(mv.version),
        "aliases": held,
        "kind": version_tags.get(tags.KIND),
        "run_id": mv.run_id,
        "data_version": version_tags.get(tags.DATA_VERSION),
        "dvc_md5": version_tags.get(tags.DVC_MD5),
        "created_at": iso_ms(mv.creation_timestamp),
        "loaded": loaded,
        "decision": version_tags.get(tags.DECISION),
        "metrics": {
            "test_mase": _float(version_tags.get(tags.TEST_MASE)),
            "test_crps": _float(version_tags.get(tags.TEST_CRPS)),
        },
    }


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
def describe_model(reg: Registry) -> None:
    """Create the registered model (once) with a description of what it is and how it moves."""
    from mlflow.exceptions import MlflowException

    try:
        model = reg.client.get_registered_model(reg.name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        reg.client.create_registered_model(reg.name, description=MODEL_DESCRIPTION)
        return
    if not model.description:
        reg.client.update_registered_model(reg.name, description=MODEL_DESCRIPTION)


def begin_record(reg: Registry, action: str, version: int, record: dict[str, Any]) -> str:
    """A RUNNING `promotion` run holding the decision JSON: the decision is being applied."""
    if reg.experiment_id is None:
        raise ValueError("decision records need a registry opened with open_registry()")
    stamp = str(record.get("decided_at", now_iso())).replace(":", "").replace("+0000", "Z")
    run = reg.client.create_run(
        reg.experiment_id,
        run_name=f"{action}-{reg.name}-v{version}",
        tags={
            tags.KIND: tags.RECORD_KIND,
            tags.ACTION: action,
            tags.MODEL_NAME: reg.name,
            tags.MODEL_VERSION: str(version),
        },
    )
    run_id = str(run.info.run_id)
    try:
        reg.client.log_dict(run_id, record, f"promotion/decision-{stamp}.json")
        scores = {
            f"{role}_{k}": float(v)
            for role in ("challenger", "champion", "baseline")
            for k, v in (record.get(role) or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if scores:
            reg.client.log_batch(run_id, metrics=_metrics(scores))
    except Exception:
        reg.client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def _metrics(values: dict[str, float]) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, v, now, 0) for k, v in values.items() if math.isfinite(v)]


def read_record(reg: Registry, run_id: str) -> dict[str, Any]:
    """The decision JSON of a record run."""
    import mlflow

    files = mlflow_call(
        f"listing record run {run_id}",
        lambda: reg.client.list_artifacts(run_id, "promotion"),
        lambda _: UnknownVersionError(f"no record run {run_id}"),
    )
    if not files:
        raise UnknownVersionError(f"run {run_id} holds no decision record")
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/{files[-1].path}")
    return dict(json.loads(text))


def latest_decision(reg: Registry, version: int | str) -> dict[str, Any] | None:
    """The applied decision a version's tags point at (its record JSON), None when none is."""
    mv = get_version(reg, version)
    run_id = (mv.tags or {}).get(tags.DECISION_RUN)
    if not run_id:
        return None
    return {**read_record(reg, run_id), "record_run_id": run_id}


def record_runs(reg: Registry, status: str | None = None, limit: int = 200) -> list[Run]:
    """This model's decision record runs, newest first (optionally of one status); a handle
    naming no experiment (the API's) searches every experiment."""
    where = f"tags.`{tags.KIND}` = '{tags.RECORD_KIND}' and tags.`{tags.MODEL_NAME}` = '{reg.name}'"
    if status:
        where += f" and attributes.status = '{status}'"
    experiments = (
        [reg.experiment_id]
        if reg.experiment_id is not None
        else [e.experiment_id for e in reg.client.search_experiments()]
    )
    found: list[Run] = reg.client.search_runs(
        experiments, where, order_by=["attributes.start_time DESC"], max_results=limit
    )
    return found


# Decision-record actions that move @champion (refuse and alert records move nothing).
CHAMPION_MOVES = ("first-champion", "code-upgrade", "promote", "rollback")


def alias_moves(reg: Registry, limit: int = 200) -> list[dict[str, Any]]:
    """The champion's moves among the model's newest `limit` decision records, oldest first:
    finished records only (a FAILED one never took effect, a RUNNING one is still moving)."""
    moves = [
        {
            "at": dt.datetime.fromtimestamp(run.info.start_time / 1000, tz=dt.UTC),
            "action": run.data.tags.get(tags.ACTION),
            "version": int(run.data.tags[tags.MODEL_VERSION]),
            "record_run_id": run.info.run_id,
        }
        for run in record_runs(reg, status="FINISHED", limit=limit)
        if run.data.tags.get(tags.ACTION) in CHAMPION_MOVES
        and run.data.tags.get(tags.MODEL_VERSION)
    ]
    return moves[::-1]
