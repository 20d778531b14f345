"""A project root for tests whose data/ folders point at shared, already-built ones."""

from __future__ import annotations

from pathlib import Path

from core.paths import Project

REPO = Path(__file__).resolve().parents[1]


def linked_project(root: Path, features: Path, versions: Path) -> Project:
    """`root` as a project: the repository's params.yaml, data/features and data/versions
    linked to the given folders; metrics/ exists but holds no gate record (runs are tagged
    ge_status=failed)."""
    proj = Project(root)
    proj.root.mkdir(parents=True, exist_ok=True)
    proj.params_file.write_text((REPO / "params.yaml").read_text())
    proj.versions.parent.mkdir(parents=True, exist_ok=True)
    proj.features.symlink_to(features)
    proj.versions.symlink_to(versions)
    proj.metrics.mkdir(parents=True, exist_ok=True)
    return proj
