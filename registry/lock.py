"""A registry-wide promotion lock built on the one atomic MLflow operation: creating a name.

MLflow has no compare-and-set on aliases. It does refuse to create a registered model whose name
exists (a primary key in the SQLite/Postgres store, RESOURCE_ALREADY_EXISTS through the REST API),
so creating `<model>.promotion-lock` is an atomic test-and-set and deleting it releases; this
works the same against the embedded store and a remote `mlflow server`, across hosts.

Guarantee: among coinflow processes (promote, first champion, rollback) at most one moves the
aliases at a time, and each compares the champion it scored with the current one under the lock
(registry.aliases), so no promotion is lost and previous-champion is always the version replaced.
Limits: a holder stalled past the TTL (60 s; the section takes well under a second) may have its
lock broken, and breaking a dead holder's lock is check-then-delete; alias moves made outside
coinflow (MLflow UI) bypass the lock and are only caught by the re-reads around each write.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from types import TracebackType
from typing import Any

from registry.errors import ConcurrentPromotionError, LockTimeoutError

OWNER_TAG = "coinflow.lock.owner"
EXPIRES_TAG = "coinflow.lock.expires_at"


def lock_name(model_name: str) -> str:
    """Name of the registered model that exists exactly while someone holds the lock."""
    return f"{model_name}.promotion-lock"


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


class RegistryLock:
    """`with RegistryLock(client, name):` serialises champion moves across processes and hosts."""

    def __init__(
        self,
        client: Any,
        model_name: str,
        *,
        ttl_s: float = 60.0,
        timeout_s: float = 120.0,
        poll_s: float = 0.2,
    ) -> None:
        self.client = client
        self.name = lock_name(model_name)
        self.ttl_s, self.timeout_s, self.poll_s = ttl_s, timeout_s, poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def _holder(self) -> tuple[str, float] | None:
        """(owner, expiry) of the current lock, None when nobody holds it."""
        try:
            model = self.client.get_registered_model(self.name)
        except Exception as exc:
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        created = (model.creation_timestamp or 0) / 1000  # fallback if the tag were lost
        expires = model.tags.get(EXPIRES_TAG)
        return model.tags.get(OWNER_TAG, "?"), float(expires) if expires else created + self.ttl_s

    def _try_create(self) -> bool:
        tags = {OWNER_TAG: self.owner, EXPIRES_TAG: f"{time.time() + self.ttl_s:.3f}"}
        try:
            self.client.create_registered_model(
                self.name,
                tags=tags,
                description="coinflow promotion lock: exists only while a promotion moves aliases",
            )
        except Exception as exc:
            if _error_code(exc) == "RESOURCE_ALREADY_EXISTS":
                return False
            raise
        return True

    def acquire(self) -> None:
        """Create the lock name; wait while a live holder has it, break it once expired."""
        deadline = time.monotonic() + self.timeout_s
        while not self._try_create():
            holder = self._holder()
            if holder is not None and holder[1] < time.time():
                # The holder died mid-promotion: re-read just before deleting, so a lock that
                # changed hands in between is left alone.
                again = self._holder()
                if again == holder:
                    self._delete()
                continue
            if time.monotonic() > deadline:
                who = holder[0] if holder else "unknown"
                raise LockTimeoutError(
                    f"registry lock {self.name!r} held by {who} for more than "
                    f"{self.timeout_s:.0f} s; retry later or delete the "
                    "registered model of that name if its holder is dead"
                )
            time.sleep(self.poll_s)

    def verify(self) -> None:
        """Raise unless we still hold the lock with time to spare (checked before each write)."""
        holder = self._holder()
        if holder is None or holder[0] != self.owner or holder[1] < time.time() + 1.0:
            raise ConcurrentPromotionError(
                f"registry lock {self.name!r} was lost "
                f"(now held by {holder[0] if holder else 'nobody'})"
            )

    def _delete(self) -> None:
        try:
            self.client.delete_registered_model(self.name)
        except Exception as exc:
            if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise

    def release(self) -> None:
        """Delete the lock if it is still ours."""
        holder = self._holder()
        if holder is not None and holder[0] == self.owner:
            self._delete()

    def __enter__(self) -> RegistryLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
