"""Serve every version with the kernel it shipped.

A registered version carries the `forecasting` folder it was trained with (its MLflow code
path). When that kernel's fingerprint is the running kernel's, the running package serves it;
otherwise the shipped folder is imported under a private name, `coinflow_kernel_<fingerprint>`,
isolated from the running kernel (the kernel imports its own modules relatively only) and cached
per fingerprint, so old versions keep computing exactly what they were scored with after a
deploy changed the arithmetic.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

from core.errors import CoinflowError
from core.fingerprint import code_fingerprint, kernel_fingerprint
from forecasting.packaged import INTERFACE

PRIVATE_PREFIX = "coinflow_kernel_"
_lock = threading.Lock()
_cache_dir: Path | None = None


class KernelError(CoinflowError):
    """A version's own kernel cannot be loaded; the message names the fingerprint and why."""


def _private_copy(fingerprint: str, shipped: Path) -> Path:
    """A copy of the shipped kernel that lives as long as this process (downloads are temporary)."""
    global _cache_dir
    if _cache_dir is None:
        _cache_dir = Path(tempfile.mkdtemp(prefix="coinflow-kernels-"))
    target = _cache_dir / f"{PRIVATE_PREFIX}{fingerprint}"
    if not target.exists():
        shutil.copytree(shipped, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _import_private(name: str, folder: Path) -> ModuleType:
    """Import `folder` as package `name` and every module in it (nothing is left to import
    lazily from files that may go away)."""
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"no package at {folder}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    try:
        spec.loader.exec_module(package)
        for info in pkgutil.iter_modules([str(folder)]):
            importlib.import_module(f"{name}.{info.name}")
    except BaseException:
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]
        raise
    return package


def packaged_module(fingerprint: str, shipped: Path | None) -> ModuleType:
    """The `packaged` module of the kernel with this fingerprint: the running kernel's, or the
    shipped copy's in `shipped` (the version's `code/forecasting` folder)."""
    if fingerprint == code_fingerprint():
        return importlib.import_module("forecasting.packaged")
    name = f"{PRIVATE_PREFIX}{fingerprint}"
    with _lock:
        if f"{name}.packaged" in sys.modules:
            return sys.modules[f"{name}.packaged"]
        if shipped is None or not (shipped / "__init__.py").is_file():
            raise KernelError(
                f"kernel {fingerprint} is not the running kernel ({code_fingerprint()}) and the "
                "version ships no forecasting kernel of its own (registered before versions "
                "carried their kernel)"
            )
        try:
            found = kernel_fingerprint(shipped)
        except (OSError, SyntaxError, ValueError) as exc:
            raise KernelError(f"kernel {fingerprint}: shipped copy unreadable: {exc}") from exc
        if found != fingerprint:
            raise KernelError(
                f"the shipped kernel hashes to {found}, not the {fingerprint} the version was "
                "registered with: its code was altered after registration"
            )
        try:
            _import_private(name, _private_copy(fingerprint, shipped))
        except Exception as exc:
            raise KernelError(
                f"kernel {fingerprint} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        module = sys.modules[f"{name}.packaged"]
    interface = getattr(module, "INTERFACE", None)
    if interface != INTERFACE:
        raise KernelError(
            f"kernel {fingerprint} speaks packaging interface {interface}; this code reads "
            f"interface {INTERFACE}"
        )
    return module
