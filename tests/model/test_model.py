"""The forecaster's architecture, parameter checks, divergence handling and determinism."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from core.params import TrainParams
from forecasting.features import Scaler, Split
from forecasting.network import Forecaster
from forecasting.quantiles import median_index, monotone_quantiles
from pipelines.training.train import TrainingData, check_params, train_model
from tests.params import model_config, train_params


class LectureRNN(nn.Module):
    """The lecture's RNN_Model, verbatim (output_size=1)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, batch_first=True, bidirectional=True)
        self.fc1 = nn.Linear(hidden_size * 2, hidden_size)
        self.fc2 = nn.Linear(hidden_size, output_size)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        x = self.fc1(out[:, -1, :])
        x = self.relu(x)
        x = self.fc2(x)
        return x


def synthetic_data(n: int = 120, features: int = 3, seed: int = 0) -> TrainingData:
    """A tiny dataset with a learnable target (a lagged feature), split 60/20/20."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = (0.5 * x[:, 0] + 0.1 * rng.normal(size=n)).astype("float32")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=n)))
    return TrainingData(
        pd.date_range("2020-01-01", periods=n),
        x,
        y,
        close,
        close * 1.001,
        Split(72, 24, 24),
        Scaler([0.0] * features, [1.0] * features, 0.0, 1.0),
        "synthetic",
        "0" * 32,
    )


@pytest.mark.unit
def test_rnn_config_is_the_lectures_architecture() -> None:
    net = Forecaster(model_config(input_size=8, hidden_size=64, num_layers=2, cell="rnn"))
    rnn = net.rnn
    assert type(rnn) is nn.RNN
    assert (rnn.input_size, rnn.hidden_size, rnn.num_layers) == (8, 64, 2)
    assert rnn.batch_first and rnn.bidirectional and rnn.nonlinearity == "tanh"
    assert (net.fc1.in_features, net.fc1.out_features) == (128, 64)
    levels = net.config.levels  # fc2 emits one value per quantile level
    assert (net.fc2.in_features, net.fc2.out_features) == (64, len(levels))
    lecture = LectureRNN(8, 64, len(levels), 2)
    lecture.load_state_dict(net.state_dict(), strict=True)  # same names, same shapes
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in lecture.parameters())
    x = torch.randn(5, 30, 8)
    with torch.no_grad():  # the lecture's outputs, made non-crossing quantiles
        torch.testing.assert_close(net(x), monotone_quantiles(lecture(x), median_index(levels)))


@pytest.mark.unit
@pytest.mark.parametrize(("cell", "kind", "gates"), [("lstm", nn.LSTM, 4), ("gru", nn.GRU, 3)])
def test_lstm_and_gru_share_the_head(cell: str, kind: type[nn.Module], gates: int) -> None:
    net = Forecaster(
        model_config(
            input_size=8, hidden_size=16, num_layers=3, cell=cell, bidirectional=False, dropout=0.2
        )
    )
    assert type(net.rnn) is kind
    assert net.rnn.weight_ih_l0.shape == (gates * 16, 8)
    assert net.rnn.dropout == 0.2 and net.rnn.num_layers == 3
    levels = len(net.config.levels)
    assert (net.fc1.in_features, net.fc2.out_features) == (16, levels)
    assert net(torch.randn(4, 7, 8)).shape == (4, levels)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_size": 0}, "hidden_size must be >= 1"),
        ({"num_layers": 0}, "num_layers must be >= 1"),
        ({"cell": "transformer"}, "unknown cell 'transformer'"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ],
)
def test_bad_architecture_is_refused_by_name(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        model_config(**change)  # type: ignore[arg-type]


@pytest.mark.unit
def test_bad_params_fail_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    data = synthetic_data()
    started = []
    monkeypatch.setattr("pipelines.training.train.fit", lambda *a, **k: started.append(1))
    with pytest.raises(ValueError, match="lookback 72 is not shorter than the 72 training rows"):
        train_model(train_params(lookback=72), data)
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        check_params(
            TrainParams.model_construct(**{**train_params().model_dump(), "hidden_size": 0}), data
        )
    with pytest.raises(ValueError, match="cell"):
        train_params(cell="transformer")  # type: ignore[arg-type]
    assert not started


@pytest.mark.unit
def test_same_seed_same_weights_and_losses() -> None:
    data = synthetic_data()
    params = train_params(hidden_size=8, num_layers=1, lookback=5, max_epochs=4, batch_size=16)
    (net_a, fit_a), (net_b, fit_b) = train_model(params, data), train_model(params, data)
    assert fit_a.history == fit_b.history
    for name, tensor in net_a.state_dict().items():
        assert torch.equal(tensor, net_b.state_dict()[name]), name
    net_c, fit_c = train_model(params.model_copy(update={"seed": 7}), data)
    assert fit_c.history != fit_a.history
    assert fit_a.history[-1][1] < fit_a.history[0][1] or fit_a.best_epoch > 1  # it learns


@pytest.mark.unit
def test_a_persistence_median_model_is_persistence_at_the_median_and_learns_the_spread() -> None:
    from forecasting.quantiles import coverage
    from forecasting.scores import score_quantiles
    from pipelines.training.train import predict_quantiles

    data = synthetic_data(n=240)
    params = train_params(
        hidden_size=8, num_layers=1, lookback=5, max_epochs=40, batch_size=32, lr=1e-2
    )
    learned, _ = train_model(params, data)
    net, fit = train_model(params.model_copy(update={"median": "persistence"}), data)
    assert net.config.median == "persistence" and fit.calibration is not None
    rows = data.end_rows("test", params.lookback)
    raw = predict_quantiles(net, data, "test", params.lookback)
    assert (raw[:, net.median] == 0).all()  # exactly today's close
    scores = score_quantiles(raw, data.close[rows], data.next_close[rows], params.levels)
    assert scores["mase"] == 1.0
    # The spread is what it learns: with the median fixed, the pinball loss falls only by it,
    # and its raw 80% interval holds about 80% of the targets (0.5 x feature 0 + noise).
    assert fit.history[-1][0] < 0.9 * fit.history[0][0]
    assert 0.65 < coverage(raw, data.y[rows], 2, 6) < 0.95  # untrained: ~0.99
    other = predict_quantiles(learned, data, "test", params.lookback)
    assert np.abs(other[:, learned.median]).max() > 1e-3  # the learned family's median moves


@pytest.mark.model
def test_diverged_run_ends_failed_and_the_process_goes_on(workspace: Path) -> None:
    import mlflow

    from core.tracking import configure_mlflow
    from pipelines.training.tracked_run import tracked_training
    from pipelines.training.train import load_training_data

    configure_mlflow()
    data = load_training_data(workspace / "data" / "features")
    base = train_params(hidden_size=4, num_layers=1, lookback=5, max_epochs=2, batch_size=512)
    failed = tracked_training(
        base.model_copy(update={"lr": 1e30}), data, run_name="boom", log_model=False
    )
    assert failed.status == "FAILED" and np.isnan(failed.val_loss)
    run = mlflow.get_run(failed.run_id)
    assert run.info.status == "FAILED"
    assert "diverged" in run.data.tags["coinflow.failure"]
    ok = tracked_training(base, data, run_name="after", log_model=False)
    assert ok.status == "FINISHED" and np.isfinite(ok.val_loss)
    assert mlflow.get_run(ok.run_id).info.status == "FINISHED"
