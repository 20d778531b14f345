"""Lecture-style training loop vs coinflow's, side by side on v0.3, measuring learning.

Same data (v0.3 features, chronological split, train-only scaler), same model (the lecture's
bidirectional RNN with params.yaml's train block; quantile head, pinball loss for every loop),
same seed and thread count. The loops:

- lecture: a per-sample `Dataset.__getitem__` through `DataLoader(batch_size=32, shuffle=True)`,
  the plain `nn.RNN` forward (the whole reverse pass), fp32, params.yaml's lr;
- coinflow fp32: pipelines.training.train.fit (whole tensors, params.yaml's batch, the exact
  truncation of the dead reverse pass);
- coinflow bf16: the same with bf16 autocast, batch 1024 and lr scaled by sqrt(1024 / batch).

Every loop runs the same epochs (no early stopping); per-epoch time includes the validation
pass. Reported per loop: median s/epoch over the interleaved rounds, best validation pinball
loss, its epoch, and the epochs and seconds until the validation loss first comes within 0.1%
of the *lecture loop's* best (never: "-"); beside them the loss of the mean predictor (the
training targets' own quantiles, constant) — a loop that does not beat it has learned nothing.
Optimizer and autocast lazy imports are paid once before any timed region, for every loop.

    .venv/bin/python benchmarks/train_speed.py [--epochs 30] [--threads 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Curve:
    """One loop's run: seconds at the end of each epoch, validation loss after it."""

    stamps: list[float]
    losses: list[float]

    @property
    def per_epoch(self) -> float:
        return self.stamps[-1] / len(self.stamps)

    def reach(self, target: float) -> tuple[int, float] | None:
        """(epoch, seconds) when the validation loss first is <= target."""
        for epoch, (stamp, loss) in enumerate(zip(self.stamps, self.losses, strict=True), 1):
            if loss <= target:
                return epoch, stamp
        return None


def val_loss(net: Any, data: Any, params: Any) -> float:
    import torch

    from forecasting.quantiles import pinball_torch

    x, y = data.tensors("val", params.lookback)
    net.eval()
    with torch.inference_mode():
        levels = torch.tensor(params.levels, dtype=torch.float32)
        return float(pinball_torch(net(x), y, levels).item())


def lecture_loop(data: Any, params: Any, epochs: int) -> Curve:
    """The lecture's loop: per-sample windows from __getitem__, DataLoader(32, shuffle=True),
    the plain recurrent forward."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from forecasting.network import Forecaster
    from forecasting.quantiles import pinball_torch
    from pipelines.training.train import model_config

    class Windows(Dataset[tuple[Any, Any]]):
        def __init__(self, rows: Any) -> None:
            self.rows = rows

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> tuple[Any, Any]:
            end = int(self.rows[i])
            x = data.x[end - params.lookback + 1 : end + 1]
            return torch.tensor(x, dtype=torch.float32), torch.tensor(data.y[end])

    torch.manual_seed(params.seed)
    net = Forecaster(model_config(params, data.x.shape[1]))
    levels = torch.tensor(params.levels, dtype=torch.float32)
    train = DataLoader(
        Windows(data.end_rows("train", params.lookback)), batch_size=32, shuffle=True
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=params.lr)
    started, curve = time.perf_counter(), Curve([], [])
    for _ in range(epochs):
        net.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = pinball_torch(net.untruncated(x), y.float(), levels)
            loss.backward()
            optimizer.step()
        curve.losses.append(val_loss(net, data, params))
        curve.stamps.append(time.perf_counter() - started)
    return curve


def our_loop(data: Any, params: Any, epochs: int) -> Curve:
    """pipelines.training.train.fit, same epochs, no early stopping."""
    import torch

    from forecasting.network import Forecaster
    from pipelines.training.train import fit, model_config

    run = params.model_copy(update={"max_epochs": epochs, "patience": epochs})
    torch.manual_seed(run.seed)
    net = Forecaster(model_config(run, data.x.shape[1]))
    curve = Curve([], [])
    started = time.perf_counter()

    def record(_epoch: int, _train: float, val: float) -> bool:
        curve.stamps.append(time.perf_counter() - started)
        curve.losses.append(val)
        return False

    fit(net, data, run, on_epoch=record)
    return curve


def warm_up() -> None:
    """Pay Adam's and autocast's lazy imports outside every timed region."""
    import torch

    p = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([p], lr=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = (p * 2).sum()
    loss.backward()
    optimizer.step()


def mean_predictor_loss(data: Any, params: Any) -> float:
    """Validation pinball loss of predicting the training targets' quantiles every day."""
    import numpy as np
    import torch

    from forecasting.quantiles import pinball_torch

    _, y_train = data.tensors("train", params.lookback)
    _, y_val = data.tensors("val", params.lookback)
    q = np.quantile(y_train.numpy(), params.levels)
    constant = torch.tensor(q, dtype=torch.float32).repeat(len(y_val), 1)
    levels = torch.tensor(params.levels, dtype=torch.float32)
    return float(pinball_torch(constant, y_val, levels).item())


def compare(name: str, data: Any, params: Any, epochs: int, rounds: int) -> None:
    """All loops on one model config, interleaved `rounds` times; one table."""
    bf16 = params.model_copy(
        update={
            "precision": "bf16",
            "batch_size": 1024,
            "lr": params.lr * math.sqrt(1024 / params.batch_size),
        }
    )
    loops = {
        "lecture (DataLoader 32, plain RNN, fp32)": lambda: lecture_loop(data, params, epochs),
        f"coinflow fp32 (batch {params.batch_size})": lambda: our_loop(data, params, epochs),
        f"coinflow bf16 (batch 1024, lr {bf16.lr:.2g})": lambda: our_loop(data, bf16, epochs),
    }
    runs: dict[str, list[Curve]] = {label: [] for label in loops}
    for _ in range(rounds):
        for label, loop in loops.items():
            runs[label].append(loop())
    print(
        f"\n{name}: {params.cell} hidden={params.hidden_size} layers={params.num_layers} "
        f"bidirectional={params.bidirectional}, lookback={params.lookback}, lr={params.lr}, "
        f"{epochs} epochs x {rounds} interleaved rounds"
    )
    lecture_best = min(runs[next(iter(loops))][0].losses)
    target = lecture_best * 1.001
    constant = mean_predictor_loss(data, params)
    print(f"  mean predictor (train quantiles, constant): val loss {constant:.5f}")
    print(f"  target: within 0.1% of the lecture loop's best {lecture_best:.5f} -> {target:.5f}")
    print(
        f"  {'loop':<42} {'s/epoch':>8} {'spread':>7} {'best val':>9} {'@epoch':>6} "
        f"{'to target':>13}"
    )
    base = None
    for label, curves in runs.items():
        per_epoch = statistics.median(c.per_epoch for c in curves)
        spread = (max(c.per_epoch for c in curves) - min(c.per_epoch for c in curves)) / per_epoch
        first = curves[0]
        best = min(first.losses)
        reached = first.reach(target)
        at = f"{reached[0]:>3} ep {reached[1]:6.1f}s" if reached else "-"
        noisy = " noisy" if spread > 0.15 else ""
        print(
            f"  {label:<42} {per_epoch:8.3f} {spread:6.0%} {best:9.5f} "
            f"{first.losses.index(best) + 1:>6} {at:>13}{noisy}"
        )
        if base is None:
            base = per_epoch
        else:
            print(f"  {'':<42} {base / per_epoch:7.1f}x the lecture loop per epoch")


def main() -> None:
    import torch

    from benchmarks.workspace import build_workspace
    from core.params import load_params
    from pipelines.training.train import load_training_data

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = build_workspace(Path(tmp))
        params = load_params(root / "params.yaml").train
        data = load_training_data(root / "data" / "features")
    params = params.model_copy(update={"threads": args.threads, "precision": "fp32"})
    print(
        f"v0.3: {data.split.n_train} train / {data.split.n_val} val rows, "
        f"{args.threads} torch thread(s), seed {params.seed}"
    )
    warm_up()
    compare("lecture model (params.yaml train block)", data, params, args.epochs, args.rounds)
    small = params.model_copy(update={"hidden_size": 8, "num_layers": 1, "lookback": 10})
    compare("sweep-sized model", data, small, args.epochs, args.rounds)


if __name__ == "__main__":
    main()
