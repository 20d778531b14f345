"""A throwaway project root for benchmarks: params.yaml, data/versions (linked), v0.3 features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def build_workspace(root: Path, overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """Features of the selected version built from data/versions into root (GE gate bypassed)."""
    import pandas as pd

    from core.files import file_md5
    from core.params import load_params
    from pipelines.training.features import write_features

    versions = REPO / "data" / "versions"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for block, values in (overrides or {}).items():
        raw[block].update(values)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "data" / "versions").symlink_to(versions)
    params = load_params(root / "params.yaml")
    path = versions / f"{params.data.version}.parquet"
    if not path.is_file():
        raise SystemExit(f"{path} missing: run `dvc pull && dvc repro version` first")
    write_features(
        pd.read_parquet(path),
        params.data.version,
        file_md5(path),
        params.features,
        root / "data" / "features",
        root / "metrics",
    )
    return root
