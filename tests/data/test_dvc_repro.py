"""`dvc pull` + `dvc repro` in a fresh copy runs the whole chain; a second repro is a no-op; DVC
experiments (`dvc exp run --temp`, two queued ones run by `dvc queue start -j 2`) each finish with
their own params and outputs and leave the user's workspace byte-identical; a deleted MLflow store
re-runs the stages whose output lives there."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dags.airflow_helpers import tiny_params
from tests.repo_copy import pulled_copy, run

pytestmark = [pytest.mark.data, pytest.mark.slow]
TINY_SWEEP = {"n_trials": 2, "max_epochs": 2}

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


@pytest.mark.timeout(1200)  # three repros and three experiments: ~5 min quiet, 10+ busy
def test_dvc_repro_from_a_fresh_copy(tmp_path: Path) -> None:
    work, env = pulled_copy(tmp_path / "repo", tmp_path)
    params = tiny_params(n_trials=TINY_SWEEP["n_trials"])  # models that train in seconds
    params["sweep"].update(TINY_SWEEP)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert sorted(p.name for p in (work / "data" / "raw").iterdir()) == [
        "btc.csv",
        "eth.csv",
        "gold.csv",
    ]
    run(["dvc", "repro"], work, env)
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    stages = set(lock["stages"])
    versions = {f"version@{v}" for v in params["data"]["versions"]}  # one stage per version
    chain = {"ingest", *versions, "validate", "features", "store", "train", "sweep", "promote"}
    assert stages == chain
    outs = {o["path"]: o["md5"] for s in versions for o in lock["stages"][s]["outs"]}
    assert len(set(outs.values())) == 3  # each version its own content hash
    for metric in ("baseline", "validation", "train", "sweep", "promotion"):
        assert (work / "metrics" / f"{metric}.json").is_file(), metric
    sweep = json.loads((work / "metrics" / "sweep.json").read_text())
    assert sweep["n_complete"] + sweep["n_pruned"] + sweep["n_failed"] == TINY_SWEEP["n_trials"]
    promotion = json.loads((work / "metrics" / "promotion.json").read_text())
    # v1 is the persistence champion seeded on first use, v2 the EWMA baseline (refused on
    # v0.3: its 80% band covers 73% of test days), v3 the sweep's challenger; the decision is
    # consistent with where `champion` points afterwards.
    assert promotion["champion_before"] == 1 and promotion["version"] == 3
    assert promotion["champion_after"] == (3 if promotion["promoted"] else 1)
    assert promotion["baseline_mase"] == 1.0 and promotion["reason"]
    shown = run(["dvc", "metrics", "show"], work, env)
    assert "metrics/sweep.json" in shown
    second = run(["dvc", "repro"], work, env)
    # Only the store stage runs (always_changed): same store, same identity, nothing downstream.
    assert "Running stage 'store'" in second
    for stage in ("train", "sweep", "promote", "validate"):
        assert f"Running stage '{stage}'" not in second, second

    # DVC experiments stay in their own workspace. The project root comes from the directory DVC
    # runs each stage in (its own copy of the workspace), exactly as a user's shell would have
    # it: no COINFLOW_WORKDIR.
    exp_env = {k: v for k, v in env.items() if k != "COINFLOW_WORKDIR"}
    experiments_stay_in_their_workspace(work, exp_env)

    # The MLflow store is gone (and a data output with it): the stages whose output lives there
    # run again, not restored from dvc's run-cache; lineage of the new champion resolves.
    (tmp_path / "mlflow.db").unlink()
    shutil.rmtree(tmp_path / "mlartifacts")
    shutil.rmtree(work / "data" / "features")
    third = run(["dvc", "repro"], work, env)
    for stage in ("train", "sweep", "promote"):
        assert f"Running stage '{stage}'" in third, third
    lineage = run(["coinflow", "registry", "lineage", "champion"], work, env)
    assert "btc-forecaster" in lineage


def experiments_stay_in_their_workspace(work: Path, env: dict[str, str]) -> None:
    """`dvc exp run --temp` and two queued experiments run with `-j 2` on the validate stage:
    each records its own drift alpha; params, metrics, reports and data are byte-identical."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["git", "add", "-A"], work, env)
    run([*git, "commit", "-qm", "reproduced"], work, env)
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
        time.sleep(0.5)
    assert status.count("Success") == 2, status

    shown = json.loads(
        subprocess.run(
            ["dvc", "exp", "show", "--json"], cwd=work, env=env, capture_output=True, check=True
        ).stdout
    )
    found = {e["name"]: drift_alphas(e) for e in experiments(shown)}
    ran = {"temp-a02": (0.02, {0.02}), "queued-a03": (0.03, {0.03}), "queued-a04": (0.04, {0.04})}
    assert {name: found.get(name) for name in ran} == ran
    # the rest are the workspace and its commit: the params.yaml value, untouched
    assert all(found[name] == (0.01, {0.01}) for name in found.keys() - ran.keys()), found
    assert snapshot(work) == before  # params, metrics, reports and data untouched
