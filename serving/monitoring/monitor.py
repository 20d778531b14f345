"""Closing the loop: score logged forecasts once their day's close is known, act on live error,
and replay any logged answer.

`score` joins the forecasts made on the platform's own rows (serving.monitoring.trusted: no
rows sent, or rows equal to the platform's) with the realized closes of those rows and writes,
per version, role (the alias asked for, or "shadow") and horizon step, live MAE, persistence
MAE on the same origins, MASE, 80/95% coverage, pinball and CRPS over trailing 7/30/90 days
and since the version's promotion (serving.monitoring.live_scores), to:
- the log database's `live_scores` table (GET /monitoring and the UI's Live tab read it),
- one MLflow monitoring run per registered version (next-day scores stepped by day),
- the version's `coinflow.live.*` registry tags (the latest 30-day next-day figures).
Then the monitor rule (params.yaml `monitor`): an unhealthy champion gets an alert record in
the promotion audit trail and a `coinflow.live.alert` tag, and with `auto_rollback` a guarded
rollback when previous-champion scored better over the same days. Last, every served version's
calibration state is advanced by the closes the platform holds (serving.monitoring.states).

`replay` recomputes a logged answer with the version, rows and calibration state it names.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from core import tags
from core.errors import CoinflowError
from serving import prediction_log
from serving.monitoring import rule
from serving.monitoring.live_scores import NEXT_DAY, latest
from serving.monitoring.trusted import PlatformRows, trusted

if TYPE_CHECKING:
    from core.params import MonitorParams
    from forecasting.packaged import PackagedModel
    from registry.store import Registry
    from serving.monitoring.states import Loader
    from serving.predictor import Calibrator
log = logging.getLogger(__name__)
TAG_WINDOW = "30d"


class MonitorError(CoinflowError, ValueError):
    """Monitoring cannot run (no log, no data); the message says why."""


def logged_days(engine: sa.Engine, model_name: str) -> pd.DataFrame:
    """Every logged forecast day of a model, with who made it and from which inputs (a stored
    forecast answered many times under one role comes once)."""
    p, f, d = prediction_log.predictions, prediction_log.forecasts, prediction_log.forecast_days
    roles = sa.select(p.c.alias, p.c.shadow, p.c.forecast_key).distinct().subquery()
    query = (
        sa.select(
            f.c.version,
            roles.c.alias,
            roles.c.shadow,
            f.c.origin,
            f.c.rows_source,
            f.c.rows_days,
            f.c.rows_hash,
            f.c.levels,
            d.c.step,
            d.c.day,
            d.c.median,
            d.c.lower_80,
            d.c.upper_80,
            d.c.lower_95,
            d.c.upper_95,
            d.c.quantiles,
        )
        .select_from(roles)
        .join(f, f.c.key == roles.c.forecast_key)
        .join(d, d.c.forecast_key == f.c.key)
        .where(f.c.model_name == model_name)
    )
    with engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all())
    if frame.empty:
        return frame
    frame["role"] = np.where(frame["shadow"], "shadow", frame["alias"].fillna("version"))
    frame["origin"] = pd.to_datetime(frame["origin"]).dt.date
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    for column in ("lower_80", "upper_80", "lower_95", "upper_95"):
        frame[column] = frame[column].astype("float64")
    return frame


def write_scores(
    engine: sa.Engine, model_name: str, scores: pd.DataFrame, days: list[dt.date] | None = None
) -> None:
    """Replace the model's rows of `live_scores` with `scores` (one transaction); with `days`,
    only the rows of those days."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            **{
                k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in rec.items()
            },
            "model_name": model_name,
            "horizon": int(rec.pop("step")),
            "computed_at": now,
        }
        for rec in scores.to_dict("records")
    ]
    table = prediction_log.live_scores
    stale = table.delete().where(table.c.model_name == model_name)
    if days is not None:
        stale = stale.where(table.c.day.in_(days))
    with engine.begin() as connection:
        connection.execute(stale)
        if rows:
            connection.execute(table.insert(), [{k: r[k] for k in table.c.keys()} for r in rows])


def read_scores(engine: sa.Engine, model_name: str, horizon: int = NEXT_DAY) -> pd.DataFrame:
    """The model's live scores (one horizon), oldest day first."""
    table = prediction_log.live_scores
    query = (
        table.select()
        .where(table.c.model_name == model_name, table.c.horizon == horizon)
        .order_by(table.c.day)
    )
    with engine.connect() as connection:
        return pd.DataFrame(connection.execute(query).mappings().all())


def promotion_days(registry: Registry, versions: list[int]) -> dict[int, dt.date]:
    """The day each version became champion (its applied promote/first-champion decision)."""
    from registry.records import latest_decision

    out = {}
    for version in versions:
        try:
            decided = latest_decision(registry, version)
        except Exception:  # a version deleted from the registry still has logged forecasts
            continue
        if decided and decided.get("champion_after") == version and decided.get("decided_at"):
            out[version] = dt.datetime.fromisoformat(str(decided["decided_at"])).date()
    return out


def _mlflow_run(registry: Registry, version: int) -> str:
    """The monitoring run of one version: reused, else created."""
    found = registry.client.search_runs(
        [str(registry.experiment_id)],
        f"tags.`{tags.KIND}` = 'monitoring' and tags.`{tags.MODEL_NAME}` = '{registry.name}' and "
        f"tags.`{tags.MODEL_VERSION}` = '{version}'",
        max_results=1,
    )
    if found:
        return str(found[0].info.run_id)
    run = registry.client.create_run(
        str(registry.experiment_id),
        run_name=f"monitoring-{registry.name}-v{version}",
        tags={
            tags.KIND: "monitoring",
            tags.MODEL_NAME: registry.name,
            tags.MODEL_VERSION: str(version),
        },
    )
    return str(run.info.run_id)


def log_to_mlflow(registry: Registry, scores: pd.DataFrame) -> dict[int, str]:
    """Next-day scores per version into its monitoring run, stepped by day (ordinal)."""
    from mlflow.entities import Metric

    runs = {}
    part = scores[scores["step"] == NEXT_DAY]
    for version, group in part.groupby("version"):
        run_id = runs[int(version)] = _mlflow_run(registry, int(version))
        metrics = []
        for rec in group.to_dict("records"):
            day = rec["day"]
            stamp = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
            for key in ("mase", "mae", "persistence_mae", "coverage_80", "coverage_95", "crps"):
                value = rec.get(key)
                if value is not None and np.isfinite(value):
                    name = f"live_{rec['role']}_{rec['window']}_{key}"
                    metrics.append(Metric(name, float(value), stamp, day.toordinal()))
        for start in range(0, len(metrics), 900):
            registry.client.log_batch(run_id, metrics=metrics[start : start + 900])
    return runs


def tag_versions(registry: Registry, scores: pd.DataFrame) -> None:
    """`coinflow.live.*` tags: each version's newest 30-day next-day figures."""
    for version in sorted(set(scores["version"])):
        got = latest(scores, int(version), TAG_WINDOW)
        if got is None:
            continue
        values = {
            tags.LIVE_MASE_30D: f"{got['mase']:.4g}",
            tags.LIVE_COVERAGE_80_30D: f"{got['coverage_80']:.4g}",
            tags.LIVE_CRPS_30D: f"{got['crps']:.6g}",
            tags.LIVE_DAYS_30D: str(int(got["n"])),
            tags.LIVE_AS_OF: str(got["day"]),
        }
        for key, value in values.items():
            try:
                registry.client.set_model_version_tag(registry.name, str(int(version)), key, value)
            except Exception as exc:  # a deleted version keeps its log, loses its tags
                log.warning("%s v%s: live tags not set: %s", registry.name, version, exc)
                break


@dataclass
class MonitorReport:
    """What one `coinflow monitor score` did."""

    scored_days: int
    versions: list[int]
    alert: bool = False
    rolled_back: bool = False
    reason: str = ""
    runs: dict[int, str] = field(default_factory=dict)
    states: dict[int, str | None] = field(default_factory=dict)  # version → its state's day


def score(
    engine: sa.Engine,
    registry: Registry,
    rows: PlatformRows,
    params: MonitorParams,
    days: list[dt.date] | None = None,
    load: Loader | None = None,
) -> MonitorReport:
    """The whole `coinflow monitor score`: join, score, write, tag, judge, on the forecasts made
    on the platform's rows only (serving.monitoring.trusted); then every served version's
    calibration state advanced through the platform's last day (serving.monitoring.states;
    `load` gives a version's PackagedModel, default: from the registry). With `days` (e.g. the
    day whose close just arrived) only those days' scores are (re)computed and written; their
    trailing windows still read every logged day."""
    from registry.store import load_packaged
    from serving.monitoring.live_scores import realized, rolling_scores
    from serving.monitoring.states import advance_states

    report = MonitorReport(0, [])
    logged = trusted(logged_days(engine, registry.name), rows)
    known = realized(logged, rows.closes()) if not logged.empty else logged
    if logged.empty:
        report.reason = "no logged forecasts on the platform's rows yet"
    elif known.empty:
        report.reason = "no logged forecast has its day's close yet"
    else:
        versions = sorted(int(v) for v in set(known["version"]))
        as_of = sorted(set(known["day"]) if days is None else set(known["day"]) & set(days))
        scores = rolling_scores(known, as_of, promotion_days(registry, versions))
        write_scores(engine, registry.name, scores, None if days is None else as_of)
        report.runs = log_to_mlflow(registry, scores)
        tag_versions(registry, scores)
        report.alert, report.rolled_back, report.reason = rule.act(registry, scores, params)
        report.scored_days, report.versions = len(set(known["day"])), versions
    report.states = advance_states(
        engine, registry, rows, load or functools.partial(load_packaged, registry)
    )
    return report


def logged_calibrator(
    engine: sa.Engine, record: dict[str, Any], py: PackagedModel
) -> tuple[Calibrator | None, str]:
    """The calibrator a logged answer names, found again (None, and why, when it cannot be)."""
    from serving.calibration_states import by_digest, read_state
    from serving.predictor import FIXED, SHIPPED, Calibrator, adaptive_state

    source, digest = record.get("calibration_source") or FIXED, record.get("calibration_digest")
    if source == FIXED:
        return Calibrator.of(None, FIXED), "fixed offsets"
    shipped = adaptive_state(py)
    if shipped is None:
        return None, f"it names a {source} state, but v{record['version']} has fixed offsets"
    if source == SHIPPED:
        if shipped.digest() != digest:
            return None, f"v{record['version']} ships state {shipped.digest()}, not {digest}"
        return Calibrator.of(shipped, SHIPPED), f"shipped state {digest}"
    stored = by_digest(engine, record["model_name"], int(record["version"]), str(digest))
    if stored is None:
        return None, f"calibration state {digest} of v{record['version']} is not in the store"
    state = read_state(py, stored)
    return Calibrator.of(state, source), f"stored state {digest} as of {state.as_of}"


def replay(engine: sa.Engine, registry: Registry, prediction_id: str) -> tuple[bool, str]:
    """Recompute a logged forecast from its version, input rows and calibration state:
    (identical?, what differs)."""
    from forecasting.forecast import input_frame, rows_to_arrays
    from registry.store import load_packaged

    record = prediction_log.read_predictions(engine, prediction_id)
    if record is None:
        raise MonitorError(f"no logged prediction {prediction_id!r}")
    py = load_packaged(registry, int(record["version"]))
    if record["rows"] is not None:
        dates, values = rows_to_arrays(input_frame(record["rows"]))
    else:
        dates, values = py.recent_arrays()
    if prediction_log.rows_hash(values[-py.rows_needed :]) != record["rows_hash"]:
        return False, "the input rows do not hash to the logged rows_hash: they were changed"
    calibrator, which = logged_calibrator(engine, record, py)
    if calibrator is None:
        return False, f"its calibration state cannot be found: {which}"
    out_dates, closes = calibrator.forecast(py, dates, values, int(record["horizon"]))
    logged = record["forecast"]
    for step, (day, quantiles) in enumerate(zip(out_dates, closes.tolist(), strict=True)):
        point = logged[step]
        if str(day) != point["date"] or quantiles != point["quantiles"]:
            return False, f"day {step + 1} differs: logged {point}, recomputed {day} {quantiles}"
    return True, f"identical: {len(logged)} day(s) of v{record['version']} with {which}"
