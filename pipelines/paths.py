"""Where each stage reads and writes, relative to the repository root (dvc.yaml agrees)."""

from __future__ import annotations

from pathlib import Path

RAW_DIR = Path("data/raw")
INTERIM_DIR = Path("data/interim")
VERSIONS_DIR = Path("data/versions")
FEATURES_DIR = Path("data/features")
REPORTS_DIR = Path("reports")
METRICS_DIR = Path("metrics")
ASSETS = ("btc", "eth", "gold")


def version_path(version: str, root: Path = VERSIONS_DIR) -> Path:
    """Parquet file holding one dataset version."""
    return root / f"{version}.parquet"
