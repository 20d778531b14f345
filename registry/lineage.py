"""Lineage of a registered version: tag names, tags built from a run, checks, and the full chain."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.paths import METRICS_DIR, VERSIONS_DIR, version_path
from registry.errors import LineageError

KIND = "coinflow.kind"  # torch | persistence
RUN_ID = "coinflow.run_id"
SWEEP_PARENT = "coinflow.sweep_parent_id"
DATA_VERSION = "coinflow.data_version"
DVC_MD5 = "coinflow.dvc_md5"
GIT_SHA = "coinflow.git_sha"
GE_STATUS = "coinflow.ge_status"
PARAMS = "coinflow.params"
TRAINED_AT = "coinflow.trained_at"
TEST_METRICS = {
    "coinflow.test_mase": "test_mase",
    "coinflow.test_mae": "test_mae",
    "coinflow.test_rmse": "test_rmse",
}
DECISION = "coinflow.decision."  # prefix of the latest promotion decision's tags
RUN_LINEAGE = (GIT_SHA, DATA_VERSION, DVC_MD5, GE_STATUS)  # set on runs by pipelines.tracking
REQUIRED = (KIND, RUN_ID, *RUN_LINEAGE)
NO_SWEEP = "none"


def iso_ms(millis: int | None) -> str:
    """An MLflow millisecond timestamp as ISO-8601 UTC (seconds)."""
    if not millis:
        return ""
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="seconds")


def version_tags_from_run(
    run: Any, kind: str, sweep_parent_id: str | None = None
) -> dict[str, str]:
    """Lineage tags for a version registered from `run` (refused when the run lacks lineage)."""
    tags = run.data.tags
    missing = [t for t in RUN_LINEAGE if not tags.get(t)]
    if missing:
        raise LineageError(
            f"run {run.info.run_id} lacks lineage tags {missing}: only runs logged "
            "by pipelines.tracked (or the persistence baseline) can be registered"
        )
    out = {
        KIND: kind,
        RUN_ID: run.info.run_id,
        SWEEP_PARENT: sweep_parent_id or tags.get("mlflow.parentRunId") or NO_SWEEP,
        **{t: tags[t] for t in RUN_LINEAGE},
        PARAMS: json.dumps(dict(sorted(run.data.params.items()))),
        TRAINED_AT: iso_ms(run.info.end_time or run.info.start_time),
    }
    out |= {
        tag: f"{run.data.metrics[m]:.6g}"
        for tag, m in TEST_METRICS.items()
        if m in run.data.metrics
    }
    return out


def require_lineage_tags(name: str, version: int | str, tags: dict[str, str]) -> None:
    """Refuse a version registered without coinflow's lineage tags (e.g. by hand in the UI)."""
    missing = [t for t in REQUIRED if not tags.get(t)]
    if missing:
        raise LineageError(
            f"{name} v{version} lacks lineage tags {missing}: register versions "
            "with `python -m registry.promote` or registry.register, not by hand"
        )


def check_lineage(name: str, version: int | str, tags: dict[str, str]) -> None:
    """Refuse a version whose lineage is incomplete or whose data failed the GE gate."""
    require_lineage_tags(name, version, tags)
    if tags[GE_STATUS] != "success":
        raise LineageError(
            f"{name} v{version} was trained on {tags[DATA_VERSION]} (md5 "
            f"{tags[DVC_MD5]}), which did not pass the Great Expectations gate "
            f"({GE_STATUS}={tags[GE_STATUS]})"
        )


@dataclass(frozen=True)
class Lineage:
    """version → run → sweep → data version/hash → git sha → GE result, as recorded."""

    name: str
    version: int
    aliases: list[str]
    tags: dict[str, str]
    source: str
    registered_at: str
    run: dict[str, str] = field(default_factory=dict)
    sweep: dict[str, str] = field(default_factory=dict)
    data_on_disk: str = ""
    ge_record: str = ""

    @property
    def decision(self) -> dict[str, str]:
        return {k.removeprefix(DECISION): v for k, v in self.tags.items() if k.startswith(DECISION)}


def _run_summary(client: Any, run_id: str) -> dict[str, str]:
    if not run_id or run_id == NO_SWEEP:
        return {}
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # a deleted run must not hide the rest of the lineage
        return {"id": run_id, "error": f"{type(exc).__name__}: {str(exc)[:120]}"}
    return {
        "id": run_id,
        "name": run.info.run_name or "",
        "status": run.info.status,
        "started": iso_ms(run.info.start_time),
        "experiment": str(run.info.experiment_id),
    }


def _data_on_disk(version: str, md5: str, versions_dir: Path) -> str:
    from pipelines.version import file_md5

    path = version_path(version, versions_dir)
    if not path.is_file():
        return f"{path} not present here"
    now = file_md5(path)
    return f"matches {path}" if now == md5 else f"DIFFERS from {path} (now md5 {now})"


def _ge_record(version: str, md5: str, metrics_dir: Path) -> str:
    path = metrics_dir / "validation.json"
    if not path.is_file():
        return f"{path} not present here"
    record = json.loads(path.read_text()).get(version)
    if not record:
        return f"{path} has no record for {version}"
    verdict = "PASS" if record.get("success") else "FAIL"
    same = "same md5" if record.get("md5") == md5 else f"other md5 {record.get('md5')}"
    failed = len(record.get("failed", []))
    evaluated = record.get("evaluated", "?")
    return f"{path}: {verdict}, {evaluated} expectations, {failed} failed ({same})"


def read_lineage(
    client: Any,
    name: str,
    model_version: Any,
    aliases: list[str],
    versions_dir: Path = VERSIONS_DIR,
    metrics_dir: Path = METRICS_DIR,
) -> Lineage:
    """Follow a version's tags to its run, sweep parent, data file and GE record."""
    tags = dict(model_version.tags)
    require_lineage_tags(name, model_version.version, tags)
    return Lineage(
        name=name,
        version=int(model_version.version),
        aliases=aliases,
        tags=tags,
        source=model_version.source,
        registered_at=iso_ms(model_version.creation_timestamp),
        run=_run_summary(client, tags[RUN_ID]),
        sweep=_run_summary(client, tags.get(SWEEP_PARENT, NO_SWEEP)),
        data_on_disk=_data_on_disk(tags[DATA_VERSION], tags[DVC_MD5], versions_dir),
        ge_record=_ge_record(tags[DATA_VERSION], tags[DVC_MD5], metrics_dir),
    )
