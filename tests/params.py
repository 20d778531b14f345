"""params.yaml's blocks with overrides: the one way tests build TrainParams and ModelConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.params import TrainParams, load_params
from forecasting.network import ModelConfig

REPO = Path(__file__).resolve().parents[1]


def train_params(**overrides: Any) -> TrainParams:
    """The repository's params.yaml `train` block with `overrides` (validated)."""
    base = load_params(REPO / "params.yaml").train.model_dump()
    return TrainParams.model_validate({**base, **overrides})


def model_config(input_size: int = 8, **overrides: Any) -> ModelConfig:
    """The architecture of params.yaml's `train` block, with `overrides` (ModelConfig checks)."""
    base = load_params(REPO / "params.yaml").train.model_dump()
    names = ("hidden_size", "num_layers", "cell", "bidirectional", "dropout", "levels")
    return ModelConfig(input_size=input_size, **{n: base[n] for n in names} | overrides)
