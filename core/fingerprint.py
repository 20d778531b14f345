"""The fingerprint of a forecasting kernel: what a registered version computes with.

It hashes exactly the kernel folder (`forecasting/*.py`, the folder a version ships as its
code), normalised through the syntax tree: comments, docstrings and layout do not count, so a
refactor that changes no statement keeps the fingerprint and any change of arithmetic moves it.
Nothing outside the kernel (stage I/O, packaging, log messages) can move it.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

import forecasting

KERNEL_DIR = Path(forecasting.__file__).resolve().parent
LENGTH = 12


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body[:1] = [] if len(body) > 1 else [ast.Pass()]
    return tree


def source_fingerprint(sources: dict[str, str]) -> str:
    """Hash of {file name: source text}, blind to comments, docstrings and layout."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        tree = _strip_docstrings(ast.parse(sources[name], filename=name))
        digest.update(name.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()[:LENGTH]


def kernel_sources(folder: Path) -> dict[str, str]:
    """{file name: source} of every module of a kernel folder (not its subfolders' caches)."""
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.py"))}


def kernel_fingerprint(folder: Path) -> str:
    """The fingerprint of the kernel in `folder` (a checkout's or a version's shipped copy)."""
    sources = kernel_sources(folder)
    if "__init__.py" not in sources:
        raise FileNotFoundError(f"{folder} holds no forecasting kernel (no __init__.py)")
    return source_fingerprint(sources)


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The fingerprint of the kernel this process runs."""
    return kernel_fingerprint(KERNEL_DIR)
