"""Every version is served by the kernel it shipped: a deploy that changes the kernel's arithmetic
changes no old version's answer; a change outside the kernel moves no fingerprint; a version
whose own kernel cannot be loaded is a clear problem naming version, fingerprint and reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serving_helpers import FOREIGN_CODE, Store, clean_env, running_api

from core.fingerprint import code_fingerprint, source_fingerprint
from tests.repo_copy import fresh_copy

pytestmark = pytest.mark.serving
REPO = Path(__file__).resolve().parents[2]
NAME = "kernel-change"  # registered in the session store by this module only


def test_a_version_whose_kernel_cannot_be_loaded_is_a_clear_problem(
    store: Store, tmp_path: Path
) -> None:
    """stale-code v2 claims a kernel its shipped copy does not hash to: it is not served, and
    the problem (and /ready, had it been the champion) gives the true reason."""
    with running_api(tmp_path, store.uri, "stale-code", coinflow_refresh_s="0") as api:
        same = httpx.post(f"{api.url}/predict?version=1", json={"horizon": 2}, timeout=60)
        assert same.status_code == 200, same.text  # built with this code: served
        assert same.json()["lineage"]["code_fingerprint"] == code_fingerprint()

        other = httpx.post(f"{api.url}/predict?version=2", json={"horizon": 2}, timeout=60)
        assert other.status_code == 500, other.text  # not a retry-later 503: it will not load
        assert other.headers["content-type"].startswith("application/problem+json")
        problem = other.json()
        assert problem["type"].endswith(":model-load-failed")
        assert problem["version"] == 2 and problem["fingerprint"] == FOREIGN_CODE
        assert "stale-code v2" in problem["detail"] and FOREIGN_CODE in problem["detail"]
        assert "altered after registration" in problem["detail"]  # the reason
        twice = httpx.post(f"{api.url}/predict?version=2", json={"horizon": 2}, timeout=60)
        assert twice.status_code == 500 and twice.json()["detail"] == problem["detail"]
        # Nothing was loaded for it, and the other versions still answer.
        assert 2 not in httpx.get(f"{api.url}/ready", timeout=10).json()["loaded_versions"]
        again = httpx.post(f"{api.url}/predict?alias=champion", json={}, timeout=60)
        assert again.status_code == 200
    assert api.log.read_text().count("version 2 cannot be served") == 1  # logged once


def test_ready_names_the_load_failure_of_the_default_alias(store: Store, tmp_path: Path) -> None:
    with running_api(
        tmp_path,
        store.uri,
        "stale-code",
        coinflow_refresh_s="0",
        coinflow_default_alias="challenger",
    ) as api:
        ready = httpx.get(f"{api.url}/ready", timeout=10)
        assert ready.status_code == 503
        reasons = " ".join(ready.json()["reasons"])
        assert "v2 failed to load" in reasons and "altered after registration" in reasons
        assert "not set in the registry" not in reasons


def _answers(url: str, versions: list[int]) -> dict[tuple[int, int], Any]:
    """Every version's answer (horizon 1 and 7), prediction id aside."""
    out = {}
    for version in versions:
        for horizon in (1, 7):
            answer = httpx.post(
                f"{url}/predict?version={version}", json={"horizon": horizon}, timeout=120
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            body.pop("prediction_id")
            out[version, horizon] = body
    return out


def _in_copy(copy: Path, code: str, *args: str) -> str:
    """Run Python code with the copy's packages (not the checkout's) on the path."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=copy,
        env=clean_env(PYTHONPATH=str(copy)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


REGISTER = """
import sys
import mlflow
from mlflow import MlflowClient
from core.tracking import TrackingSettings, configure_mlflow
from registry.lineage import version_tags_from_run
uri, name, run_ids = sys.argv[1], sys.argv[2], sys.argv[3:]
configure_mlflow(TrackingSettings(mlflow_tracking_uri=uri, coinflow_experiment="serving-tests"))
client = MlflowClient()
for run_id in run_ids:
    version = mlflow.register_model(f"runs:/{run_id}/model", name).version
    kind = client.get_run(run_id).data.params.get("kind", "torch")
    for tag, value in version_tags_from_run(client.get_run(run_id), kind).items():
        client.set_model_version_tag(name, version, tag, value)
client.set_registered_model_alias(name, "champion", "1")
print(version)
"""
BASELINE_WITH_THIS_KERNEL = """
import sys
from mlflow import MlflowClient
from core.paths import Project
from core.tracking import TrackingSettings, configure_mlflow
from registry.register import baseline_run
from registry.scoring import load_eval_set
from registry.store import Registry
from core.fingerprint import code_fingerprint
uri, root = sys.argv[1], sys.argv[2]
experiment = configure_mlflow(
    TrackingSettings(mlflow_tracking_uri=uri, coinflow_experiment="serving-tests")
)
proj = Project(__import__("pathlib").Path(root))
run_id = baseline_run(Registry("kernel-change", MlflowClient(), experiment), load_eval_set(proj),
                      "persistence", proj)
print(run_id, code_fingerprint())
"""


def test_old_versions_answer_byte_identically_after_the_kernel_changes(
    store: Store, tmp_path: Path
) -> None:
    """(a) A deploy changes the kernel's day-1 arithmetic. After the restart every version
    registered before answers byte-identically (it runs the kernel it shipped, under a private
    name); a version trained after it computes with the new arithmetic; (c) each answer's
    lineage names the kernel that computed it."""
    runs = [store.manifest["versions"][str(v)]["run_id"] for v in (1, 2, 3)]
    _in_copy(REPO, REGISTER, store.uri, NAME, *runs)  # v1, v2 (torch), v3 (persistence)
    (tmp_path / "before").mkdir()
    with running_api(tmp_path / "before", store.uri, NAME, coinflow_refresh_s="0") as api:
        before = _answers(api.url, [1, 2, 3])

    copy = fresh_copy(tmp_path / "deploy")
    kernel = copy / "forecasting" / "forecast.py"
    source = kernel.read_text()
    old = "closes[0] = values[-1, CLOSE] * np.exp(first)"
    assert old in source
    kernel.write_text(source.replace(old, "closes[0] = values[-1, CLOSE] * np.exp(first * 1.01)"))
    new_fingerprint = _in_copy(
        copy, "from core.fingerprint import code_fingerprint; print(code_fingerprint())"
    )
    assert new_fingerprint != code_fingerprint()

    # A baseline built by the new code on the same data and config as v3 (the store's project
    # root: params.yaml, features and versions linked by build_registry).
    run_id, fingerprint = _in_copy(
        copy, BASELINE_WITH_THIS_KERNEL, store.uri, str(store.root)
    ).split()
    assert fingerprint == new_fingerprint
    assert _in_copy(copy, REGISTER, store.uri, NAME, run_id) == "4"

    env_root = tmp_path / "after"
    env_root.mkdir()
    with running_api(
        env_root, store.uri, NAME, coinflow_refresh_s="0", pythonpath=str(copy)
    ) as api:
        after = _answers(api.url, [1, 2, 3, 4])
        ready = httpx.get(f"{api.url}/ready", timeout=10).json()
    assert ready["status"] in ("ready", "degraded") and ready["serving_version"] == 1

    for key, body in before.items():
        assert json.dumps(after[key], sort_keys=True) == json.dumps(body, sort_keys=True), key
        assert after[key]["lineage"]["code_fingerprint"] == code_fingerprint()
    for horizon in (1, 7):
        assert after[4, horizon]["lineage"]["code_fingerprint"] == new_fingerprint
    # v4 is v3's model (same data, window and calibration) computed with the new arithmetic:
    # its day-1 log-return quantiles are exactly 1.01 times v3's.
    last = before[3, 1]["history"][-1]["close"]

    def day1(body: dict[str, Any]) -> np.ndarray:
        point = body["forecasts"][0]
        bounds = [b for i in point["intervals"] for b in (i["lower"], i["upper"])]
        return np.log(np.array([point["close"], *bounds]) / last)

    assert np.allclose(day1(after[4, 1]), 1.01 * day1(before[3, 1]), rtol=1e-9, atol=1e-12)
    assert not np.allclose(day1(after[4, 1]), day1(before[3, 1]))


def test_changes_outside_the_kernel_move_no_fingerprint(tmp_path: Path) -> None:
    """(b) Log messages, stage I/O, packaging, serving and registry code are not the kernel."""
    copy = fresh_copy(tmp_path / "copy")
    edits = {
        "pipelines/training/features.py": ("persistence test MAE", "persistence MAE on test"),
        "pipelines/training/packaging.py": ("RECENT_ROWS = 400", "RECENT_ROWS = 401"),
        "serving/app.py": (
            "from __future__ import annotations",
            "from __future__ import annotations\nX = 1",
        ),
        "registry/promote.py": ("max_attempts: int = 3", "max_attempts: int = 4"),
    }
    for name, (old, new) in edits.items():
        text = (copy / name).read_text()
        assert old in text, name
        (copy / name).write_text(text.replace(old, new))
    shutil.rmtree(copy / "tests")
    printed = _in_copy(
        copy, "from core.fingerprint import code_fingerprint; print(code_fingerprint())"
    )
    assert printed == code_fingerprint()
    # ...while one changed number in the kernel moves it.
    scores = copy / "forecasting" / "scores.py"
    scores.write_text(scores.read_text().replace("* 100)", "* 100.0 + 0)"))
    moved = _in_copy(
        copy, "from core.fingerprint import code_fingerprint; print(code_fingerprint())"
    )
    assert moved != code_fingerprint()


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
