"""A fingerprint of the code that turns a registered version's weights into forecasts.

A version is only served by code that computes what it was trained and scored with: the hash
covers the files that define features, model and forecast, normalised through their syntax
tree (comments, docstrings and formatting do not count), so a refactor that changes no
statement keeps the fingerprint and any change of arithmetic moves it.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache

from pipelines.paths import PACKAGE_ROOT

MODEL_CODE = (
    "pipelines/features.py",
    "pipelines/model.py",
    "pipelines/forecast.py",
    "pipelines/quantiles.py",
    "pipelines/baselines.py",
    "registry/pyfunc.py",
    "registry/models/forecaster.py",
    "registry/models/persistence.py",
    "registry/models/ewma.py",
)
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


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The fingerprint of the model code this process runs (MODEL_CODE under the package root)."""
    return source_fingerprint(
        {name: (PACKAGE_ROOT / name).read_text(encoding="utf-8") for name in MODEL_CODE}
    )
