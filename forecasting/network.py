"""The lecture's reference RNN, with the same head on LSTM and GRU cells, emitting quantiles.

Recurrent encoder → last time step → fc1 → ReLU → fc2 (one output per quantile level) →
non-crossing quantiles. With cell="rnn", bidirectional=True, num_layers=2 the encoder and head
are the lecture's RNN_Model (same modules, same `state_dict` keys; fc2 has one output per level).

The median is `learned` (fc2's median output) or `persistence`: the median output is
subtracted from every output before the monotone step, so the median is exactly 0 — with a
target scaled but not centred (features.Scaler.for_median), a zero log return, tomorrow =
today — and the gradients train only the spread around it.

The head reads only the last time step. For the last layer's reverse direction that is its
*first* step (one cell step from a zero state), so Forecaster.forward computes that one step
instead of the whole reverse pass: the same numbers, ~1/3 fewer FLOPs for the lecture model.
`numpy_forward` is the same arithmetic in float64 NumPy, for single-window inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import _VF, nn
from torch.nn import functional

from .quantiles import check_levels, median_index, monotone_quantiles

if TYPE_CHECKING:
    from .features import Scaler
CELLS: dict[str, Any] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
MEDIANS = ("learned", "persistence")  # where the median comes from (see the module docstring)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one forecaster; stored as JSON next to its weights."""

    input_size: int
    hidden_size: int
    num_layers: int
    cell: str
    bidirectional: bool
    dropout: float
    levels: tuple[float, ...] = (0.5,)  # quantile levels fc2 emits (one output each)
    median: str = "learned"  # learned | persistence (configs before it existed: learned)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}: choose one of {sorted(CELLS)}")
        if self.median not in MEDIANS:
            raise ValueError(f"unknown median {self.median!r}: choose one of {list(MEDIANS)}")
        for name in ("input_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "levels", check_levels(self.levels))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**{**data, "levels": tuple(data.get("levels", (0.5,)))})


def _recurrence(
    cell: str,
    x: torch.Tensor,
    weights: list[torch.Tensor],
    layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
) -> torch.Tensor:
    """The output sequence of `layers` stacked layers (torch's own kernels, via torch._VF: the
    one place coinflow calls that private API; tests/model/test_model.py checks it)."""
    directions = 2 if bidirectional else 1
    h0 = x.new_zeros(layers * directions, x.shape[0], weights[1].shape[1])
    if cell == "lstm":
        lstm = _VF.lstm(x, (h0, h0), weights, True, layers, dropout, training, bidirectional, True)
        return lstm[0]
    kernel = _VF.rnn_tanh if cell == "rnn" else _VF.gru
    sequence: torch.Tensor = kernel(
        x, h0, weights, True, layers, dropout, training, bidirectional, True
    )[0]
    return sequence


def _first_step(
    cell: str, x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> torch.Tensor:
    """One cell step from a zero hidden (and cell) state: W_hh · 0 drops out."""
    gates = functional.linear(x, w_ih, b_ih)
    if cell == "rnn":
        return torch.tanh(gates + b_hh)
    if cell == "gru":
        i_r, i_z, i_n = gates.chunk(3, dim=-1)
        h_r, h_z, h_n = b_hh.chunk(3)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        return (1 - z) * torch.tanh(i_n + r * h_n)
    i, _f, g, o = (gates + b_hh).chunk(4, dim=-1)  # the forget gate multiplies a zero state
    return torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))


class Forecaster(nn.Module):
    """Recurrent encoder → last time step → fc1 → ReLU → fc2 → non-crossing quantiles."""

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
        self.fc2 = nn.Linear(config.hidden_size, len(config.levels))
        self.relu = nn.ReLU()
        self.median = median_index(config.levels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output at the last time step, (batch, hidden * directions)."""
        cfg, rnn = self.config, self.rnn
        if not cfg.bidirectional:
            last: torch.Tensor = rnn(x)[0][:, -1]
            return last
        weights = list(rnn._flat_weights)  # [w_ih, w_hh, b_ih, b_hh] per layer and direction
        lower = 4 * 2 * (cfg.num_layers - 1)
        if cfg.num_layers > 1:
            x = _recurrence(
                cfg.cell, x, weights[:lower], cfg.num_layers - 1, True, rnn.dropout, self.training
            )
            x = functional.dropout(x, rnn.dropout, self.training)  # between layers, as nn.RNN
        w_ih, w_hh, b_ih, b_hh, r_ih, _r_hh, rb_ih, rb_hh = weights[lower:]
        forward = _recurrence(cfg.cell, x, [w_ih, w_hh, b_ih, b_hh], 1, False, 0.0, False)
        backward = _first_step(cfg.cell, x[:, -1], r_ih, rb_ih, rb_hh)
        return torch.cat([forward[:, -1], backward], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, lookback, features) → (batch, levels) scaled next-day return quantiles."""
        return self.head(self.encode(x))

    def head(self, last: torch.Tensor) -> torch.Tensor:
        """fc1 → ReLU → fc2 → non-crossing quantiles, from the encoder's last step (a
        persistence median: fc2's median output subtracted first, so the median is 0)."""
        raw = self.fc2(self.relu(self.fc1(last)))
        if self.config.median == "persistence":
            raw = raw - raw[..., self.median : self.median + 1]
        return monotone_quantiles(raw, self.median)

    def untruncated(self, x: torch.Tensor) -> torch.Tensor:
        """forward through the plain nn.RNN/GRU/LSTM (every step of every direction): the
        reference the truncation is tested against, and the lecture loop's benchmark cost."""
        return self.head(self.rnn(x)[0][:, -1])


def _sigmoid(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1 + np.tanh(0.5 * v))
    return out


def _np_step(
    cell: str, x: np.ndarray, h: np.ndarray, c: np.ndarray, w: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    w_ih, w_hh, b_ih, b_hh = w
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    if cell == "rnn":
        return np.tanh(gi + gh), c
    if cell == "gru":
        i_r, i_z, i_n = np.split(gi, 3, axis=-1)
        h_r, h_z, h_n = np.split(gh, 3, axis=-1)
        r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
        n = np.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h, c
    i, f, g, o = np.split(gi + gh, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def numpy_weights(net: Forecaster) -> dict[str, np.ndarray]:
    """The network's parameters as float64 arrays (the NumPy forward's input)."""
    return {k: v.detach().double().numpy() for k, v in net.state_dict().items()}


def numpy_forward(config: ModelConfig, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Forecaster.forward in float64 NumPy (same weights, same truncation): (n, levels)."""
    hidden, layers = config.hidden_size, config.num_layers
    directions = 2 if config.bidirectional else 1
    seq = np.asarray(x, dtype="float64")
    n, steps = seq.shape[0], seq.shape[1]
    zero = np.zeros((n, hidden))
    for layer in range(layers):
        last_layer = layer == layers - 1
        outs = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w = [
                weights[f"rnn.{k}{suffix}"]
                for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            if last_layer and direction:  # the reverse direction's one step the head reads
                outs.append(_np_step(config.cell, seq[:, -1], zero, zero, w)[0][:, None])
                continue
            h, c = zero, zero
            order = range(steps - 1, -1, -1) if direction else range(steps)
            out = np.empty((n, steps, hidden))
            for t in order:
                h, c = _np_step(config.cell, seq[:, t], h, c, w)
                out[:, t] = h
            outs.append(out[:, -1:] if last_layer else out)
        seq = np.concatenate(outs, axis=-1)
    head = np.maximum(seq[:, -1] @ weights["fc1.weight"].T + weights["fc1.bias"], 0)
    raw = head @ weights["fc2.weight"].T + weights["fc2.bias"]
    m = median_index(config.levels)
    if config.median == "persistence":
        raw = raw - raw[:, m : m + 1]
    soft = np.logaddexp(0, raw)  # softplus, as monotone_quantiles
    up = np.cumsum(soft[:, m + 1 :], axis=1)
    down = np.cumsum(soft[:, :m][:, ::-1], axis=1)[:, ::-1]
    centre = raw[:, m : m + 1]
    out_q: np.ndarray = np.concatenate([centre - down, centre, centre + up], axis=1)
    return out_q


NUMPY_BATCH = 4  # windows up to this many go through the float64 NumPy forward, else torch


class NetQuantiles:
    """A trained Forecaster as a QuantileModel (forecasting.forecast): raw daily rows → features →
    train-fitted scaler → network → RAW log-return quantiles (forecasting.packaged calibrates).

    A few windows (the serving path: one per request) run the float64 NumPy forward; batches
    (scoring, sampled paths) run torch.
    """

    def __init__(self, net: Forecaster, scaler: Scaler, lookback: int) -> None:
        self.net, self.lookback = net.eval(), lookback
        self.scaler = scaler.for_median(net.config.median)
        self.weights = numpy_weights(net)

    @property
    def levels(self) -> tuple[float, ...]:
        return self.net.config.levels

    @property
    def rows_needed(self) -> int:
        """Raw daily rows one forecast reads: lookback windows need one extra day for returns."""
        return self.lookback + 1

    def scaled_quantiles(self, windows: np.ndarray) -> np.ndarray:
        """Scaled quantiles of scaled feature windows (n, lookback, features) → (n, levels)."""
        if len(windows) <= NUMPY_BATCH:
            return numpy_forward(self.net.config, self.weights, windows)
        with torch.inference_mode():
            out: np.ndarray = self.net(torch.from_numpy(windows.astype("float32"))).numpy()
        return out.astype("float64")

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        from .features import features_array
        from .forecast import InputRowsError

        feats = self.scaler.transform(features_array(windows[:, -self.rows_needed :]))
        if not np.isfinite(feats).all():
            raise InputRowsError("a forecast window holds missing inputs")
        raw: np.ndarray = self.scaler.target_from_scaled(
            self.scaled_quantiles(np.ascontiguousarray(feats))
        )
        return raw
