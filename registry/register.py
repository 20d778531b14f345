"""Register a run's pyfunc with lineage tags; seed an empty registry with persistence."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipelines.paths import METRICS_DIR, VERSIONS_DIR
from registry import lineage
from registry.errors import ModelLoadError, RegistryError
from registry.lock import RegistryLock
from registry.scoring import EvalSet, persistence_scores
from registry.store import CHALLENGER, CHAMPION, Registry, aliases, now_iso, record_event

log = logging.getLogger(__name__)
MODEL_ARTIFACT = "model"


def _model_uri(reg: Registry, run: Any) -> str:
    """Where the run's `model` pyfunc lives: an MLflow 3 logged model, or run artifacts."""
    run_id = run.info.run_id
    logged = [
        m
        for m in reg.client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        if m.name == MODEL_ARTIFACT
    ]
    if logged:
        return f"models:/{max(logged, key=lambda m: m.creation_timestamp).model_id}"
    if any(
        f.path == f"{MODEL_ARTIFACT}/MLmodel"
        for f in reg.client.list_artifacts(run_id, MODEL_ARTIFACT)
    ):
        return f"runs:/{run_id}/{MODEL_ARTIFACT}"
    raise ModelLoadError(
        f"run {run_id} has no `{MODEL_ARTIFACT}` pyfunc (checkpoint-only trial "
        "runs get one when the sweep closes)"
    )


def _register(reg: Registry, uri: str, tags: dict[str, str]) -> int:
    import mlflow

    version = mlflow.register_model(uri, reg.name, tags=tags)
    return int(version.version)


def _existing(reg: Registry, run_id: str) -> int | None:
    """A version already registered from this run (registration is idempotent)."""
    found = reg.client.search_model_versions(f"name = '{reg.name}' and run_id = '{run_id}'")
    return max((int(mv.version) for mv in found), default=None)


def register_run(
    reg: Registry, run_id: str, sweep_parent_id: str | None = None, alias: str | None = CHALLENGER
) -> int:
    """Register run `run_id`'s `model` (once) with lineage tags and point `alias` at it."""
    try:
        run = reg.client.get_run(run_id)
    except Exception as exc:
        raise RegistryError(f"no MLflow run {run_id!r} in this tracking store") from exc
    if run.info.status != "FINISHED":
        raise RegistryError(f"run {run_id} ended {run.info.status}: only FINISHED runs register")
    version = _existing(reg, run_id)
    if version is None:
        tags = lineage.version_tags_from_run(run, "torch", sweep_parent_id)
        version = _register(reg, _model_uri(reg, run), tags)
        log.info("registered %s v%d from run %s", reg.name, version, run_id)
    if alias and aliases(reg).get(CHAMPION) != version:  # the champion is nobody's challenger
        reg.client.set_registered_model_alias(reg.name, alias, str(version))
    return version


def _persistence_run(reg: Registry, ev: EvalSet, versions_dir: Path, metrics_dir: Path) -> str:
    """A finished persistence run for this dataset content, reused or logged now."""
    import mlflow

    from pipelines.tracked import recent_rows
    from pipelines.tracking import lineage_tags
    from registry.pyfunc import log_persistence

    found = reg.client.search_runs(
        [reg.experiment_id],
        max_results=1,
        order_by=["attributes.start_time DESC"],
        filter_string=(
            f"tags.`{lineage.KIND}` = 'persistence' and "
            f"tags.`{lineage.DVC_MD5}` = '{ev.md5}' and attributes.status = 'FINISHED'"
        ),
    )
    if found:
        return str(found[0].info.run_id)
    tags = {**lineage_tags(ev.version, ev.md5, metrics_dir), lineage.KIND: "persistence"}
    with mlflow.start_run(
        experiment_id=reg.experiment_id, run_name=f"persistence-{ev.version}", tags=tags
    ) as run:
        mlflow.log_params({"kind": "persistence", "data_version": ev.version})
        mlflow.log_metrics({f"test_{k}": v for k, v in persistence_scores(ev).items()})
        config = {
            "kind": "persistence",
            "lookback": 0,
            "data_version": ev.version,
            "dvc_md5": ev.md5,
        }
        log_persistence(config, recent_rows(ev.version, versions_dir), name=MODEL_ARTIFACT)
    return str(run.info.run_id)


def ensure_champion(
    reg: Registry, ev: EvalSet, versions_dir: Path = VERSIONS_DIR, metrics_dir: Path = METRICS_DIR
) -> int:
    """The champion's version; an empty registry first gets the persistence model as champion."""
    current = aliases(reg).get(CHAMPION)
    if current is not None:
        return current
    run_id = _persistence_run(reg, ev, versions_dir, metrics_dir)
    version = _existing(reg, run_id)
    if version is None:
        run = reg.client.get_run(run_id)
        version = _register(
            reg, _model_uri(reg, run), lineage.version_tags_from_run(run, "persistence")
        )
    with RegistryLock(reg.client, reg.name) as lock:
        current = aliases(reg).get(CHAMPION)  # another process may have seeded it meanwhile
        if current is not None:
            return current
        record = {
            "action": "first-champion",
            "model_name": reg.name,
            "version": version,
            "decided_at": now_iso(),
            "eval": ev.describe(),
            "reason": "the registry had no champion: persistence (tomorrow = today) "
            "serves until a model beats it",
        }
        record_run = record_event(reg, "first-champion", version, record)
        lock.verify()
        reg.client.set_registered_model_alias(reg.name, CHAMPION, str(version))
        for key, value in (
            ("action", "first-champion"),
            ("promoted", "true"),
            ("reason", record["reason"]),
            ("at", record["decided_at"]),
            ("record_run_id", record_run),
        ):
            reg.client.set_model_version_tag(reg.name, str(version), lineage.DECISION + key, value)
    log.info("%s v%d (persistence) is the first champion", reg.name, version)
    return version
