"""dag.test() on a tiny workspace: a fetch whose new version fails the GE gate announces nothing.

The paths that succeed (new days → cut → gate → Asset → train; no new day → short-circuit; a
manual data_version Param re-run that sweeps nothing) run under the real scheduler in
tests/integration/test_airflow_scheduler.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dags.airflow_helpers import (
    UNTIL,
    airflow_env,
    make_workspace,
    migrate,
    mlflow_client,
    run_dag_test,
    spike_btc_close,
    write_exports,
)

pytestmark = [pytest.mark.dags, pytest.mark.slow]


def test_failed_gate_announces_nothing(tmp_path: Path) -> None:
    home, state = tmp_path / "airflow", tmp_path / "state"
    home.mkdir()
    state.mkdir()
    workdir = make_workspace(tmp_path / "workspace", until=UNTIL)
    source = write_exports(tmp_path / "source")
    for folder in (workdir / "data" / "raw", source):  # the same spike both sides: no conflict
        spike_btc_close(folder / "btc.csv")  # one close 10x: |log move| 2.3 > 0.7
    env = airflow_env(home, workdir, state, data_source=source)
    migrate(env, tmp_path / "migrate.log")
    client = mlflow_client(state)
    assert client.search_registered_models() == []  # an empty store: nothing to train on yet

    result = run_dag_test(
        env, "coinflow_fetch", {}, "2024-11-04T00:00:00+00:00", tmp_path / "gate.log"
    )

    assert result["state"] == "failed"
    tasks = result["tasks"]
    assert {tasks[t] for t in ("fetch", "has_new_day", "cut_version")} == {"success"}
    assert tasks["validate"] == "failed"
    assert {tasks["monitor_score"], tasks["announce"]} == {"upstream_failed"}
    assert result["events"] == []
    assert client.search_registered_models() == []  # nothing registered, no alias set
    assert not (workdir / "data" / "features").exists()
    log = (tmp_path / "gate.log").read_text()
    assert "failed the Great Expectations gate" in log and "btc_log_move" in log
