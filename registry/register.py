"""Register a run's pyfunc with its lineage tags; seed the registry with a persistence champion."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core import tags
from core.paths import Project, project
from registry import lineage
from registry.errors import ModelLoadError, RegistryError
from registry.lock import RegistryLock
from registry.scoring import EvalSet
from registry.store import (
    CHALLENGER,
    CHAMPION,
    Registry,
    aliases,
    describe_model,
    now_iso,
)

if TYPE_CHECKING:
    from mlflow.entities import Run

log = logging.getLogger(__name__)
MODEL_ARTIFACT = "model"


def _model_source(registry: Registry, run: Run) -> tuple[str, str | None]:
    """(source, logged model id) of the run's `model` pyfunc: an MLflow 3 logged model, or the
    run's own artifacts."""
    run_id = run.info.run_id
    logged = [
        m
        for m in registry.client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        if m.name == MODEL_ARTIFACT
    ]
    if logged:
        model_id = max(logged, key=lambda m: m.creation_timestamp).model_id
        return f"models:/{model_id}", model_id
    if any(
        f.path == f"{MODEL_ARTIFACT}/MLmodel"
        for f in registry.client.list_artifacts(run_id, MODEL_ARTIFACT)
    ):
        return f"{run.info.artifact_uri}/{MODEL_ARTIFACT}", None
    raise ModelLoadError(
        f"run {run_id} has no `{MODEL_ARTIFACT}` pyfunc (checkpoint-only trial "
        "runs get one when the sweep closes)"
    )


def _register(registry: Registry, run: Run, kind: str) -> int:
    """A new version of the registered model from `run`, with its lineage tags."""
    version_tags = lineage.version_tags_from_run(run, kind)
    if run.data.tags.get(tags.MEDIAN):  # learned | persistence (runs before it: none)
        version_tags[tags.MEDIAN] = run.data.tags[tags.MEDIAN]
    source, model_id = _model_source(registry, run)
    describe_model(registry)
    model_version = registry.client.create_model_version(
        registry.name, source, run_id=run.info.run_id, tags=version_tags, model_id=model_id
    )
    return int(model_version.version)


def _existing(registry: Registry, run_id: str) -> int | None:
    """A version already registered from this run (registration is idempotent)."""
    found = registry.client.search_model_versions(
        f"name = '{registry.name}' and run_id = '{run_id}'"
    )
    return max((int(model_version.version) for model_version in found), default=None)


def register_run(registry: Registry, run_id: str, alias: str | None = CHALLENGER) -> int:
    """Register run `run_id`'s `model` (once) with lineage tags and point `alias` at it."""
    from mlflow.exceptions import MlflowException

    try:
        run = registry.client.get_run(run_id)
    except MlflowException as exc:
        raise RegistryError(f"no MLflow run {run_id!r} in this tracking store") from exc
    if run.info.status != "FINISHED":
        raise RegistryError(f"run {run_id} ended {run.info.status}: only FINISHED runs register")
    version = _existing(registry, run_id)
    if version is None:
        version = _register(registry, run, "torch")
        log.info("registered %s v%d from run %s", registry.name, version, run_id)
    else:
        log.info("run %s is already %s v%d: not registered again", run_id, registry.name, version)
    if alias and aliases(registry).get(CHAMPION) != version:  # the champion is nobody's challenger
        registry.client.set_registered_model_alias(registry.name, alias, str(version))
    return version


def baseline_run(registry: Registry, eval_set: EvalSet, kind: str, proj: Project) -> str:
    """A finished run of a baseline (persistence | ewma) whose calibration state was fitted on
    this dataset content's validation days, for this model code: reused, or logged now with its
    test scores (as served: scoring.served_quantiles)."""
    import mlflow

    from core.fingerprint import code_fingerprint
    from core.tracking import lineage_tags
    from forecasting.scores import calibration_scores, score_quantiles
    from pipelines.training.packaging import log_packaged, recent_rows
    from registry.scoring import calibrated_baseline, served_quantiles

    found = registry.client.search_runs(
        [str(registry.experiment_id)],
        max_results=1,
        order_by=["attributes.start_time DESC"],
        filter_string=(
            f"tags.`{tags.KIND}` = '{kind}' and tags.`{tags.DVC_MD5}` = '{eval_set.md5}' and "
            f"tags.`{tags.CODE}` = '{code_fingerprint()}' and attributes.status = 'FINISHED'"
        ),
    )
    if found:
        return str(found[0].info.run_id)
    model = calibrated_baseline(eval_set, kind)
    run_tags = {
        **lineage_tags(eval_set.version, eval_set.md5, proj),
        tags.KIND: kind,
        tags.MEDIAN: model.median_kind,
    }
    with mlflow.start_run(
        experiment_id=registry.experiment_id, run_name=f"{kind}-{eval_set.version}", tags=run_tags
    ) as run:
        mlflow.log_params(
            {
                k: model.config[k]
                for k in ("kind", "data_version", "window", "decay")
                if k in model.config
            }
        )
        scores = score_quantiles(
            served_quantiles(model, eval_set),
            eval_set.close,
            eval_set.next_close,
            eval_set.levels,
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in scores.items()})
        config = {
            **model.config,
            "dvc_md5": eval_set.md5,
            "trained_at": now_iso(),
            "code_fingerprint": code_fingerprint(),
            "scores": calibration_scores({f"test_{k}": v for k, v in scores.items()}),
        }
        log_packaged(config, recent_rows(eval_set.version, proj), name=MODEL_ARTIFACT)
    return str(run.info.run_id)


def register_baseline(registry: Registry, eval_set: EvalSet, kind: str, proj: Project) -> int:
    """The registered version of a baseline for this data and code (registered once)."""
    run_id = baseline_run(registry, eval_set, kind, proj)
    version = _existing(registry, run_id)
    return (
        version
        if version is not None
        else _register(registry, registry.client.get_run(run_id), kind)
    )


def ensure_champion(registry: Registry, eval_set: EvalSet, proj: Project | None = None) -> int:
    """The champion's version; an empty registry first gets the persistence model as champion
    (recorded as a `first-champion` decision). Every version is served by the kernel it shipped,
    so a champion built with other model code than this code stays the champion."""
    from registry.aliases import apply_record, repair_records

    proj = proj or project()
    current = aliases(registry).get(CHAMPION)
    if current is not None:
        return current
    version = register_baseline(registry, eval_set, "persistence", proj)
    with RegistryLock(registry.client, registry.name) as lock:
        repair_records(registry)
        now = aliases(registry).get(CHAMPION)  # another process may have seeded it meanwhile
        if now is not None:
            return now
        reason = (
            "the registry had no champion: persistence (tomorrow = today, with the empirical "
            "quantiles of the trailing year's returns) serves until a model beats it"
        )
        record = {
            "action": "first-champion",
            "model_name": registry.name,
            "version": version,
            "champion_before": None,
            "champion_after": version,
            "eval": eval_set.describe(),
            "reason": reason,
        }
        apply_record(registry, lock, record)
    log.info("%s v%d (persistence) is the champion: %s", registry.name, version, reason)
    return version
