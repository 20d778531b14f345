"""`coinflow simulate`: replay the platform day by day over past data, in a private workspace.

Each simulated day d, in this order:
1. the truth arrives: the raw exports are cut at d (pipelines.data.version.align_assets, rows
   <= d only: the platform's rows that day) and serving.monitoring.monitor.score (`coinflow
   monitor score`) scores every logged forecast whose day now has a close, applies the monitor
   rule of params.yaml `monitor` (alert; rollback when auto_rollback is on) and advances every
   served version's calibration state by the day's close;
2. every `retrain_every` days: the cut becomes a dataset version that must pass the Great
   Expectations gate, gets its features (train-only scaler), a small Optuna sweep
   (pipelines.sweep), and the register → promote flow of `coinflow registry release` decides
   whether the champion alias moves;
3. the API reloads (POST /admin/reload: aliases and calibration states, as its periodic refresh
   would) and answers POST /predict for the champion, and for previous-champion (the version
   the rollback rule compares with, and each move's "did it pay off"), from the last rows <= d,
   `horizon` days ahead; the prediction log records every answer.
Before the first day the same release flow trains the first champion on the days before it.
Every decision (promotion, rollback, alert) is dated with the simulated day it was taken on
(registry.records.decided_on), never the wall clock.

Everything happens in a private workspace (simulation.workspace): the user's MLflow
store, registry and prediction log are never opened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.params import Params
from core.paths import Project
from forecasting.forecast import MAX_HORIZON
from pipelines.data.cut import last_common_day
from pipelines.data.ingest import load_assets
from serving.monitoring.trusted import PlatformRows
from simulation.workspace import (
    Plan,
    Simulation,
    SimulationError,
    check_workdir,
    isolated,
    workspace_env,
    write_params,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from core.params import MonitorParams
    from registry.store import Registry
    from serving.monitoring.states import Loader
    from simulation.api import Api
__all__ = [
    "Plan",
    "Simulation",
    "SimulationError",
    "check_plan",
    "cut_at",
    "simulate",
]

log = logging.getLogger(__name__)
NAME_PREFIX = "sim-"  # dataset versions cut by the replay: sim-<day>


def cut_at(assets: dict[str, pd.DataFrame], start: dt.date, day: dt.date) -> pd.DataFrame:
    """The dataset as it stood at day's close: pipelines.version's cut with `day` as cut-off
    (BTC rows <= day; ETH and gold carried forward from days <= day only)."""
    from pipelines.data.version import align_assets

    return align_assets(**assets, start=start, cutoff=day)


def check_plan(plan: Plan, assets: dict[str, pd.DataFrame], params: Params) -> None:
    """Refuse a replay that cannot run, naming what is wrong (before anything is written)."""
    if plan.retrain_every < 1:
        raise SimulationError(f"--retrain-every must be >= 1 day, got {plan.retrain_every}")
    if not 1 <= plan.horizon <= MAX_HORIZON:
        raise SimulationError(f"--horizon must be 1 .. {MAX_HORIZON} days, got {plan.horizon}")
    if plan.trials < 1 or plan.epochs < 1:
        raise SimulationError(
            f"--trials and --epochs must be >= 1, got {plan.trials}, {plan.epochs}"
        )
    if plan.end < plan.start:
        raise SimulationError(f"--to {plan.end} is before --from {plan.start}")
    first, last = params.data.start, last_common_day(assets)
    for flag, day in (("--from", plan.start), ("--to", plan.end)):
        if not first < day <= last:
            raise SimulationError(
                f"{flag} {day} is outside the data: the raw exports cover {first} .. {last} "
                "(every series; `coinflow data fetch` brings newer days)"
            )
    history = len(cut_at(assets, first, plan.start - dt.timedelta(days=1)))
    need = params.validate_.min_rows
    if history < need:
        raise SimulationError(
            f"--from {plan.start} leaves {history} days before it to train the first champion "
            f"on; the gate wants at least validate.min_rows = {need} (--from "
            f"{first + dt.timedelta(days=need)} or later)"
        )


# --- one retrain: version → gate → features → sweep → register/promote ---------------------
def release_at(
    proj: Project, frame: pd.DataFrame, day: dt.date, base: Params, plan: Plan
) -> dict[str, Any]:
    """Cut `frame` (rows <= day) as a dataset version and run the chain on it, as `dvc repro`
    would: the GE gate, features, a sweep, then registry.flow.release. Its retrain record."""
    from core.files import file_md5
    from pipelines.gate import validate
    from pipelines.sweep.report import write_sweep_metrics
    from pipelines.sweep.study import run_sweep
    from pipelines.training import features
    from pipelines.training.train import load_training_data
    from registry.flow import release

    began = time.monotonic()
    name = f"{NAME_PREFIX}{day.isoformat()}"
    path = proj.version_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    md5 = file_md5(path)
    # The gate judges this cut alone (each is a prefix of the same raw exports: comparing it
    # with the one before would re-validate that one for nothing).
    params = write_params(proj, base, plan, {name: day})
    validate.main(proj)
    features.main(name, proj)
    sweep = run_sweep(
        params,
        n_trials=plan.trials,
        data=load_training_data(proj.features),
        plots_dir=proj.sweep_plots,
    )
    write_sweep_metrics(sweep, proj.metrics_file("sweep"))
    summary = release(proj)
    return {
        "day": day.isoformat(),
        "data_version": name,
        "rows": len(frame),
        "dvc_md5": md5,
        "sweep_run_id": sweep.parent_run_id,
        "best_params": sweep.best_params,
        "candidate_test_crps": sweep.metrics.get("test_crps"),
        "candidate_test_mase": sweep.metrics.get("test_mase"),
        "version": summary["version"],
        "promoted": bool(summary["promoted"]),
        "champion_after": summary.get("champion_after"),
        "reason": summary["reason"],
        "wall_s": round(time.monotonic() - began, 2),
    }


# --- the replay ---------------------------------------------------------------------------
def replay(
    plan: Plan, workdir: Path, params: Params, assets: dict[str, pd.DataFrame], engine: sa.Engine
) -> Simulation:
    """Run the checked plan in the workspace `workdir` (it exists, empty; isolated() is on)."""
    from core.tracking import configure_mlflow
    from registry.records import decided_on
    from registry.store import open_registry
    from serving.monitoring.states import advance_states
    from simulation.api import new_records, running_api

    began = time.monotonic()
    proj = Project(workdir)
    sim = Simulation(plan, workdir, last_common_day(assets))
    configure_mlflow()
    registry = open_registry(params.registry.model_name)
    seen: set[str] = set()
    eve = plan.start - dt.timedelta(days=1)
    log.info(
        "simulate: first champion from the %s days up to %s",
        len(cut_at(assets, params.data.start, eve)),
        eve,
    )
    with decided_on(eve):
        first = release_at(proj, cut_at(assets, params.data.start, eve), eve, params, plan)
    sim.retrains.append(first | {"initial": True})
    sim.events += new_records(registry, seen)
    monitor_params = load_workspace_params(proj).monitor
    retrain_days = set(plan.retrain_days)
    if plan.skipped_retrain is not None:
        log.info(
            "simulate: no retrain on the last day %s: the version it made could never serve",
            plan.skipped_retrain,
        )
    with running_api(workdir, registry) as api:
        for day in plan.days:
            frame = cut_at(assets, params.data.start, day)
            rows = PlatformRows(frame)
            with decided_on(day):  # what the monitor and the release decide is dated `day`
                truth_arrives(engine, registry, rows, monitor_params, api.packaged)
                if day in retrain_days:
                    done = release_at(proj, frame, day, params, plan)
                    sim.retrains.append(done)
                    log.info("simulate %s: retrain, v%s %s", day, done["version"], done["reason"])
                    # A version the release made champion is calibrated through the day before
                    # it serves, like every other served version.
                    advance_states(engine, registry, rows, api.packaged)
            sim.events += new_records(registry, seen)
            # Alias moves and the day's calibration states reach the API at once, as its
            # periodic refresh would.
            api.reload()
            serve_day(api, registry, frame, sim)
            if (day - plan.start).days % 30 == 29:
                log.info(
                    "simulate %s: %d days served, champion v%s",
                    day,
                    len(sim.served),
                    sim.served[day.isoformat()],
                )
    # The last day's forecast stays unscored: its close arrives after the replay ends.
    sim.wall_s = round(time.monotonic() - began, 1)
    return sim


def serve_day(api: Api, registry: Registry, frame: pd.DataFrame, sim: Simulation) -> None:
    """The day's forecasts through the API: the champion's (what clients get) and, when there
    is one, previous-champion's (the monitor's rollback rule compares the two on the same
    days); both land in the prediction log before the next day starts."""
    from registry.store import CHAMPION, PREVIOUS, aliases

    now = aliases(registry)
    answer = api.forecast(CHAMPION, now[CHAMPION], frame, sim.plan.horizon)
    sim.served[pd.Timestamp(frame.index[-1]).date().isoformat()] = answer["lineage"]["version"]
    if PREVIOUS in now and now[PREVIOUS] != now[CHAMPION]:
        with contextlib.suppress(SimulationError):  # one that no longer loads is not scored
            api.forecast(PREVIOUS, now[PREVIOUS], frame, sim.plan.horizon)
    api.wait_logged()


def load_workspace_params(proj: Project) -> Params:
    """The workspace's params.yaml as it stands."""
    from core.params import load_params

    return load_params(proj.params_file)


def truth_arrives(
    engine: sa.Engine,
    registry: Registry,
    rows: PlatformRows,
    params: MonitorParams,
    load: Loader,
) -> None:
    """The day's close is known: `coinflow monitor score` against the platform's rows up to it
    (the day's cut): scores, the monitor rule, and every served version's calibration state
    advanced through the day (`load` gives a version's PackagedModel)."""
    from serving.monitoring import monitor

    monitor.score(engine, registry, rows, params, days=[rows.last_day], load=load)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Optuna's per-trial lines, HTTP request lines and per-day alert warnings stay out of the
    replay's log (alerts, rollbacks and the gate's drift warnings are in the report and the
    workspace's records); every level is restored afterwards."""
    import optuna

    from core.tracking import quiet_mlflow

    quiet_mlflow()
    levels = dict.fromkeys(
        (
            "httpx",
            "httpx2",
            "serving.cache",
            "registry.flow",
            "registry.register",
            "pipelines.sweep.study",
            "pipelines.sweep.worker",
            "pipelines.training.features",
        ),
        logging.WARNING,
    )
    levels |= {"registry.aliases": logging.ERROR, "pipelines.gate.validate": logging.ERROR}
    saved = {name: logging.getLogger(name).level for name in levels}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def simulate(plan: Plan, source: Project, workdir: Path | None = None) -> dict[str, Any]:
    """Check the plan against the source project's data, replay it in a private workspace,
    write and log the report; the report (with its paths)."""
    import tempfile

    from core.params import load_params
    from registry.store import open_registry
    from serving.log_database import engine_for, migrate
    from serving.monitoring.monitor import logged_days, read_scores
    from simulation.baselines import baseline_crps
    from simulation.report import build_report, publish

    params = load_params(source.params_file)
    assets = load_assets(source.raw)
    check_plan(plan, assets, params)
    check_workdir(workdir)
    root = Path(workdir or tempfile.mkdtemp(prefix="coinflow-simulate-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with isolated(root), quiet_libraries():
        engine = engine_for(workspace_env(root)["COINFLOW_PREDICTION_LOG_URL"])
        migrate(engine)
        sim = replay(plan, root, params, assets, engine)
        name = params.registry.model_name
        frame = cut_at(assets, params.data.start, plan.end)
        baselines = baseline_crps(open_registry(name), frame, plan.days)
        report = build_report(
            sim,
            logged_days(engine, name),
            frame["btc_close"],
            read_scores(engine, name),
            baselines,
            load_workspace_params(Project(root)).monitor.coverage_tol,
        )
        return publish(report, root)
