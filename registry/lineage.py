"""Lineage of a registered version: its tags from the run, the checks on them, the full chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core import tags
from core.paths import Project, project
from registry.errors import LineageError, RegistryUnavailableError, UnknownVersionError
from registry.records import latest_decision
from registry.store import Registry, iso_ms, mlflow_call, run_tags

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

REQUIRED = (tags.KIND, *tags.RUN_LINEAGE)


def version_tags_from_run(run: Run, kind: str) -> dict[str, str]:
    """The searchable tags of a version registered from `run` (refused without lineage)."""
    run_tags_ = run.data.tags
    missing = [t for t in tags.RUN_LINEAGE if not run_tags_.get(t)]
    if missing:
        raise LineageError(
            f"run {run.info.run_id} lacks lineage tags {missing}: only runs logged "
            "by pipelines.training.tracked_run (or the persistence baseline) can be registered"
        )
    out = {tags.KIND: kind, **{t: run_tags_[t] for t in tags.RUN_LINEAGE}}
    for metric, tag in (("test_mase", tags.TEST_MASE), ("test_crps", tags.TEST_CRPS)):
        if metric in run.data.metrics:
            out[tag] = f"{run.data.metrics[metric]:.6g}"
    return out


def require_lineage_tags(name: str, version: int | str, version_tags: dict[str, str]) -> None:
    """Refuse a version registered without coinflow's lineage tags (e.g. by hand in the UI)."""
    missing = [t for t in REQUIRED if not version_tags.get(t)]
    if missing:
        raise LineageError(
            f"{name} v{version} lacks lineage tags {missing}: register versions "
            "with `coinflow registry release` or registry.register, not by hand"
        )


def check_lineage(name: str, version: int | str, version_tags: dict[str, str]) -> None:
    """Refuse a version whose lineage is incomplete or whose data failed the GE gate."""
    require_lineage_tags(name, version, version_tags)
    if version_tags[tags.GE_STATUS] != "success":
        raise LineageError(
            f"{name} v{version} was trained on {version_tags[tags.DATA_VERSION]} (md5 "
            f"{version_tags[tags.DVC_MD5]}), which did not pass the Great Expectations gate "
            f"({tags.GE_STATUS}={version_tags[tags.GE_STATUS]})"
        )


@dataclass(frozen=True)
class Lineage:
    """version → run → sweep → data version/hash → git sha → GE result → decision, as recorded."""

    name: str
    version: int
    aliases: list[str]
    tags: dict[str, str]
    source: str
    registered_at: str
    run: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    sweep: dict[str, str] = field(default_factory=dict)
    data_on_disk: str = ""
    ge_record: str = ""
    decision: dict[str, Any] | None = None


def _run_summary(registry: Registry, run_id: str | None) -> tuple[dict[str, str], Run | None]:
    if not run_id:
        return {}, None
    try:
        run = mlflow_call(
            f"reading run {run_id}", lambda: registry.client.get_run(run_id), UnknownVersionError
        )
    except (UnknownVersionError, RegistryUnavailableError) as exc:  # the rest still shows
        return {"id": run_id, "error": str(exc)[:160]}, None
    summary = {
        "id": run_id,
        "name": run.info.run_name or "",
        "status": run.info.status,
        "started": iso_ms(run.info.start_time) or "",
        "ended": iso_ms(run.info.end_time) or "",
    }
    return summary, run


def _data_on_disk(version: str, md5: str, proj: Project) -> str:
    from core.files import file_md5

    path = proj.version_file(version)
    shown = path.relative_to(proj.root)
    if not path.is_file():
        return f"{shown} not present here"
    now = file_md5(path)
    return f"matches {shown}" if now == md5 else f"DIFFERS from {shown} (now md5 {now})"


def _ge_record(version: str, md5: str, proj: Project) -> str:
    from core.gate_record import validation_record

    path = proj.metrics_file("validation").relative_to(proj.root)
    record = validation_record(version, proj)
    if not record:
        return f"{path} has no record for {version}"
    verdict = "PASS" if record.get("success") else "FAIL"
    same = "same md5" if record.get("md5") == md5 else f"other md5 {record.get('md5')}"
    failed = len(record.get("failed", []))
    return (
        f"{path}: {verdict}, {record.get('evaluated', '?')} expectations, {failed} failed ({same})"
    )


def read_lineage(
    registry: Registry, model_version: ModelVersion, held: list[str], proj: Project | None = None
) -> Lineage:
    """Follow a version to its run, sweep parent, data file, GE record and latest decision."""
    proj = proj or project()
    version_tags = dict(model_version.tags or {})
    require_lineage_tags(registry.name, model_version.version, version_tags)
    run, run_entity = _run_summary(registry, model_version.run_id)
    parent = run_tags(registry, model_version.run_id).get(tags.PARENT_RUN_ID)
    sweep, _ = _run_summary(registry, parent)
    data_version, md5 = version_tags[tags.DATA_VERSION], version_tags[tags.DVC_MD5]
    return Lineage(
        name=registry.name,
        version=int(model_version.version),
        aliases=held,
        tags=version_tags,
        source=model_version.source or "",
        registered_at=iso_ms(model_version.creation_timestamp) or "",
        run=run,
        params=dict(run_entity.data.params) if run_entity else {},
        metrics=dict(run_entity.data.metrics) if run_entity else {},
        sweep=sweep,
        data_on_disk=_data_on_disk(data_version, md5, proj),
        ge_record=_ge_record(data_version, md5, proj),
        decision=latest_decision(registry, model_version.version),
    )


def params_text(params: dict[str, str]) -> str:
    """Run params as `k=v` words, sorted (the lineage table's one line of hyper-parameters)."""
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))
