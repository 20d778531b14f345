"""The lecture's reference RNN, reproduced exactly, with the same head on LSTM and GRU cells."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from pipelines.config import TrainParams

CELLS: dict[str, Any] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one forecaster; stored as JSON next to its weights."""

    input_size: int
    hidden_size: int
    num_layers: int
    cell: str
    bidirectional: bool
    dropout: float

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}: choose one of {sorted(CELLS)}")
        for name in ("input_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_train(cls, params: TrainParams, input_size: int) -> ModelConfig:
        """The architecture fields of params.yaml `train`, for `input_size` features."""
        names = [f.name for f in fields(cls) if f.name != "input_size"]
        return cls(input_size=input_size, **{n: getattr(params, n) for n in names})


class Forecaster(nn.Module):
    """Recurrent encoder → last time step → fc1(hidden*dirs → hidden) → ReLU → fc2(hidden → 1).

    With cell="rnn", bidirectional=True, num_layers=2 this is the lecture's RNN_Model.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        directions = 2 if config.bidirectional else 1
        self.rnn = CELLS[config.cell](
            config.input_size,
            config.hidden_size,
            config.num_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.fc1 = nn.Linear(config.hidden_size * directions, config.hidden_size)
        self.fc2 = nn.Linear(config.hidden_size, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        hidden = self.relu(self.fc1(out[:, -1, :]))
        forecast: torch.Tensor = self.fc2(hidden).squeeze(-1)
        return forecast
