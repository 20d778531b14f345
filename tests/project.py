"""A project root for tests whose data/ folders point at shared, already-built ones."""

from __future__ import annotations

from pathlib import Path

from pipelines.paths import Project


def linked_project(root: Path, features: Path, versions: Path) -> Project:
    """`root` as a project: data/features and data/versions link to the given folders;
    metrics/ exists but holds no gate record (runs are tagged ge_status=failed)."""
    proj = Project(root)
    proj.versions.parent.mkdir(parents=True, exist_ok=True)
    proj.features.symlink_to(features)
    proj.versions.symlink_to(versions)
    proj.metrics.mkdir(parents=True, exist_ok=True)
    return proj
