"""DVC experiments run in their own workspace: `dvc exp run --temp` and two queued experiments
run by `dvc queue start -j 2` each finish with their own params and outputs, and the user's
workspace (params.yaml, metrics/, reports/, data/) is byte-identical afterwards."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.repo_copy import pulled_copy, run

pytestmark = [pytest.mark.data, pytest.mark.slow]
WATCHED = ("params.yaml", "metrics", "reports", "data")
PARAM = "validate.drift.alpha"  # read by the validate stage, recorded in metrics/validation.json


def snapshot(work: Path) -> dict[str, str]:
    """sha256 of every file under the watched paths of a workspace."""
    out = {}
    for name in WATCHED:
        root = work / name
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            out[path.relative_to(work).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def experiments(shown: Any) -> Iterator[dict[str, Any]]:
    """Every experiment record ({"name", "data": {params, metrics}}) in `dvc exp show --json`."""
    if isinstance(shown, list):
        for item in shown:
            yield from experiments(item)
    elif isinstance(shown, dict):
        data = shown.get("data")
        if shown.get("name") and isinstance(data, dict) and "params" in data:
            yield shown
        for value in shown.values():
            if isinstance(value, list | dict):
                yield from experiments(value)


def drift_alphas(record: dict[str, Any]) -> tuple[float, set[float]]:
    """(the param an experiment ran with, the alphas its metrics/validation.json recorded)."""
    params = record["data"]["params"]["params.yaml"]["data"]
    metrics = record["data"]["metrics"]["metrics/validation.json"]["data"]
    return params["validate"]["drift"]["alpha"], {v["drift"]["alpha"] for v in metrics.values()}


def test_temp_and_queued_experiments_stay_in_their_own_workspace(tmp_path: Path) -> None:
    work, env = pulled_copy(tmp_path / "repo", tmp_path)
    # The project root comes from the directory DVC runs each stage in (its own copy of the
    # workspace), exactly as a user's shell would have it: no COINFLOW_WORKDIR.
    env = {k: v for k, v in env.items() if k != "COINFLOW_WORKDIR"}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["dvc", "repro", "validate"], work, env)
    run(["git", "add", "-A"], work, env)
    run([*git, "commit", "-qm", "validated"], work, env)
    before = snapshot(work)
    assert "metrics/validation.json" in before and any(k.startswith("reports/") for k in before)

    temp = ["dvc", "exp", "run", "--temp", "-n", "temp-a02", "-S", f"{PARAM}=0.02", "validate"]
    assert "temp-a02" in run(temp, work, env)
    for name, alpha in (("queued-a03", 0.03), ("queued-a04", 0.04)):
        queue = ["dvc", "exp", "run", "--queue", "-n", name, "-S", f"{PARAM}={alpha}", "validate"]
        run(queue, work, env)
    run(["dvc", "queue", "start", "-j", "2"], work, env)
    deadline = time.monotonic() + 300
    while True:
        status = run(["dvc", "queue", "status"], work, env)
        if "Running" not in status and "Queued" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status.count("Success") == 2, status

    shown = json.loads(
        subprocess.run(
            ["dvc", "exp", "show", "--json"], cwd=work, env=env, capture_output=True, check=True
        ).stdout
    )
    found = {e["name"]: drift_alphas(e) for e in experiments(shown) if e["name"] != "workspace"}
    assert found == {
        "temp-a02": (0.02, {0.02}),
        "queued-a03": (0.03, {0.03}),
        "queued-a04": (0.04, {0.04}),
    }
    assert snapshot(work) == before  # params, metrics, reports and data untouched
