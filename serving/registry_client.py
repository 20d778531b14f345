"""The API's view of the registry: registry.store, with bounded concurrency on every call.

A registry that hangs (a frozen `mlflow server`, a dead database) must never take the API's
worker threads with it: at most `slots` registry calls run at once, and a call that finds no
free slot within `wait_s` fails at once as RegistryUnavailableError (503), so requests for
cached models keep their threads and answer in milliseconds.

A SQLite store is watched: MLflow keeps pooled connections to the file it opened, so after
`rm mlflow.db` it would go on reading the deleted file, and a restored copy would never be seen.
A removed file makes every call fail (RegistryUnavailableError: /ready is degraded, cached
models are served); a replaced one (another inode) is reopened before the next call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.files import file_id
from core.tracking import redact
from pipelines.sweep import runs
from registry import records, store
from registry.errors import NotFoundError, RegistryBusyError, RegistryUnavailableError

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from forecasting.packaged import PackagedModel
T = TypeVar("T")


class RegistryClient:
    """Registry look-ups for one registered model name, `slots` at a time."""

    def __init__(
        self,
        registry: store.Registry,
        uri: str,
        slots: int = 4,
        wait_s: float = 0.05,
        extra_uris: tuple[str, ...] = (),
    ) -> None:
        self.registry = registry
        self.name = registry.name
        self.uri = redact(uri)  # for messages only
        self.slots, self.wait_s = slots, wait_s
        self._slots = threading.BoundedSemaphore(slots)
        self._files = {u: file_id(p) for u in {uri, *extra_uris} if (p := _sqlite_file(u))}

    @classmethod
    def connect(
        cls, name: str, tracking_uri: str, registry_uri: str, slots: int = 4
    ) -> RegistryClient:
        """A client on the store at these URIs (nothing is created there)."""
        registry = store.connect(name, tracking_uri, registry_uri)
        return cls(registry, registry_uri, slots, extra_uris=(tracking_uri,))

    def _check_files(self) -> None:
        """A removed SQLite store fails the call; a replaced one is reopened (see above)."""
        for uri, seen in self._files.items():
            path = _sqlite_file(uri)
            assert path is not None
            now = file_id(path)
            if now is None:
                raise RegistryUnavailableError(
                    f"the registry's SQLite file {path.name} was removed; cached models are "
                    "still served until it is restored"
                )
            if now != seen:
                _reopen(uri)
                self._files[uri] = now

    def _guarded(self, what: str, call: Callable[[], T]) -> T:
        self._check_files()
        if not self._slots.acquire(timeout=self.wait_s):
            raise RegistryBusyError(  # never the store's URI: it may be a local path
                f"{what}: shed, {self.slots} registry calls are already in flight (the "
                "registry is slow or the API busy); cached models are still served"
            )
        try:
            return call()
        finally:
            self._slots.release()

    def aliases(self) -> dict[str, int]:
        """Alias → version of the model; empty when the model is not registered yet."""
        return self._guarded("reading aliases", lambda: store.aliases(self.registry))

    def version(self, version: int) -> ModelVersion:
        """The ModelVersion entity; UnknownVersionError when it does not exist."""
        return self._guarded(
            f"reading v{version}", lambda: store.get_version(self.registry, version)
        )

    def load(self, version: int) -> PackagedModel:
        """The unwrapped pyfunc of one version (code fingerprint checked; ~2 s)."""
        return self._guarded(
            f"loading v{version}", lambda: store.load_packaged(self.registry, version)
        )

    def run_tags(self, run_id: str | None) -> dict[str, str]:
        """Tags of a training run ({} when it is gone or the registry is busy)."""
        try:
            return self._guarded("reading a run", lambda: store.run_tags(self.registry, run_id))
        except RegistryUnavailableError:
            return {}

    def versions(self) -> list[ModelVersion]:
        """Every ModelVersion of the model, newest first."""
        return self._guarded("listing versions", lambda: store.versions(self.registry))

    def run_metrics(self, run_ids: list[str]) -> dict[str, dict[str, float]]:
        """run id → its metrics, in one search (the /models table)."""
        ids = sorted({r for r in run_ids if r})
        if not ids:
            return {}
        quoted = ", ".join(f"'{r}'" for r in ids)

        def search() -> dict[str, dict[str, float]]:
            experiments = self.registry.client.search_experiments()
            runs = self.registry.client.search_runs(
                [e.experiment_id for e in experiments],
                f"attributes.run_id IN ({quoted})",
                max_results=len(ids),
            )
            return {r.info.run_id: dict(r.data.metrics) for r in runs}

        return self._guarded(
            "reading run metrics", lambda: store.mlflow_call("searching runs", search)
        )

    def alias_moves(self) -> list[dict[str, Any]]:
        """The champion's moves from the audit trail, oldest first (registry.records)."""
        return self._guarded(
            "reading the audit trail",
            lambda: store.mlflow_call(
                "searching decision records", lambda: records.alias_moves(self.registry)
            ),
        )

    def decision(self, run_id: str) -> dict[str, Any]:
        """One decision record's JSON (registry.records), by its record run id."""
        return self._guarded(
            "reading a decision record",
            lambda: store.mlflow_call(
                "reading a decision record", lambda: records.read_record(self.registry, run_id)
            ),
        )

    def latest_sweep(self) -> dict[str, Any]:
        """The newest sweep run and its trials, as plain dicts."""

        def read() -> dict[str, Any]:
            try:
                return runs.latest_sweep(self.registry.client)
            except runs.NoSweepError as exc:
                raise NotFoundError(str(exc)) from exc

        return self._guarded(
            "reading the latest sweep", lambda: store.mlflow_call("reading the latest sweep", read)
        )


def _sqlite_file(uri: str) -> Path | None:
    """The file of a `sqlite:///` store URI (None: another kind of store)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def _reopen(uri: str) -> None:
    """Close MLflow's pooled connections to the file of `uri` (it caches one engine per URI, per
    store class): the next call opens the file now at that path."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking

    path = _sqlite_file(uri)
    assert path is not None
    for cls in (Tracking, Registry):
        for engine in list(cls._engine_map.values()):
            database = engine.url.database
            if (
                engine.dialect.name == "sqlite"
                and database
                and Path(database).resolve() == path.resolve()
            ):
                engine.dispose()
