"""Loaded model versions (bounded LRU) and the alias → version map, swapped only once loaded;
each version calibrated with its newest stored calibration state, re-read on every refresh."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from registry.errors import (
    AliasNotSetError,
    ModelLoadError,
    RegistryBusyError,
    RegistryError,
    RegistryUnavailableError,
)
from registry.store import iso_ms
from serving.predictor import LoadedModel, build_loaded_model
from serving.registry_client import RegistryClient

if TYPE_CHECKING:
    from serving.calibration_states import StoredState

log = logging.getLogger(__name__)
T = TypeVar("T")
# A version that failed to load is answered from memory (500, same reason) for this long before
# the next attempt: a broken artifact costs one download per period, not one per request.
BROKEN_RETRY_S = 30.0
# versions → the newest stored calibration state of those that have one
StateReader = Callable[[list[int]], dict[int, "StoredState"]]


@dataclass
class RegistryStatus:
    """The last contact with the registry: when it last answered, and the last failure."""

    reachable: bool = False
    last_ok: float | None = None
    last_error: str | None = None
    last_check: float = 0.0


class ModelCache:
    """Versions held in memory (LRU, bounded) plus the aliases being served.

    A request takes a reference to a LoadedModel and uses it to the end: eviction only drops
    the cache's own reference, so an in-flight request never loses its model. Alias moves load
    the new version completely before the alias → version mapping is swapped. `states` reads
    the calibration state store (None: no store, every version answers with the state it
    shipped); a refresh swaps in each loaded version's newest state.
    """

    def __init__(
        self,
        registry: RegistryClient,
        size: int,
        default_alias: str,
        on_change: Callable[[str, int | None], None] | None = None,
        states: StateReader | None = None,
    ) -> None:
        self.registry = registry
        self.size = size
        self.default_alias = default_alias
        self.status = RegistryStatus()
        self._models: OrderedDict[int, LoadedModel] = OrderedDict()
        self._served: dict[str, int] = {}  # aliases requests use → loaded versions
        self._known: dict[str, int] = {}  # the registry's whole alias map, as last served
        self._seen: dict[str, int] = {}  # the registry's alias map, as last read
        self._lock = threading.Lock()  # guards the three dicts above
        self._loading: dict[int, threading.Lock] = {}
        self._refresh_lock = threading.Lock()
        self._probing = threading.Lock()  # held by the one running probe
        self._load_errors: dict[int, str] = {}  # version → why it last failed to load
        self._broken: dict[int, tuple[float, ModelLoadError]] = {}  # version → when, why
        self._on_change = on_change
        self._states = states

    # --- registry contact bookkeeping -------------------------------------------------------
    def _ok(self) -> None:
        self.status.reachable, self.status.last_ok = True, time.time()
        self.status.last_check, self.status.last_error = self.status.last_ok, None

    def _failed(self, exc: RegistryError) -> None:
        self.status.reachable, self.status.last_check = False, time.time()
        self.status.last_error = str(exc)

    def registry_call(self, call: Callable[[], T]) -> T:
        """Run a registry look-up, recording whether the registry answered."""
        try:
            result = call()
        except RegistryBusyError:
            raise  # shed before it was tried: it says nothing about the registry
        except RegistryUnavailableError as exc:
            self._failed(exc)
            raise
        except RegistryError:
            self._ok()  # it answered: "not found" is an answer
            raise
        self._ok()
        return result

    # --- versions ---------------------------------------------------------------------------
    def cached(self, version: int) -> LoadedModel | None:
        """The loaded version, marked recently used; None when not in memory."""
        with self._lock:
            model = self._models.get(version)
            if model is not None:
                self._models.move_to_end(version)
            return model

    def model(self, version: int) -> LoadedModel:
        """A version from memory, or loaded from the registry (one load per version at a time)."""
        model = self.cached(version)
        if model is not None:
            return model
        with self._lock:
            gate = self._loading.setdefault(version, threading.Lock())
        with gate:
            model = self.cached(version)
            if model is None:
                model = self._load_once(version)
                self._insert(model)
        with self._lock:
            self._loading.pop(version, None)
        return model

    def _load_once(self, version: int) -> LoadedModel:
        """_load, remembering why a version failed (logged once per version and reason); a
        failure is answered from memory for BROKEN_RETRY_S before the load is tried again."""
        with self._lock:
            broken = self._broken.get(version)
        if broken is not None and time.monotonic() - broken[0] < BROKEN_RETRY_S:
            old = broken[1]  # a fresh exception: a re-raised one would grow its traceback
            raise ModelLoadError(str(old), old.version, old.fingerprint)
        try:
            model = self._load(version)
        except ModelLoadError as exc:
            with self._lock:
                first = self._load_errors.get(version) != str(exc)
                self._load_errors[version] = str(exc)
                self._broken[version] = (time.monotonic(), exc)
            if first:
                log.error("version %s cannot be served: %s", version, exc)
            raise
        with self._lock:
            self._load_errors.pop(version, None)
            self._broken.pop(version, None)
        return model

    def load_error(self, version: int) -> str | None:
        """Why `version` last failed to load (None: it never failed, or loaded since)."""
        with self._lock:
            return self._load_errors.get(version)

    def known_aliases(self) -> dict[str, int]:
        """The registry's whole alias map, as last read (even if a version failed to load)."""
        with self._lock:
            return dict(self._seen)

    def _read_aliases(self) -> dict[str, int]:
        aliases = self.registry_call(self.registry.aliases)
        with self._lock:
            self._seen = dict(aliases)
        return aliases

    def _read_states(self, versions: list[int]) -> dict[int, StoredState] | None:
        """The newest stored calibration states of `versions`; None when the store cannot be
        read now (the versions keep the states they have)."""
        if self._states is None or not versions:
            return {}
        try:
            return self._states(versions)
        except Exception as exc:  # the log's database is down: serve with the states we hold
            log.warning("calibration states not read, keeping the current ones: %s", exc)
            return None

    def _load(self, version: int) -> LoadedModel:
        model_version = self.registry_call(lambda: self.registry.version(version))
        py = self.registry_call(lambda: self.registry.load(version))
        try:
            model = build_loaded_model(
                self.registry.name, model_version, py, self.registry.run_tags(model_version.run_id)
            )
        except Exception as exc:
            raise ModelLoadError(
                f"{self.registry.name!r} version {version} loaded but cannot "
                f"forecast: {type(exc).__name__}: {exc}"
            ) from exc
        self._use_states([model], self._read_states([version]))
        log.info("loaded %s version %s (%s)", self.registry.name, version, model.kind)
        return model

    def _insert(self, model: LoadedModel) -> None:
        with self._lock:
            self._models[model.version] = model
            self._models.move_to_end(model.version)
            pinned = set(self._served.values())
            for old in list(self._models):
                if len(self._models) <= self.size:
                    break
                if old not in pinned and old != model.version:
                    del self._models[old]  # in-flight requests keep their own reference
                    log.info("evicted version %s from the model cache", old)

    def loaded_versions(self) -> list[int]:
        """Versions in memory, oldest use first."""
        with self._lock:
            return list(self._models)

    # --- aliases ----------------------------------------------------------------------------
    def served_model(self, alias: str) -> LoadedModel | None:
        """The model an alias serves when it is in memory; None when finding it would take a
        registry call (the alias not resolved yet, or its version evicted)."""
        with self._lock:
            version = self._served.get(alias)
        return None if version is None else self.cached(version)

    def by_alias(self, alias: str) -> LoadedModel:
        """The model an alias serves; resolved through the registry the first time."""
        model = self.served_model(alias)
        if model is not None:
            return model
        aliases = self._read_aliases()
        if alias not in aliases:
            raise AliasNotSetError(
                f"alias {alias!r} is not set on registered model {self.registry.name!r} "
                f"(set aliases: {', '.join(sorted(aliases)) or 'none'})"
            )
        model = self.model(aliases[alias])
        self._swap(alias, model.version, aliases)
        return model

    def _swap(self, alias: str, version: int | None, known: dict[str, int]) -> None:
        with self._lock:
            old = self._served.get(alias)
            if version is None:
                self._served.pop(alias, None)
            else:
                self._served[alias] = version
            self._known = dict(known)
        if old != version:
            log.info("alias %s: %s → %s", alias, old, version)
            if self._on_change is not None:
                self._on_change(alias, version)

    def aliases_of(self, version: int) -> list[str]:
        """The registry's aliases on a version, as last seen."""
        with self._lock:
            return sorted(a for a, v in self._known.items() if v == version)

    def served(self) -> dict[str, int]:
        """Aliases this API serves → their versions."""
        with self._lock:
            return dict(self._served)

    def refresh(self) -> dict[str, dict[str, int | None]]:
        """Re-resolve the default and every served alias; load moved versions, then swap."""
        with self._refresh_lock:
            aliases = self._read_aliases()
            changed: dict[str, dict[str, int | None]] = {}
            tracked = set(self.served()) | {self.default_alias}
            for alias in sorted(tracked):
                old = self.served().get(alias)
                new = aliases.get(alias)
                if new is not None and new != old:
                    self.model(new)  # fully loaded and warmed before anyone is switched
                if new != old:
                    changed[alias] = {"from": old, "to": new}
                self._swap(alias, new, aliases)
            with self._lock:
                self._known = dict(aliases)
            self.refresh_states()
            return changed

    def refresh_states(self) -> dict[int, str | None]:
        """Swap in the newest stored calibration state of every loaded version (version → the
        day of the state it now uses, for those whose state changed)."""
        with self._lock:
            models = list(self._models.values())
        return self._use_states(models, self._read_states([m.version for m in models]))

    @staticmethod
    def _use_states(
        models: list[LoadedModel], stored: dict[int, StoredState] | None
    ) -> dict[int, str | None]:
        """Each model on its newest stored state (None: the store was not read, keep them)."""
        changed: dict[int, str | None] = {}
        if stored is None:
            return changed
        for model in models:
            try:
                if model.use_state(stored.get(model.version)):
                    changed[model.version] = model.calibrator.used.as_of
                    log.info(
                        "version %s: calibration state as of %s (%s)",
                        model.version,
                        model.calibrator.used.as_of,
                        model.calibrator.used.source,
                    )
            except ValueError as exc:  # a state that fails its digest is never served
                log.error("version %s: %s", model.version, exc)
        return changed

    def probe(self) -> None:
        """Ask the registry for the alias map, only to record whether it answers."""
        try:
            self.registry_call(self.registry.aliases)
        except RegistryError:
            pass
        finally:
            self._probing.release()

    def probe_in_background(self) -> None:
        """Start one probe thread unless one is running: /ready never waits on the registry."""
        if self._probing.acquire(blocking=False):
            threading.Thread(target=self.probe, name="registry-probe", daemon=True).start()

    def state(self) -> dict[str, object]:
        """Snapshot for /ready."""
        return {
            "reachable": self.status.reachable,
            "last_ok": iso_ms(int(self.status.last_ok * 1000) if self.status.last_ok else None),
            "last_error": self.status.last_error,
        }
