"""The registry's one error family: each names what was wrong; none leaves an alias half-moved.

The API maps these to HTTP statuses in one place (serving.problems); the CLI prints them.
"""

from __future__ import annotations

from core.errors import CoinflowError


class RegistryError(CoinflowError):
    """A registry request was refused; the registry's aliases are as they were."""


class NotFoundError(RegistryError):
    """What was asked for (a version, an alias, a sweep) does not exist in the store."""


class UnknownVersionError(NotFoundError):
    """The registered model or version does not exist."""


class AliasNotSetError(UnknownVersionError):
    """The alias is not set on the registered model."""


class RegistryUnavailableError(RegistryError):
    """The tracking store / registry did not answer (down, timed out, or too busy)."""


class RegistryBusyError(RegistryUnavailableError):
    """The call was shed, never tried: too many registry calls are already in flight (the
    registry may be healthy, or slow); cached models are still served."""


class LineageError(RegistryError):
    """A version lacks lineage tags, or its lineage disqualifies it (data failed the GE gate)."""


class ModelLoadError(RegistryError):
    """A version could not be loaded: missing or corrupt artifacts, or its own kernel failed to
    import; carries the version and its kernel fingerprint when known."""

    def __init__(
        self, message: str, version: int | None = None, fingerprint: str | None = None
    ) -> None:
        super().__init__(message)
        self.version, self.fingerprint = version, fingerprint


class NothingToDoError(RegistryError):
    """No challenger to promote, or no previous champion to roll back to."""


class EvalDataError(RegistryError):
    """The evaluation rows (features + raw version) are missing or disagree with each other."""


class ConcurrentPromotionError(RegistryError):
    """The champion kept changing under this promotion, or the promotion lock was lost."""


class LockTimeoutError(RegistryError):
    """Another promoter held the registry lock for longer than we were willing to wait."""
