"""The truncated encoder and the NumPy forward compute exactly what the plain modules do."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from forecasting.network import Forecaster, ModelConfig, numpy_forward, numpy_weights

pytestmark = pytest.mark.unit
LEVELS = (0.025, 0.1, 0.5, 0.9, 0.975)
CASES = list(itertools.product(["rnn", "gru", "lstm"], [1, 2, 3], [True, False]))


def net_for(cell: str, layers: int, bidirectional: bool, seed: int = 0) -> Forecaster:
    torch.manual_seed(seed)
    config = ModelConfig(8, 12, layers, cell, bidirectional, 0.0, LEVELS)
    return Forecaster(config)


@pytest.mark.parametrize(("cell", "layers", "bidirectional"), CASES)
def test_outputs_and_gradients_equal_the_plain_module(
    cell: str, layers: int, bidirectional: bool
) -> None:
    net = net_for(cell, layers, bidirectional)
    x = torch.randn(16, 20, 8)
    fast, plain = net(x), net.untruncated(x)
    torch.testing.assert_close(fast, plain, atol=1e-6, rtol=0)
    grads = []
    for out in (fast, plain):
        net.zero_grad()
        (out * torch.linspace(-1, 1, len(LEVELS))).sum().backward()
        # The last layer's reverse W_hh multiplies a zero state: its gradient is 0 (plain) or
        # absent (truncated), the same to any optimizer.
        grads.append(
            {
                k: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                for k, p in net.named_parameters()
            }
        )
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=0, msg=name)


def test_state_dict_keys_are_the_plain_modules() -> None:
    net = net_for("rnn", 2, True)
    plain = torch.nn.RNN(8, 12, 2, batch_first=True, bidirectional=True)
    assert [k for k in net.state_dict() if k.startswith("rnn.")] == [
        f"rnn.{k}" for k in plain.state_dict()
    ]  # registered versions load unchanged


@pytest.mark.parametrize(("cell", "layers", "bidirectional"), CASES)
def test_numpy_forward_equals_the_float64_torch_forward(
    cell: str, layers: int, bidirectional: bool
) -> None:
    net = net_for(cell, layers, bidirectional, seed=3).double().eval()
    x = np.random.default_rng(4).normal(size=(3, 15, 8))
    with torch.inference_mode():
        expected = net(torch.from_numpy(x)).numpy()
    got = numpy_forward(net.config, numpy_weights(net), x)
    np.testing.assert_allclose(got, expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_a_persistence_median_is_exactly_zero_and_the_spread_learns(cell: str) -> None:
    from forecasting.quantiles import pinball_torch

    torch.manual_seed(1)
    net = Forecaster(ModelConfig(8, 12, 2, cell, True, 0.0, LEVELS, median="persistence"))
    x = torch.randn(16, 20, 8)
    out = net(x)
    assert torch.all(out[:, 2] == 0) and torch.all(out[:, 3] > out[:, 1])
    pinball_torch(out, torch.randn(16) * 3, torch.tensor(LEVELS)).backward()
    assert net.fc2.weight.grad is not None and net.fc2.weight.grad.abs().sum() > 0
    net = net.double().eval()
    xs = np.random.default_rng(2).normal(size=(3, 15, 8))
    with torch.inference_mode():
        expected = net(torch.from_numpy(xs)).numpy()
    got = numpy_forward(net.config, numpy_weights(net), xs)
    np.testing.assert_allclose(got, expected, atol=1e-8, rtol=0)
    assert (got[:, 2] == 0).all()
