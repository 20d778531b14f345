"""The registry against a real `mlflow server` (Postgres backend store, proxied local artifacts):
register, persistence champion, promote, refuse worse, rollback, two racing promoter processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.paths import Project
from registry.errors import NothingToDoError
from tests.integration.conftest import StartServer
from tests.registry_scenarios import POLICY, check_race, race_promotions, train_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def server_store(
    fresh_pg_db: str, mlflow_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """MLFLOW_TRACKING_URI pointing at a fresh server on a fresh Postgres database."""
    url = mlflow_server(fresh_pg_db, tmp_path / "artifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
    monkeypatch.setenv("COINFLOW_EXPERIMENT", "coinflow")
    monkeypatch.setenv("COINFLOW_PROGRESS", "0")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return url


def test_promotion_lifecycle_on_mlflow_server(server_store: str, learnable_workspace: Path) -> None:
    from registry.aliases import rollback
    from registry.lineage import read_lineage
    from registry.promote import promote
    from registry.records import read_record
    from registry.register import ensure_champion, register_run
    from registry.scoring import load_eval_set
    from registry.store import aliases, get_version, open_registry

    ws = learnable_workspace
    runs = train_runs(ws)  # two models logged through the server's artifact proxy
    eval_set = load_eval_set(Project(ws))
    registry = open_registry("btc-forecaster")
    assert registry.client.tracking_uri == server_store

    persistence = ensure_champion(registry, eval_set, Project(ws))
    good = register_run(registry, runs.good)
    out = promote(registry, eval_set, POLICY)
    assert out.decision.promote and out.champion_after == good
    assert aliases(registry) == {"champion": good, "previous-champion": persistence}
    assert read_record(registry, out.record_run_id)["champion"]["version"] == persistence
    lineage = read_lineage(registry, get_version(registry, "champion"), ["champion"], Project(ws))
    assert lineage.sweep["id"] == runs.parent and lineage.run["status"] == "FINISHED"
    assert lineage.data_on_disk.startswith("matches")

    medium = register_run(registry, runs.medium)
    refused = promote(registry, eval_set, POLICY)
    assert not refused.decision.promote and refused.champion_after == good
    assert aliases(registry) == {
        "champion": good,
        "previous-champion": persistence,
        "challenger": medium,
    }

    back = rollback(registry, "integration test")
    assert (back.from_version, back.to_version) == (good, persistence)
    assert aliases(registry) == {
        "champion": persistence,
        "previous-champion": good,
        "challenger": medium,
    }
    with pytest.raises(NothingToDoError):
        rollback(open_registry("btc-empty"))

    # Two promoter processes, both scored against the persistence champion, race to commit.
    race = open_registry("btc-race")
    seed = ensure_champion(race, eval_set, Project(ws))
    race_good, race_medium = register_run(race, runs.good), register_run(race, runs.medium)
    out_race = race_promotions(race.name, ws, (race_good, race_medium))
    check_race(race.client, race.name, out_race, seed, race_good, race_medium)
