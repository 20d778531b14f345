"""Where everything lives, anchored at the project root.

The root is `$COINFLOW_WORKDIR` when set (Airflow workers, containers, tests), else the nearest
ancestor of the current directory holding both dvc.yaml and params.yaml (DVC's own rule, so a
stage that `dvc exp run --temp` or `--queue` runs in its own copy of the workspace reads and
writes that copy), else the checkout this package was imported from. dvc.yaml names the same
relative paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
WORKDIR_ENV = "COINFLOW_WORKDIR"
ASSETS = ("btc", "eth", "gold")


PROJECT_FILES = ("dvc.yaml", "params.yaml")


def project_root() -> Path:
    """$COINFLOW_WORKDIR, else the nearest ancestor of the current directory holding dvc.yaml and
    params.yaml, else the checkout holding this package."""
    configured = os.environ.get(WORKDIR_ENV)
    if configured:
        return Path(configured).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if all((folder / name).is_file() for name in PROJECT_FILES):
            return folder
    return PACKAGE_ROOT


@dataclass(frozen=True)
class Project:
    """The files and folders of one project root (params, data, reports, metrics, plots)."""

    root: Path

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def interim(self) -> Path:
        return self.root / "data" / "interim"

    @property
    def versions(self) -> Path:
        return self.root / "data" / "versions"

    @property
    def features(self) -> Path:
        return self.root / "data" / "features"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def sweep_plots(self) -> Path:
        return self.root / "plots" / "sweep"

    def version_file(self, version: str) -> Path:
        """Parquet file holding one dataset version."""
        return self.versions / f"{version}.parquet"

    def validation_docs(self, version: str) -> Path:
        """The Great Expectations Data Docs site of one version."""
        return self.reports / "validation" / version

    def metrics_file(self, stage: str) -> Path:
        """metrics/<stage>.json (validation, baseline, train, sweep, promotion, store)."""
        return self.metrics / f"{stage}.json"


def project(root: Path | None = None) -> Project:
    """The project at `root`, default project_root()."""
    return Project(Path(root).resolve() if root is not None else project_root())
