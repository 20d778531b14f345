"""The reader of metrics/validation.json: the gate's record per version (pipelines.gate.validate
writes it; features, tracking and the registry's lineage read it through here)."""

from __future__ import annotations

import json
from typing import Any

from core.paths import Project, project


def read_validation(proj: Project | None = None) -> dict[str, dict[str, Any]]:
    """metrics/validation.json: the gate's record per version ({} when the gate never ran)."""
    path = (proj or project()).metrics_file("validation")
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()))


def validation_record(version: str, proj: Project | None = None) -> dict[str, Any]:
    """The gate's record of one version ({} when it has none): success, md5, failures, docs."""
    return dict(read_validation(proj).get(version, {}))


def passed(version: str, md5: str, proj: Project | None = None) -> bool:
    """Whether the gate recorded a pass for exactly this content of `version`."""
    record = validation_record(version, proj)
    return bool(record.get("success")) and record.get("md5") == md5
