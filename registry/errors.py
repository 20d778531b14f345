"""Typed refusals of the registry: each names what was wrong; none leaves an alias half-moved."""

from __future__ import annotations


class RegistryError(Exception):
    """A registry request was refused; the registry's aliases are as they were."""


class UnknownVersionError(RegistryError):
    """The registered model, version or alias does not exist."""


class LineageError(RegistryError):
    """A version lacks lineage tags, or its lineage disqualifies it (data failed the GE gate)."""


class ModelLoadError(RegistryError):
    """A version's pyfunc could not be loaded (missing or corrupt artifacts)."""


class NothingToDoError(RegistryError):
    """No challenger to promote, or no previous champion to roll back to."""


class EvalDataError(RegistryError):
    """The evaluation rows (features + raw version) are missing or disagree with each other."""


class ConcurrentPromotionError(RegistryError):
    """The champion kept changing under this promotion, or the promotion lock was lost."""


class LockTimeoutError(RegistryError):
    """Another promoter held the registry lock for longer than we were willing to wait."""
