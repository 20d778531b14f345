"""A version is served only by the model code it was built with: else 409, naming both."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from serving_helpers import FOREIGN_CODE, Store, running_api

from pipelines.fingerprint import code_fingerprint, source_fingerprint

pytestmark = pytest.mark.serving


def test_a_version_built_with_other_code_is_refused_with_409(store: Store, tmp_path: Path) -> None:
    with running_api(tmp_path, store.uri, "stale-code", coinflow_refresh_s="0") as api:
        same = httpx.post(f"{api.url}/predict?version=1", json={"horizon": 2}, timeout=60)
        assert same.status_code == 200, same.text  # built with this code: served
        assert same.json()["lineage"]["code_fingerprint"] == code_fingerprint()

        other = httpx.post(f"{api.url}/predict?version=2", json={"horizon": 2}, timeout=60)
        assert other.status_code == 409, other.text
        assert other.headers["content-type"].startswith("application/problem+json")
        problem = other.json()
        assert problem["type"].endswith(":model-code-mismatch")
        assert problem["registered_fingerprint"] == FOREIGN_CODE
        assert problem["running_fingerprint"] == code_fingerprint()
        assert FOREIGN_CODE in problem["detail"] and code_fingerprint() in problem["detail"]
        assert "stale-code v2" in problem["detail"]
        # Nothing was loaded for it, and the other versions still answer.
        assert 2 not in httpx.get(f"{api.url}/ready", timeout=10).json()["loaded_versions"]
        again = httpx.post(f"{api.url}/predict?alias=champion", json={}, timeout=60)
        assert again.status_code == 200


@pytest.mark.unit
def test_fingerprint_ignores_comments_and_docstrings_but_not_arithmetic() -> None:
    base = 'def f(x):\n    """Scale."""\n    return x * 2  # double\n'
    assert source_fingerprint({"m.py": base}) == source_fingerprint(
        {"m.py": "def f(x):\n    # no docstring now\n    return x*2\n"}
    )
    assert source_fingerprint({"m.py": base}) != source_fingerprint(
        {"m.py": base.replace("x * 2", "x * 3")}
    )
    assert source_fingerprint({"m.py": base}) != source_fingerprint({"n.py": base})
    assert len(code_fingerprint()) == 12
