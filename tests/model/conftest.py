"""Model-test fixtures: a project root (tiny params, v0.3 features, versions) as the cwd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TINY_TRAIN = {
    "cell": "rnn",
    "hidden_size": 6,
    "num_layers": 1,
    "lookback": 6,
    "max_epochs": 2,
    "patience": 2,
    "batch_size": 512,
}
TINY_SWEEP = {
    "n_trials": 3,
    "max_epochs": 2,
    "timeout_s": 300,
    "space": {
        "hidden_size": [4, 8],
        "num_layers": [1, 2],
        "lr": [0.001, 0.01],
        "lookback": [5, 10],
        "cell": ["rnn", "lstm", "gru"],
        "median": ["persistence", "learned"],
    },
}


def make_workspace(root: Path, features: Path, versions: Path, *, ge_success: bool = True) -> Path:
    """params.yaml (tiny train/sweep blocks), data/features, data/versions, metrics/validation."""
    from core.files import file_md5

    (root / "data").mkdir(parents=True)
    (root / "data" / "features").symlink_to(features)
    (root / "data" / "versions").symlink_to(versions)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(TINY_TRAIN)
    params["sweep"].update(TINY_SWEEP)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The GE gate's record (the gate itself is tested in tests/data): lineage tags read it.
    md5 = file_md5(versions / "v0.3.parquet")
    (root / "metrics").mkdir()
    (root / "metrics" / "validation.json").write_text(
        json.dumps({"v0.3": {"success": ge_success, "md5": md5}})
    )
    return root


@pytest.fixture
def workspace(
    tmp_path: Path,
    features_v03: Path,
    real_versions: Path,
    mlflow_store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """cwd = a fresh project root; MLflow store, Optuna journal and artifacts all under tmp_path."""
    root = make_workspace(tmp_path / "project", features_v03, real_versions)
    monkeypatch.setenv("COINFLOW_WORKDIR", str(root))
    monkeypatch.chdir(root)
    monkeypatch.setenv("COINFLOW_OPTUNA_STORAGE", str(tmp_path / "optuna" / "journal.log"))
    monkeypatch.setenv("COINFLOW_PROGRESS", "0")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return root
