"""A registry-wide promotion lock built on the one atomic MLflow operation: creating a name.

MLflow has no compare-and-set on aliases. It does refuse to create a registered model whose name
exists (a primary key in the SQLite/Postgres store, RESOURCE_ALREADY_EXISTS through the REST API),
so creating `<model>.promotion-lock` is an atomic test-and-set and deleting it releases; this
works the same against the embedded store and a remote `mlflow server`, across hosts.

Guarantee: among coinflow processes (promote, first champion, rollback) at most one moves the
aliases at a time, and each compares the champion it scored with the current one under the lock
(registry.aliases), so no promotion is lost and previous-champion is always the version replaced.
A lock whose holder is gone is taken over: at once when the holder ran on this host and its
process has exited, after the TTL (60 s; the section takes well under a second) otherwise.
While waiting, the holder (host, pid, since when) is logged. Alias moves made outside coinflow
(MLflow UI) bypass the lock and are only caught by the re-reads around each write.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any

from core import tags
from core.liveness import process_alive, process_identity
from registry.errors import ConcurrentPromotionError, LockTimeoutError

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def lock_name(model_name: str) -> str:
    """Name of the registered model that exists exactly while someone holds the lock."""
    return f"{model_name}.promotion-lock"


class Holder:
    """Who holds the lock: their identity (host, pid, start time, token), since and until when."""

    def __init__(self, owner: str, expires: float, created: float) -> None:
        self.owner, self.expires, self.created = owner, expires, created
        try:
            self.identity: dict[str, Any] = dict(json.loads(owner))
        except ValueError:
            self.identity = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Holder) and (self.owner, self.expires) == (
            other.owner,
            other.expires,
        )

    def __hash__(self) -> int:
        return hash((self.owner, self.expires))

    @property
    def gone(self) -> bool:
        """True when the holder's process is known to have exited, or its lease ran out."""
        if self.expires < time.time():
            return True
        return bool(self.identity.get("pid")) and not process_alive(self.identity)

    def __str__(self) -> str:
        who = self.identity or {"owner": self.owner}
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        return (
            f"{who.get('host', '?')} pid {who.get('pid', '?')} since {since} "
            f"(lease ends in {self.expires - time.time():.0f} s)"
        )


class RegistryLock:
    """`with RegistryLock(client, name):` serialises champion moves across processes and hosts."""

    def __init__(
        self,
        client: MlflowClient,
        model_name: str,
        *,
        ttl_s: float = 60.0,
        timeout_s: float = 120.0,
        poll_s: float = 0.2,
    ) -> None:
        self.client = client
        self.name = lock_name(model_name)
        self.ttl_s, self.timeout_s, self.poll_s = ttl_s, timeout_s, poll_s
        self.owner = json.dumps({**process_identity(), "token": uuid.uuid4().hex[:8]})

    def _holder(self) -> Holder | None:
        """The current holder, None when nobody holds the lock."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        created = (model.creation_timestamp or 0) / 1000
        expires = model.tags.get(tags.LOCK_EXPIRES)
        return Holder(
            model.tags.get(tags.LOCK_OWNER, "?"),
            float(expires) if expires else created + self.ttl_s,
            created,
        )

    def _try_create(self) -> bool:
        from mlflow.exceptions import MlflowException

        lock_tags = {
            tags.LOCK_OWNER: self.owner,
            tags.LOCK_EXPIRES: f"{time.time() + self.ttl_s:.3f}",
        }
        try:
            self.client.create_registered_model(
                self.name,
                tags=lock_tags,
                description="coinflow promotion lock: exists only while a promotion moves aliases",
            )
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_ALREADY_EXISTS":
                return False
            raise
        return True

    def acquire(self) -> None:
        """Create the lock name; wait while a live holder has it, take it over once it is gone."""
        deadline = time.monotonic() + self.timeout_s
        said: Holder | None = None
        while not self._try_create():
            holder = self._holder()
            if holder is not None and holder.gone:
                # Re-read just before deleting, so a lock that changed hands is left alone.
                if self._holder() == holder:
                    log.warning(
                        "registry lock %r: taking over from %s, which is gone", self.name, holder
                    )
                    self._delete()
                continue
            if holder is not None and holder != said:
                log.warning("registry lock %r is held by %s: waiting", self.name, holder)
                said = holder
            if time.monotonic() > deadline:
                raise LockTimeoutError(
                    f"registry lock {self.name!r} held by {holder or 'unknown'} for more than "
                    f"{self.timeout_s:.0f} s; retry later (a holder that died is taken over "
                    "once its lease ends)"
                )
            time.sleep(self.poll_s)

    def verify(self) -> None:
        """Raise unless we still hold the lock with time to spare (checked before each write)."""
        holder = self._holder()
        if holder is None or holder.owner != self.owner or holder.expires < time.time() + 1.0:
            raise ConcurrentPromotionError(
                f"registry lock {self.name!r} was lost (now held by {holder or 'nobody'})"
            )

    def _delete(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def release(self) -> None:
        """Delete the lock if it is still ours."""
        holder = self._holder()
        if holder is not None and holder.owner == self.owner:
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
