"""Stage `features`: one gated dataset version → the features table, split, train-only scaler
and the persistence baseline's figures (data/features/, metrics/baseline.json).

The arithmetic is the kernel's (forecasting.features); this module is the stage's I/O.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import CoinflowError
from core.files import file_md5, write_json
from core.gate_record import passed, read_validation
from core.params import FeatureParams, load_params
from core.paths import Project, project
from forecasting.features import (
    FEATURE_COLUMNS,
    baseline_report,
    build_table,
    fit_scaler,
    split_chronologically,
)

log = logging.getLogger(__name__)


class GateNotPassedError(CoinflowError, RuntimeError):
    """Features were asked for a dataset version that has not passed validation."""


def gate_passed(version: str, md5: str, proj: Project | None = None) -> None:
    """Raise unless validate recorded a pass for exactly this version's content."""
    if not read_validation(proj):
        raise GateNotPassedError("no validation record: run the validate stage first")
    if not passed(version, md5, proj):
        raise GateNotPassedError(
            f"dataset version {version} (md5 {md5}) has not passed the Great Expectations gate"
        )


def write_features(
    frame: pd.DataFrame,
    version: str,
    md5: str,
    params: FeatureParams,
    out_dir: Path,
    metrics_dir: Path,
) -> dict[str, dict[str, Any]]:
    """Build, split and scale one version; write table.parquet, meta.json and baseline.json."""
    table = build_table(frame)
    split = split_chronologically(len(table), params.train_frac, params.val_frac)
    scaler = fit_scaler(table, split)
    baseline = baseline_report(table, split)
    meta = {
        "version": version,
        "md5": md5,
        "split": asdict(split),
        "scaler": asdict(scaler),
        "features": FEATURE_COLUMNS,
        "first": str(table.index[0].date()),
        "last": str(table.index[-1].date()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out_dir / "table.parquet")
    write_json(out_dir / "meta.json", meta)
    write_json(metrics_dir / "baseline.json", baseline)
    return baseline


def main(version: str | None = None, proj: Project | None = None) -> str:
    """Features of `version` (default params' data.version) once the GE gate passed it; its md5."""
    proj = proj or project()
    params = load_params(proj.params_file)
    version = version or params.data.version
    path = proj.version_file(version)
    if not path.is_file():
        raise GateNotPassedError(f"dataset version {version} missing at {path}: nothing validated")
    md5 = file_md5(path)
    gate_passed(version, md5, proj)
    baseline = write_features(
        pd.read_parquet(path), version, md5, params.features, proj.features, proj.metrics
    )
    log.info("%s: persistence test MAE $%.2f", version, baseline["test"]["mae"])
    return md5
