"""GET /models/{version}/decision and GET /models/compare, in process over a private copy of the
session store: the decision a real promotion recorded, and every version on the same days."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from serving_helpers import Store, app_settings, copy_store

from core.paths import Project
from registry.policy import Policy
from registry.records import decisions_experiment, record_runs
from registry.store import Registry

pytestmark = pytest.mark.serving
NAME = "btc-forecaster"


@pytest.fixture(scope="module")
def decided(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Any]]:
    """A copy of the store where v2 (a 2-epoch torch model) was judged against champion v1 by
    the real promotion (the CRPS rule), on the session workspace's test days."""
    from registry.promote import promote
    from registry.scoring import load_eval_set

    copy = copy_store(store, tmp_path_factory.mktemp("decisions"))
    with pytest.MonkeyPatch.context() as mp:
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.setenv(key, copy.uri)
        mp.setenv("COINFLOW_WORKDIR", str(store.root))  # its data/ links to the features
        mlflow.set_tracking_uri(copy.uri)
        mlflow.set_registry_uri(copy.uri)
        client = MlflowClient(tracking_uri=copy.uri, registry_uri=copy.uri)
        experiment = client.get_experiment_by_name("serving-tests")
        assert experiment is not None
        registry = Registry(NAME, client, experiment.experiment_id)
        # The session store has no gate record (ge_status failed); this copy says it passed.
        client.set_model_version_tag(NAME, "2", "coinflow.ge_status", "success")
        policy = Policy(margin=0.0, max_mase=1.0, metric="crps", alpha=0.05, coverage_tol=0.05)
        outcome = promote(registry, load_eval_set(Project(store.root)), policy, 2)
        yield copy, (registry, outcome)
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(decided: tuple[Store, Any]) -> Iterator[TestClient]:
    """The real app, in process, over the copy (COINFLOW_WORKDIR: the features are there)."""
    from serving.app import create_app

    copy, _ = decided
    settings = app_settings(copy.uri, NAME, coinflow_refresh_s=0)
    with TestClient(create_app(settings)) as api:
        deadline = time.monotonic() + 60
        while api.get("/ready").json().get("startup") != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
        yield api


def test_decision_records_live_in_their_own_experiment(decided: tuple[Store, Any]) -> None:
    _, (registry, outcome) = decided
    own = decisions_experiment(registry)
    assert own is not None and own != registry.experiment_id
    run = registry.client.get_run(outcome.record_run_id)
    assert run.info.experiment_id == own
    assert registry.client.get_experiment(own).name == "serving-tests-decisions"
    training = registry.client.search_runs(
        [registry.experiment_id], "tags.`coinflow.kind` = 'promotion'"
    )
    assert training == []  # the training experiment lists training runs and sweeps only
    assert outcome.record_run_id in [r.info.run_id for r in record_runs(registry)]


def test_decision_of_a_judged_version_names_rule_reason_and_numbers(
    client: TestClient, decided: tuple[Store, Any]
) -> None:
    _, (_, outcome) = decided
    body = client.get("/models/2/decision").json()
    decision = body["decision"]
    d = outcome.decision
    assert decision["outcome"] == ("promoted" if d.promote else "refused")
    assert decision["reason"] == d.reason and decision["rule"] == d.rule
    assert decision["champion_before"] == 1 and decision["record_run_id"] == outcome.record_run_id
    roles = {s["role"]: s for s in decision["scores"]}
    assert set(roles) == {"challenger", "champion", "baseline"}
    assert roles["challenger"]["crps"] == pytest.approx(d.challenger.crps)
    assert roles["champion"]["coverage_80"] == pytest.approx(d.champion.coverage_80)
    assert decision["eval"]["rows"] > 100
    assert client.get("/models/3/decision").json()["decision"] is None  # never judged
    missing = client.get("/models/99/decision")
    assert missing.status_code == 404 and "no version 99" in missing.json()["detail"]
    assert client.get("/models/0/decision").status_code == 422


def test_compare_scores_every_version_on_the_promotion_days(
    client: TestClient, decided: tuple[Store, Any], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.records import read_record

    monkeypatch.setenv("COINFLOW_WORKDIR", str(store.root))  # the API's workspace: features
    _, (registry, outcome) = decided
    started = time.monotonic()
    body = client.get("/models/compare").json()
    first_s = time.monotonic() - started
    d = outcome.decision
    assert body["eval"] == read_record(registry, outcome.record_run_id)["eval"]
    by_version = {v["version"]: v for v in body["versions"]}
    assert sorted(by_version) == [1, 2, 3]
    # The same days as the promotion: its scores of v2 and v1 are the comparison's.
    assert by_version[2]["crps"] == pytest.approx(d.challenger.crps, rel=1e-9)
    assert by_version[1]["crps"] == pytest.approx(d.champion.crps, rel=1e-9)
    assert by_version[1]["mase"] == pytest.approx(d.champion.mase, rel=1e-9)
    assert body["baseline"]["crps"] == pytest.approx(d.baseline.crps, rel=1e-9)
    assert by_version[2]["decision"]["reason"] == d.reason
    assert "champion" in by_version[outcome.champion_after]["aliases"]
    assert by_version[3]["kind"] == "persistence" and by_version[3]["decision"] is None
    started = time.monotonic()
    again = client.get("/models/compare").json()
    cached_s = time.monotonic() - started
    assert again == body
    assert cached_s < max(0.5, first_s / 3), (first_s, cached_s)  # cached: no re-scoring


def test_compare_without_evaluation_data_is_a_clear_404(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.errors import NotFoundError
    from serving.comparison import SameDayScores

    monkeypatch.setenv("COINFLOW_WORKDIR", str(tmp_path))  # no features here
    with pytest.raises(NotFoundError, match="no evaluation data") as raised:
        SameDayScores().eval_set()
    assert str(tmp_path) not in str(raised.value)  # no local path for HTTP clients
