"""`coinflow simulate`: a 60-day replay with one retrain, asserted on its report, its MLflow run,
its prediction log, its audit trail and the raw data; how the report judges champion moves;
and the refusals of impossible replays."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.project import REPO
from tests.serving.serving_helpers import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START, END = dt.date(2024, 1, 1), dt.date(2024, 2, 29)  # 60 days; the retrain on 2024-01-31
MONITOR = {"window": "30d", "min_days": 20, "max_mase": 1.1, "coverage_tol": 0.1}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short replay (1 trial of 2 epochs per sweep: the loop is under test, not the model)."""
    from core.params import load_params
    from core.paths import project
    from simulation.replay import Plan, simulate

    params = load_params(REPO / "params.yaml").monitor
    assert (params.window_days, params.min_days, params.max_mase, params.coverage_tol) == (
        30,
        MONITOR["min_days"],
        MONITOR["max_mase"],
        MONITOR["coverage_tol"],
    )
    workdir = tmp_path_factory.mktemp("simulate") / "workspace"
    return simulate(Plan(START, END, retrain_every=30, trials=1, epochs=2), project(REPO), workdir)


@pytest.fixture(scope="module")
def btc() -> pd.Series:
    """BTC closes straight from the raw export (not through the replay's code)."""
    from pipelines.data.ingest import load_prices

    return load_prices(REPO / "data" / "raw" / "btc.csv")["close"]


def test_every_day_is_forecast_and_every_known_day_scored(report: dict[str, Any]) -> None:
    s, days = report["summary"], report["days"]
    assert s["forecast_days"] == len(days) == 60
    assert [d["origin"] for d in days] == [
        (START + dt.timedelta(days=i)).isoformat() for i in range(60)
    ]
    assert all(
        d["day"] == (dt.date.fromisoformat(d["origin"]) + dt.timedelta(days=1)).isoformat()
        for d in days
    )
    # The last forecast's close (2024-03-01) arrives after the replay: unscored.
    assert s["scored_days"] == 59 and days[-1]["actual"] is None
    assert all(d["actual"] is not None for d in days[:-1])
    assert report["served"] == {d["origin"]: d["version"] for d in days}
    assert sum(v["days"] for v in report["versions_served"]) == 60


def test_one_retrain_on_the_data_up_to_its_day(report: dict[str, Any], btc: pd.Series) -> None:
    initial, *retrains = report["retrains"]
    assert initial["day"] == "2023-12-31" and initial["initial"]
    assert [r["day"] for r in retrains] == ["2024-01-31"] and report["summary"]["retrains"] == 1
    (retrain,) = retrains
    from_2016 = btc.loc["2016-01-01":"2024-01-31"]
    assert retrain["rows"] == len(from_2016) and retrain["data_version"] == "sim-2024-01-31"
    assert retrain["version"] > initial["version"] and retrain["reason"]
    # Every retrain's decisions are in the audit trail, stamped with the replay's day.
    judged = [e for e in report["events"] if e["day"] == "2024-01-31" and e["action"] != "alert"]
    assert retrain["version"] in {e["version"] for e in judged}
    assert report["initial_champion"] is not None


def test_live_mase_is_scored_against_persistence_by_hand(
    report: dict[str, Any], btc: pd.Series
) -> None:
    scored = [d for d in report["days"] if d["actual"] is not None]
    for d in scored[::10]:  # one day in ten, from the raw export
        actual, origin = btc.loc[d["day"]], btc.loc[d["origin"]]
        assert d["actual"] == pytest.approx(actual) and d["origin_close"] == pytest.approx(origin)
        assert d["abs_error"] == pytest.approx(abs(d["median"] - actual))
        assert d["persistence_abs_error"] == pytest.approx(abs(origin - actual))
    err = np.array([d["abs_error"] for d in scored])
    naive = np.array([d["persistence_abs_error"] for d in scored])
    s = report["summary"]
    assert s["live_mase"] == pytest.approx(err.sum() / naive.sum())
    inside = [d["lower_80"] <= d["actual"] <= d["upper_80"] for d in scored]
    assert s["coverage_80"] == pytest.approx(np.mean(inside))
    # The monitor's own 30-day figure (incremental `monitor score`, day by day) on the last day.
    last = [m for m in report["monitor_30d"] if m["day"] == scored[-1]["day"]]
    version = report["served"][scored[-1]["origin"]]
    (mine,) = [m for m in last if m["version"] == version]
    window = [d for d in scored[-30:] if d["version"] == version]
    assert mine["n"] == len(window)
    assert mine["mase"] == pytest.approx(
        sum(d["abs_error"] for d in window) / sum(d["persistence_abs_error"] for d in window)
    )


def test_alerts_follow_the_monitor_rule(report: dict[str, Any]) -> None:
    by_day = {(m["day"], m["version"]): m for m in report["monitor_30d"]}
    alerts = [e for e in report["events"] if e["action"] == "alert"]
    assert report["summary"]["alerts"] == len(alerts)
    for alert in alerts:
        # The truth of `day` arrived that morning: the champion was judged on its scores to day.
        seen = by_day[(alert["day"], alert["version"])]
        assert seen["n"] >= MONITOR["min_days"]
        assert (
            seen["mase"] > MONITOR["max_mase"]
            or abs(seen["coverage_80"] - 0.8) > MONITOR["coverage_tol"]
            or abs(seen["coverage_95"] - 0.95) > MONITOR["coverage_tol"]
        )
    assert report["summary"]["rollbacks"] == 0  # params.yaml: auto_rollback false


def test_forecasts_went_through_the_api_and_saw_only_the_past(
    report: dict[str, Any], btc: pd.Series
) -> None:
    import sqlalchemy as sa

    from serving import prediction_log

    workdir = Path(report["workdir"])
    engine = sa.create_engine(f"sqlite:///{workdir / 'predictions.db'}")
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                prediction_log.answers.c.origin,
                prediction_log.answers.c.alias,
                prediction_log.answers.c.rows_source,
                prediction_log.answers.c.rows,
                prediction_log.answers.c.version,
            )
        ).all()
    champion = [r for r in rows if r.alias == "champion"]
    assert len(champion) == 60 and {r.rows_source for r in rows} == {"request"}
    for row in champion:
        last = row.rows[-1]
        assert last["date"] == row.origin.isoformat()  # nothing after the origin day was sent
        assert last["btc_close"] == pytest.approx(btc.loc[last["date"]])
        assert report["served"][row.origin.isoformat()] == row.version


def test_decisions_are_dated_with_the_simulated_day(report: dict[str, Any]) -> None:
    """Every decision record, its run and the champion's moves as the Live tab reads them carry
    the simulated day the decision was taken on, never the day the replay ran."""
    import mlflow
    from mlflow import MlflowClient

    from registry.records import alias_moves, read_record, record_runs
    from registry.store import Registry

    uri = report["mlflow"]["tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("coinflow")
    assert experiment is not None
    registry = Registry("btc-forecaster", client, experiment.experiment_id)
    eve = (START - dt.timedelta(days=1)).isoformat()
    mlflow.set_tracking_uri(uri)  # read_record loads the JSON through MLflow's global store
    try:
        runs = record_runs(registry)
        assert runs and {e["record_run_id"] for e in report["events"]} == {
            r.info.run_id for r in runs
        }
        for run in runs:
            decided = dt.datetime.fromisoformat(
                read_record(registry, run.info.run_id)["decided_at"]
            )
            started = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC)
            assert decided == started and eve <= decided.date().isoformat() <= END.isoformat()
        moves = alias_moves(registry)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    assert {m["at"].date().isoformat() for m in moves} <= {e["day"] for e in report["events"]}
    first = report["moves"][0]
    assert (first["day"], first["action"], first["text"]) == (
        eve,
        "first-champion",
        f"first champion v{report['initial_champion']}",
    )
    assert not any("None" in m["text"] for m in report["moves"])


def test_every_answer_used_the_state_advanced_through_its_day(report: dict[str, Any]) -> None:
    """The replay calibrates as the API does: each day the monitor advanced the served versions'
    states by that day's close, and the champion answered with exactly that state."""
    import sqlalchemy as sa

    from serving import prediction_log

    engine = sa.create_engine(f"sqlite:///{Path(report['workdir']) / 'predictions.db'}")
    p, states = prediction_log.answers, prediction_log.calibration_states
    with engine.connect() as connection:
        answers = connection.execute(
            sa.select(p.c.origin, p.c.version, p.c.calibration_source, p.c.calibration_as_of)
            .where(p.c.alias == "champion")
            .order_by(p.c.origin)
        ).all()
        written = connection.execute(sa.select(states.c.version, states.c.as_of)).all()
    assert len(answers) == 60
    for answer in answers:
        assert (answer.calibration_source, answer.calibration_as_of) == ("stored", answer.origin)
        assert (answer.version, answer.origin) in set(written)


def test_coverage_by_volatility_and_horizon(report: dict[str, Any], btc: pd.Series) -> None:
    coverage, s = report["coverage"], report["summary"]
    assert set(coverage["overall"]) == {f"coverage_{n}" for n in (50, 80, 90, 95)}
    assert coverage["overall"]["coverage_80"] == pytest.approx(s["coverage_80"])
    # Terciles by the trailing 30-day volatility known on each forecast day, from the raw export.
    scored = [d for d in report["days"] if d["actual"] is not None]
    returns = np.log(btc).diff()
    vol = {d["origin"]: returns.loc[: d["origin"]].tail(30).std() for d in scored}
    ranked = sorted(scored, key=lambda d: vol[d["origin"]])
    calm = ranked[: len(ranked) // 3 + (len(ranked) % 3 > 0)]
    inside = np.mean([d["lower_80"] <= d["actual"] <= d["upper_80"] for d in calm])
    assert coverage["by_volatility"]["coverage_80_calm"] == pytest.approx(inside)
    assert coverage["by_volatility"]["n"] == len(scored)
    # By horizon day, over the origins whose every day's close is known.
    horizon = report["plan"]["horizon"]
    assert coverage["by_horizon"]["n"] == 60 - horizon
    assert {k for k in coverage["by_horizon"] if k != "n"} == {
        f"coverage_{n}_d{h}" for n in (50, 80, 90, 95) for h in range(1, horizon + 1)
    }


def test_each_champion_move_is_judged_on_the_days_that_followed() -> None:
    """A move pays off when the new champion's CRPS beats the replaced version's (forecast as
    previous-champion) on the same days, up to the next move."""
    from simulation.report import move_outcomes

    origins = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(20)]

    def served(version: int, days: list[dt.date], spread: float) -> pd.DataFrame:
        rows = []
        for origin in days:
            actual = 100.0 + origin.day  # every forecast's median is 100: errors grow
            q = [100.0 - spread, 100.0, 100.0 + spread]
            rows.append(
                {
                    "origin": origin,
                    "day": origin + dt.timedelta(days=1),
                    "version": version,
                    "median": 100.0,
                    "lower_80": q[0],
                    "upper_80": q[2],
                    "lower_95": q[0],
                    "upper_95": q[2],
                    "levels": [0.1, 0.5, 0.9],
                    "quantiles": q,
                    "actual": actual,
                    "origin_close": actual - 1,
                }
            )
        return pd.DataFrame(rows)

    moves = [
        {"day": "2024-01-06", "action": "promote", "champion_before": 1, "champion_after": 2},
        {"day": "2024-01-11", "action": "promote", "champion_before": 2, "champion_after": 3},
    ]
    champion = pd.concat(
        [served(1, origins[:5], 5), served(2, origins[5:10], 10), served(3, origins[10:], 1)]
    )
    previous = pd.concat([served(1, origins[5:10], 1), served(2, origins[10:], 15)])
    first, second = move_outcomes(moves, champion, previous)
    # v2's wider band beats v1's narrow one on days its misses are large; v3 loses to v2.
    assert (first["move"], first["days"], second["days"]) == ("promote v1 → v2", 5, 10)
    assert first["paid_off"] is True and second["paid_off"] is False
    assert first["new_scores"]["crps"] < first["replaced_scores"]["crps"]
    assert second["new_scores"]["crps"] > second["replaced_scores"]["crps"]


def test_cut_at_a_day_never_sees_later_rows(btc: pd.Series) -> None:
    from pipelines.data.ingest import load_assets
    from simulation.replay import cut_at

    assets = load_assets(REPO / "data" / "raw")
    start, day = dt.date(2016, 1, 1), dt.date(2024, 1, 31)
    early, late = cut_at(assets, start, day), cut_at(assets, start, END)
    assert early.index[-1] == pd.Timestamp(day)
    pd.testing.assert_frame_equal(early, late.loc[:day])


def test_report_files_and_mlflow_run(report: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    workdir = Path(report["workdir"])
    json_path, png_path = Path(report["artifacts"]["json"]), Path(report["artifacts"]["png"])
    assert json_path.parent == png_path.parent == workdir / "report"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Readable like every other output (0644 with the usual umask), not a temp file's 0600.
    assert json_path.stat().st_mode & 0o777 == png_path.stat().st_mode & 0o777
    assert json_path.stat().st_mode & 0o044 == 0o044
    on_disk = json.loads(json_path.read_text())
    assert on_disk == json.loads(json.dumps(report, default=str))
    for key in (
        "plan",
        "summary",
        "events",
        "moves",
        "retrains",
        "versions_served",
        "served",
        "days",
        "rolling_30d",
        "monitor_30d",
        "coverage",
        "move_outcomes",
        "mlflow",
        "artifacts",
    ):
        assert key in on_disk, key
    uri = report["mlflow"]["tracking_uri"]
    assert uri == f"sqlite:///{workdir / 'mlruns.db'}"  # the replay's own store, not the user's
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(report["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["coinflow.kind"] == "simulation"
    assert run.data.metrics["live_mase"] == pytest.approx(report["summary"]["live_mase"])
    assert run.data.metrics["scored_days"] == 59
    assert run.data.params["retrain_every"] == "30"
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "simulation")}
    assert logged == {"simulation/simulation.json", "simulation/simulation.png"}
    steps = client.get_metric_history(run.info.run_id, "live_mase_30d")
    assert len(steps) == len([p for p in report["rolling_30d"] if p["mase"] is not None])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from", "2024-03-01", "--to", "2024-02-01"], "--to 2024-02-01 is before --from"),
        (["--from", "2024-01-01", "--to", "2031-01-01"], "--to 2031-01-01 is outside the data"),
        (["--from", "2017-01-01", "--to", "2017-02-01"], "validate.min_rows"),
        (["--retrain-every", "0"], "--retrain-every must be >= 1"),
        (["--from", "2024-13-01"], "is not an ISO date"),
    ],
)
def test_impossible_replays_are_refused_and_write_nothing(
    args: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import app

    monkeypatch.setenv("COINFLOW_WORKDIR", str(REPO))  # the project whose data is replayed
    workdir = tmp_path / "never"
    result = CliRunner().invoke(app, ["simulate", *args, "--workdir", str(workdir)])
    assert result.exit_code == 1, result.output
    assert says in result.output and "simulate refused" in result.output
    assert not workdir.exists()


def test_a_used_workspace_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app

    monkeypatch.setenv("COINFLOW_WORKDIR", str(REPO))
    (tmp_path / "mlruns.db").write_text("another replay's store")
    result = CliRunner().invoke(app, ["simulate", "--workdir", str(tmp_path)])
    assert result.exit_code == 1 and "is not empty" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["mlruns.db"]


def test_the_demo_replay_fills_monitor_score_and_get_monitoring(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo`'s last step, `coinflow simulate --recent N`: the project's champion serves the
    newest version's last N days through the API into the project's prediction log, labelled
    role `replay`; then `coinflow monitor score` and GET /monitoring have real scores."""
    import mlflow
    import sqlalchemy as sa

    from cli.main import app
    from registry.store import Registry, aliases
    from serving import log_database, prediction_log
    from simulation.api import api_on
    from tests.serving.serving_helpers import copy_store

    own = copy_store(store, tmp_path / "store")  # the replay sets (and removes) an alias
    root = tmp_path / "project"  # params.yaml and data/raw: the repository's
    (root / "data").mkdir(parents=True)
    (root / "data" / "raw").symlink_to(REPO / "data" / "raw")
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    log = f"sqlite:///{tmp_path / 'predictions.db'}"
    for key, value in {
        "COINFLOW_WORKDIR": str(root),
        "MLFLOW_TRACKING_URI": own.uri,
        "MLFLOW_REGISTRY_URI": own.uri,
        "COINFLOW_EXPERIMENT": "serving-tests",
        "COINFLOW_MODEL_NAME": "btc-forecaster",
        "COINFLOW_PREDICTION_LOG_URL": log,
    }.items():
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(tracking_uri=own.uri, registry_uri=own.uri)
    registry = Registry("btc-forecaster", client)
    before = aliases(registry)
    try:
        replayed = CliRunner().invoke(app, ["simulate", "--recent", "30"])
        again = CliRunner().invoke(app, ["simulate", "--recent", "30"])
        scored = CliRunner().invoke(app, ["monitor", "score"])
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    assert replayed.exit_code == 0, replayed.output
    assert "replayed the last 30 days of v0.3 (2024-10-02 .. 2024-10-31)" in replayed.output
    assert "btc-forecaster v1 answered 30 POST /predict?alias=replay" in replayed.output
    assert again.exit_code == 0 and "nothing to do" in again.output  # a second demo: no copies
    assert aliases(registry) == before  # `replay` was there only while it ran

    engine = log_database.engine_for(log)
    with engine.connect() as connection:
        answers = connection.execute(
            sa.select(prediction_log.answers.c.origin, prediction_log.answers.c.alias)
        ).all()
    engine.dispose()
    assert sorted(a.origin for a in answers) == [
        dt.date(2024, 10, 2) + dt.timedelta(days=i) for i in range(30)
    ]
    assert {a.alias for a in answers} == {"replay"}

    # The last forecast's close (2024-11-01) is not in data/raw: 29 next days are known.
    assert scored.exit_code == 0, scored.output
    assert "scored 29 forecast day(s) of versions [1]" in scored.output
    assert "ALERT" not in scored.output  # the rule judges the champion role, not a replay
    with api_on(registry, own.uri, own.uri, log) as api:
        body = api.client.get("/monitoring", params={"window": "30d"}).json()
    latest = [r for r in body["latest"] if r["window"] == "30d"]
    assert [(r["version"], r["role"], r["day"]) for r in latest] == [(1, "replay", "2024-10-31")]
    assert latest[0]["n"] == 29 and 0.3 < latest[0]["mase"] < 3
    assert len(body["series"]) == 29 and {r["role"] for r in body["series"]} == {"replay"}
