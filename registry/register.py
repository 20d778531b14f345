"""Register a run's pyfunc with its lineage tags; seed the registry with a persistence champion."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipelines import tags
from pipelines.paths import Project, project
from registry import lineage
from registry.errors import ModelCodeMismatchError, ModelLoadError, RegistryError
from registry.lock import RegistryLock
from registry.scoring import EvalSet
from registry.store import (
    CHALLENGER,
    CHAMPION,
    Registry,
    aliases,
    check_code,
    describe_model,
    get_version,
    now_iso,
)

if TYPE_CHECKING:
    from mlflow.entities import Run

log = logging.getLogger(__name__)
MODEL_ARTIFACT = "model"


def _model_source(reg: Registry, run: Run) -> tuple[str, str | None]:
    """(source, logged model id) of the run's `model` pyfunc: an MLflow 3 logged model, or the
    run's own artifacts."""
    run_id = run.info.run_id
    logged = [
        m
        for m in reg.client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        if m.name == MODEL_ARTIFACT
    ]
    if logged:
        model_id = max(logged, key=lambda m: m.creation_timestamp).model_id
        return f"models:/{model_id}", model_id
    if any(
        f.path == f"{MODEL_ARTIFACT}/MLmodel"
        for f in reg.client.list_artifacts(run_id, MODEL_ARTIFACT)
    ):
        return f"{run.info.artifact_uri}/{MODEL_ARTIFACT}", None
    raise ModelLoadError(
        f"run {run_id} has no `{MODEL_ARTIFACT}` pyfunc (checkpoint-only trial "
        "runs get one when the sweep closes)"
    )


def _register(reg: Registry, run: Run, kind: str) -> int:
    """A new version of the registered model from `run`, with its lineage tags."""
    version_tags = lineage.version_tags_from_run(run, kind)
    source, model_id = _model_source(reg, run)
    describe_model(reg)
    mv = reg.client.create_model_version(
        reg.name, source, run_id=run.info.run_id, tags=version_tags, model_id=model_id
    )
    return int(mv.version)


def _existing(reg: Registry, run_id: str) -> int | None:
    """A version already registered from this run (registration is idempotent)."""
    found = reg.client.search_model_versions(f"name = '{reg.name}' and run_id = '{run_id}'")
    return max((int(mv.version) for mv in found), default=None)


def register_run(reg: Registry, run_id: str, alias: str | None = CHALLENGER) -> int:
    """Register run `run_id`'s `model` (once) with lineage tags and point `alias` at it."""
    from mlflow.exceptions import MlflowException

    try:
        run = reg.client.get_run(run_id)
    except MlflowException as exc:
        raise RegistryError(f"no MLflow run {run_id!r} in this tracking store") from exc
    if run.info.status != "FINISHED":
        raise RegistryError(f"run {run_id} ended {run.info.status}: only FINISHED runs register")
    version = _existing(reg, run_id)
    if version is None:
        version = _register(reg, run, "torch")
        log.info("registered %s v%d from run %s", reg.name, version, run_id)
    if alias and aliases(reg).get(CHAMPION) != version:  # the champion is nobody's challenger
        reg.client.set_registered_model_alias(reg.name, alias, str(version))
    return version


def baseline_run(reg: Registry, ev: EvalSet, kind: str, proj: Project) -> str:
    """A finished run of a baseline (persistence | ewma) calibrated on this dataset content's
    validation days, for this model code: reused, or logged now with its test scores."""
    import mlflow

    from pipelines.fingerprint import code_fingerprint
    from pipelines.metrics import calibration_scores, score_quantiles
    from pipelines.tracked import recent_rows
    from pipelines.tracking import lineage_tags
    from registry.pyfunc import log_baseline
    from registry.scoring import calibrated_baseline, test_quantiles

    found = reg.client.search_runs(
        [str(reg.experiment_id)],
        max_results=1,
        order_by=["attributes.start_time DESC"],
        filter_string=(
            f"tags.`{tags.KIND}` = '{kind}' and tags.`{tags.DVC_MD5}` = '{ev.md5}' and "
            f"tags.`{tags.CODE}` = '{code_fingerprint()}' and attributes.status = 'FINISHED'"
        ),
    )
    if found:
        return str(found[0].info.run_id)
    model = calibrated_baseline(ev, kind)
    run_tags = {**lineage_tags(ev.version, ev.md5, proj), tags.KIND: kind}
    with mlflow.start_run(
        experiment_id=reg.experiment_id, run_name=f"{kind}-{ev.version}", tags=run_tags
    ) as run:
        params = {"kind": kind, "data_version": ev.version, "window": ev.baselines.window}
        if kind == "ewma":
            params["decay"] = ev.baselines.ewma_decay
        mlflow.log_params(params)
        scores = score_quantiles(test_quantiles(model, ev), ev.close, ev.next_close, ev.levels)
        mlflow.log_metrics({f"test_{k}": v for k, v in scores.items()})
        config = {
            **params,
            "lookback": ev.baselines.window,
            "levels": list(ev.levels),
            "calibration": {str(k): v for k, v in model.offsets.items()},
            "dvc_md5": ev.md5,
            "trained_at": now_iso(),
            "code_fingerprint": code_fingerprint(),
            "scores": calibration_scores({f"test_{k}": v for k, v in scores.items()}),
        }
        log_baseline(config, recent_rows(ev.version, proj), name=MODEL_ARTIFACT)
    return str(run.info.run_id)


def register_baseline(reg: Registry, ev: EvalSet, kind: str, proj: Project) -> int:
    """The registered version of a baseline for this data and code (registered once)."""
    run_id = baseline_run(reg, ev, kind, proj)
    version = _existing(reg, run_id)
    return version if version is not None else _register(reg, reg.client.get_run(run_id), kind)


def _stale_champion(reg: Registry, current: int) -> str | None:
    """Why the champion cannot be served by this code (None when it can)."""
    try:
        check_code(reg.name, current, dict(get_version(reg, current).tags or {}))
    except ModelCodeMismatchError as exc:
        return str(exc)
    return None


def ensure_champion(reg: Registry, ev: EvalSet, proj: Project | None = None) -> int:
    """The champion's version. An empty registry first gets the persistence model as champion,
    and so does one whose champion was built with other model code than this code (it could
    not be served or re-scored here): recorded as a `code-upgrade` decision."""
    from registry.aliases import apply_record, repair_records

    proj = proj or project()
    current = aliases(reg).get(CHAMPION)
    stale = None if current is None else _stale_champion(reg, current)
    if current is not None and stale is None:
        return current
    version = register_baseline(reg, ev, "persistence", proj)
    with RegistryLock(reg.client, reg.name) as lock:
        repair_records(reg)
        now = aliases(reg).get(CHAMPION)  # another process may have seeded it meanwhile
        if now is not None and (now != current or _stale_champion(reg, now) is None):
            return now
        action = "first-champion" if now is None else "code-upgrade"
        reason = (
            "the registry had no champion: persistence (tomorrow = today, with the empirical "
            "quantiles of the trailing year's returns) serves until a model beats it"
            if now is None
            else f"the champion cannot be served by this code ({stale}); persistence built "
            "with this code serves until a model beats it"
        )
        record = {
            "action": action,
            "model_name": reg.name,
            "version": version,
            "champion_before": now,
            "champion_after": version,
            "eval": ev.describe(),
            "reason": reason,
        }
        apply_record(reg, lock, record)
    log.info("%s v%d (persistence) is the champion: %s", reg.name, version, reason)
    return version
