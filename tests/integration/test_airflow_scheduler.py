"""coinflow_fetch → dataset Asset → coinflow_train on a real, distributed Airflow: api-server,
scheduler and dag-processor on Postgres, the CeleryExecutor with Redis as broker, Postgres as
result backend and two Celery workers; the stages log through one `mlflow server` (Postgres
backend store, proxied artifacts) and sweep into one Optuna study on Postgres.

The workspace holds the real exports up to 2024-09-30; the source holds them whole. Triggering
coinflow_fetch fetches October, cuts v0.4 (used by params.yaml), validates it and emits the Asset
event, and the scheduler then starts exactly one coinflow_train run for it, whose two mapped sweep
tasks run on the two workers (one task each: concurrency 1, prefetch 1), sharing the study. A
second fetch finds no new day: it short-circuits, emits nothing, changes no params and no train
run follows. coinflow_train triggered by hand with the data_version Param on the same data
reuses the finished sweep: no new run, version or alias. Every process started is stopped.
(The failed-gate path runs under dag.test() in tests/dags/test_dag_run.py.)
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dags.airflow_cluster import Airflow, Api, wait_for
from tests.dags.airflow_helpers import (
    AFTER_SHORT_CIRCUIT,
    FETCH_TASKS,
    NEW_CUTOFF,
    NEW_VERSION,
    REPO,
    TRAIN_TASKS,
    UNTIL,
    airflow_env,
    aliases,
    make_workspace,
    migrate,
    sweep_runs,
    tiny_params,
    version_md5,
    write_exports,
)
from tests.integration.conftest import StartServer
from tests.processes import TAG, free_port, pg_database

pytestmark = [pytest.mark.integration, pytest.mark.dags, pytest.mark.slow]

FETCH, TRAIN = "coinflow_fetch", "coinflow_train"
N_TRIALS = 4  # the workspace's sweep.n_trials: the Asset-triggered run uses the Param defaults
READY_S, RUN_S = 300.0, 900.0  # generous: a loaded 2-core box
# The scheduler's idle sleep between loops (default 1 s): each task's end is noticed, and its
# downstream queued, within it. QUIET_S covers a dozen such loops.
LOOP_S, QUIET_S = 0.25, 3.0
MODEL = tiny_params()["registry"]["model_name"]
BROKER_DB = 13  # a Redis database of these tests' own (compose's broker uses 0)
WORKERS = ("worker-a", "worker-b")


class Cluster(Airflow):
    """The Airflow, plus where its stages write: the MLflow server and the Optuna storage."""

    tracking_uri: str
    optuna_url: str

    def mlflow(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


def _forget_queue(redis_url: str, token: str) -> None:
    """Delete what this run left on the broker: its queue and bindings (named with the token)
    and messages of tasks stopped unfinished (kombu's shared `unacked` hash)."""
    import redis

    broker = redis.Redis.from_url(f"{redis_url}/{BROKER_DB}")
    keys = list(broker.scan_iter(match=f"*{token}*"))
    if keys:
        broker.delete(*keys)
    for tag, message in broker.hscan_iter("unacked"):
        if token.encode() in message:
            broker.hdel("unacked", tag)
            broker.zrem("unacked_index", tag)
    broker.close()


@pytest.fixture
def airflow(
    tmp_path: Path,
    fresh_pg_db: str,
    postgres_url: str,
    redis_url: str,
    mlflow_db: str,
    mlflow_server: StartServer,
) -> Iterator[Cluster]:
    """api-server + scheduler + dag-processor + two Celery workers on a fresh Postgres metadata
    DB (also the result backend), a queue of their own on Redis; all stopped after."""
    home, state, logs = tmp_path / "airflow", tmp_path / "state", tmp_path / "logs"
    for folder in (home, state, logs):
        folder.mkdir()
    # v0.3 alone: the cut writes, and the gate validates, v0.3 and v0.4 rather than four versions
    workdir = make_workspace(
        tmp_path / "workspace", n_trials=N_TRIALS, until=UNTIL, newest_only=True
    )
    source = write_exports(tmp_path / "source")
    password = secrets.token_urlsafe(16)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    port, token = free_port(), secrets.token_hex(4)
    queue = f"coinflow-test-{token}"  # concurrent runs on one Redis never share tasks
    with pg_database(postgres_url, "optuna") as optuna_url:
        env = airflow_env(
            home,
            workdir,
            state,
            sql_conn=fresh_pg_db,
            optuna_storage=optuna_url,
            data_source=source,
        )
        del env["COINFLOW_ARTIFACT_ROOT"]  # artifacts go through the server
        env.update(
            {
                TAG: token,
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                # a task's calls to the execution API wait 30 s, not 5 (5 tries, then the task
                # fails): a busy 2-core box answers slower than that
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
                "AIRFLOW__CELERY__BROKER_URL": f"{redis_url}/{BROKER_DB}",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{fresh_pg_db}",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),
                "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple."
                "simple_auth_manager.SimpleAuthManager",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(LOOP_S),
                # coinflow_train's Params list the versions in params.yaml: reparsed soon after
                # the cut (default every 30 s), the manual run can name v0.4
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                # the scheduler creates Asset-triggered runs; coinflow_fetch runs only when
                # this test triggers it (no @daily run on unpausing)
                "COINFLOW_FETCH_SCHEDULE": "none",
            }
        )
        with ThreadPoolExecutor(1) as background:  # the metadata DB migrates meanwhile
            migrated = background.submit(migrate, env, logs / "migrate.log")
            tracking = mlflow_server(mlflow_db, tmp_path / "mlflow-artifacts")
            migrated.result()
        env.update({"MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking})
        af = Cluster(env, logs, port, password)
        af.tracking_uri, af.optuna_url = tracking, optuna_url
        try:
            af.start(
                "api-server",
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            )
            af.start("scheduler", "scheduler", "--skip-serve-logs")
            af.start("dag-processor", "dag-processor")
            for name in WORKERS:
                af.start(
                    name,
                    *("celery", "worker", "--celery-hostname", f"{name}-{token}@127.0.0.1"),
                    *("--queues", queue, "--concurrency", "1", "--skip-serve-logs"),
                    *("--without-mingle", "--without-gossip"),
                    env={
                        # two workers on one host: each names itself in its task instances
                        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.dags.worker_host.hostname",
                        # the default config, imported after the libraries every task imports:
                        # forked from the worker, the task processes start with them loaded
                        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "tests.dags.worker_host."
                        "CELERY_CONFIG",
                        "COINFLOW_WORKER_HOST": name,
                        "PYTHONPATH": str(REPO),
                    },
                )
            yield af
        finally:
            left = af.stop()
            _forget_queue(redis_url, token)
        assert not left, f"processes outlived the stop: {left}"


def _states(run: dict[str, Any]) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in run["tasks"] if t["map_index"] < 0}


def _workers_started(airflow: Cluster) -> bool:
    """Both Celery workers connected to the broker and consuming (their own log says so)."""
    return all(" ready." in airflow.tail(name, 100_000) for name in WORKERS)


def test_new_days_train_once_on_two_celery_workers(airflow: Cluster) -> None:
    api = Api(airflow, READY_S, RUN_S)
    for dag_id in (FETCH, TRAIN):
        api.unpause(dag_id)
    # both must consume before the sweep is queued, or one worker could take both tasks
    wait_for("two Celery workers ready", airflow, lambda: _workers_started(airflow), READY_S)

    # 1. new days at the source: fetch → cut v0.4 → gate → Asset event
    fetch = api.finished(FETCH, api.trigger(FETCH))
    assert fetch["state"] == "success", _states(fetch)
    assert _states(fetch) == dict.fromkeys(FETCH_TASKS, "success")
    assert api.xcom(FETCH, fetch["dag_run_id"], "fetch") == {"btc": 31, "eth": 31, "gold": 23}
    params = yaml.safe_load((airflow.workdir / "params.yaml").read_text())
    assert params["data"]["version"] == NEW_VERSION  # cut with --use
    assert params["data"]["versions"][NEW_VERSION] == NEW_CUTOFF.isoformat()
    assert (airflow.workdir / f"reports/validation/{NEW_VERSION}/index.html").is_file()
    md5 = version_md5(airflow.workdir, NEW_VERSION)
    announced = {"version": NEW_VERSION, "md5": md5}
    assert api.xcom(FETCH, fetch["dag_run_id"], "announce") == announced

    # 2. ... and the scheduler starts coinflow_train for that event, once
    first = wait_for("a coinflow_train run", airflow, lambda: api.runs(TRAIN), READY_S)[0]
    train = api.finished(TRAIN, first["dag_run_id"])
    assert train["run_type"] == "asset_triggered"
    assert train["state"] == "success", _states(train)
    assert {t["task_id"] for t in train["tasks"]} == set(TRAIN_TASKS)
    assert {t["state"] for t in train["tasks"]} == {"success"}
    events = api.get(f"/dags/{TRAIN}/dagRuns/{train['dag_run_id']}/upstreamAssetEvents")
    assert [e["extra"] for e in events["asset_events"]] == [announced]
    chosen = api.xcom(TRAIN, train["dag_run_id"], "dataset")
    assert chosen == {"data_version": NEW_VERSION, "md5": md5, "by": "asset"}
    # every task went through the Celery queue; the two mapped sweep tasks ran one per worker
    queue = airflow.env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    assert {t["queue"] for t in train["tasks"]} == {queue}
    sweep = {t["map_index"]: t for t in train["tasks"] if t["task_id"] == "run_trials"}
    assert sorted(sweep) == [0, 1]
    assert sorted(t["hostname"] for t in sweep.values()) == sorted(WORKERS)
    for i, ti in sweep.items():  # and each worker's own log shows it took that task
        took = airflow.tail(ti["hostname"], 1_000_000).splitlines()
        assert any("run_trials" in ln and f"map_index={i}" in ln for ln in took), ti["hostname"]
    ran = [int(api.xcom(TRAIN, train["dag_run_id"], "run_trials", i)) for i in sorted(sweep)]
    assert sum(ran) == N_TRIALS  # the workers shared one budget

    # one Optuna study on Postgres holds every trial, each run inside a mapped sweep task
    import optuna

    (study,) = optuna.get_all_study_names(airflow.optuna_url)
    trials = optuna.load_study(study_name=study, storage=airflow.optuna_url).get_trials()
    assert sorted(t.number for t in trials) == list(range(N_TRIALS))
    host_of = {ti["pid"]: ti["hostname"] for ti in sweep.values()}
    hosts = Counter(host_of.get(t.user_attrs["coinflow_worker"]["pid"]) for t in trials)
    print(f"  trials per worker: {dict(hosts)} (run_trials returned {ran})")
    assert None not in hosts and sum(hosts.values()) == N_TRIALS

    # ... and one MLflow server their runs: one sweep on the new version, the champion set
    client = airflow.mlflow()
    parents, trial_runs = sweep_runs(client)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["coinflow.data_version"] == NEW_VERSION
    assert parents[0].data.tags["coinflow.dvc_md5"] == md5  # the sweep ran on the new version
    assert len(trial_runs[parents[0].info.run_id]) == N_TRIALS  # one study, no overshoot
    assert parents[0].info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied
    assert "champion" in aliases(client)
    assert (airflow.workdir / "data/features/meta.json").is_file()  # features of v0.4 written

    # 3. no new day: fetch short-circuits, no Asset event, no params change, no train run
    params_before = (airflow.workdir / "params.yaml").read_bytes()
    again = api.finished(FETCH, api.trigger(FETCH))
    assert again["state"] == "success", _states(again)
    states = _states(again)
    assert {states["fetch"], states["has_new_day"]} == {"success"}
    assert {states[t] for t in AFTER_SHORT_CIRCUIT} == {"skipped"}
    assert api.xcom(FETCH, again["dag_run_id"], "fetch") == {"btc": 0, "eth": 0, "gold": 0}
    assert (airflow.workdir / "params.yaml").read_bytes() == params_before  # no second version
    assert len(api.asset_events(FETCH)) == 1
    # nothing queued for the scheduler to turn into a run, and none made in a dozen loops
    assert api.get(f"/dags/{TRAIN}/assets/queuedEvents")["total_entries"] == 0
    time.sleep(QUIET_S)
    assert [r["dag_run_id"] for r in api.runs(TRAIN)] == [train["dag_run_id"]]
    assert len(sweep_runs(client)[0]) == 1

    # 4. coinflow_train by hand with the data_version Param, same data: the finished sweep is
    # reused, nothing is swept, registered or moved
    def snapshot() -> dict[str, Any]:
        parents, trials = sweep_runs(client)
        return {
            "aliases": aliases(client),
            "versions": len(client.search_model_versions(f"name = '{MODEL}'")),
            "trials": {k: len(v) for k, v in trials.items()},
            "parents": {p.info.run_id: (p.info.status, p.info.end_time) for p in parents},
        }

    def offers_new_version() -> bool:  # the dag-processor reparsed the DAG after the cut
        params_ = api.get(f"/dags/{TRAIN}/details")["params"]
        return NEW_VERSION in params_["data_version"]["schema"]["enum"]

    wait_for("coinflow_train's Params to offer v0.4", airflow, offers_new_version, READY_S)
    before = snapshot()
    manual = api.finished(TRAIN, api.trigger(TRAIN, {"data_version": NEW_VERSION}))
    assert manual["run_type"] == "manual"
    assert manual["state"] == "success", _states(manual)
    run_id = manual["dag_run_id"]
    chosen = api.xcom(TRAIN, run_id, "dataset")
    assert chosen == {"data_version": NEW_VERSION, "md5": None, "by": "param"}
    assert [job["reused"] for job in api.xcom(TRAIN, run_id, "open_sweep")] == [True]
    closed = api.xcom(TRAIN, run_id, "close_sweep")
    assert closed["reused"] is True and closed["parent_run_id"] in before["parents"]
    assert snapshot() == before  # no new parent or trial run, no new version, no alias moved
