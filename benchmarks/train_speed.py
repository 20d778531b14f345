"""Lecture-style training loop vs coinflow's whole-tensor loop, side by side on v0.3.

Same data (v0.3 features, chronological split, train-only scaler), same model (the lecture's
bidirectional RNN with params.yaml's train block: hidden/layers/lookback), same Adam lr, same
seed and thread count. The lecture loop is a per-sample `Dataset.__getitem__` fed through
`DataLoader(batch_size=32, shuffle=True)` (validation through a batch-32 loader too); ours
slices pre-built window tensors with params.train.batch_size. Both run the same number of
epochs (no early stopping) and we report seconds per epoch and the time each needs to first
reach a validation loss both reach (the worse of the two best losses).

    .venv/bin/python benchmarks/train_speed.py [--epochs 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def lecture_loop(data: Any, params: Any, epochs: int) -> tuple[list[float], list[float]]:
    """The lecture's loop: per-sample windows from __getitem__, DataLoader(32, shuffle=True)."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from pipelines.model import Forecaster, ModelConfig

    class Windows(Dataset):
        def __init__(self, rows: Any) -> None:
            self.rows = rows

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> tuple[Any, Any]:
            end = int(self.rows[i])
            x = data.x[end - params.lookback + 1 : end + 1]
            return torch.tensor(x, dtype=torch.float32), torch.tensor(data.y[end])

    torch.manual_seed(params.seed)
    net = Forecaster(
        ModelConfig(
            input_size=data.x.shape[1],
            hidden_size=params.hidden_size,
            num_layers=params.num_layers,
            cell=params.cell,
        )
    )
    train = DataLoader(
        Windows(data.end_rows("train", params.lookback)), batch_size=32, shuffle=True
    )
    val = DataLoader(Windows(data.end_rows("val", params.lookback)), batch_size=32)
    optimizer = torch.optim.Adam(net.parameters(), lr=params.lr)
    loss_fn = torch.nn.MSELoss()
    started, stamps, losses = time.perf_counter(), [], []
    for _ in range(epochs):
        net.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
        net.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for x, y in val:
                total += loss_fn(net(x), y).item() * len(y)
                count += len(y)
        losses.append(total / count)
        stamps.append(time.perf_counter() - started)
    return stamps, losses


def our_loop(data: Any, params: Any, epochs: int) -> tuple[list[float], list[float]]:
    """coinflow's train_model (whole tensors), same epochs, no early stopping."""
    from pipelines.train import train_model

    run = params.model_copy(update={"max_epochs": epochs, "patience": epochs})
    stamps, losses = [], []
    started = time.perf_counter()

    def record(_epoch: int, _train: float, val: float) -> bool:
        stamps.append(time.perf_counter() - started)
        losses.append(val)
        return False

    train_model(run, data, on_epoch=record)
    return stamps, losses


def first_time_at(stamps: list[float], losses: list[float], target: float) -> float:
    return next(t for t, loss in zip(stamps, losses, strict=True) if loss <= target)


def compare(name: str, data: Any, params: Any, epochs: int) -> None:
    """Both loops on one model config; prints s/epoch and time to a loss both reach."""
    print(
        f"\n{name}: {params.cell} hidden={params.hidden_size} layers={params.num_layers} "
        f"bidirectional, lookback={params.lookback}, lr={params.lr}, {epochs} epochs"
    )
    ours = our_loop(data, params, epochs)
    lecture = lecture_loop(data, params, epochs)
    target = max(min(ours[1]), min(lecture[1]))
    rows = (
        ("lecture (Dataset+DataLoader, batch 32)", lecture),
        (f"coinflow (whole tensors, batch {params.batch_size})", ours),
    )
    print(f"  {'loop':<40} {'s/epoch':>8} {'total s':>8} {'best val':>9} {'t(val<=target)':>15}")
    for label, (stamps, losses) in rows:
        print(
            f"  {label:<40} {stamps[-1] / len(stamps):8.3f} {stamps[-1]:8.2f} "
            f"{min(losses):9.5f} {first_time_at(stamps, losses, target):14.2f}s"
        )
    per_epoch = (lecture[0][-1] / len(lecture[0])) / (ours[0][-1] / len(ours[0]))
    to_target = first_time_at(*lecture, target) / first_time_at(*ours, target)
    print(f"  target val loss {target:.5f} (the worse of the two best losses)")
    print(f"  speed-up per epoch: {per_epoch:.1f}x; to reach the target loss: {to_target:.1f}x")


def main() -> None:
    import torch

    from benchmarks.workspace import build_workspace
    from pipelines.config import load_params
    from pipelines.train import load_training_data

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = build_workspace(Path(tmp))
        params = load_params(root / "params.yaml").train
        data = load_training_data(root / "data" / "features")
    params = params.model_copy(update={"threads": args.threads})
    print(
        f"v0.3: {data.split.n_train} train / {data.split.n_val} val rows, "
        f"{args.threads} torch thread(s), seed {params.seed}"
    )
    compare("lecture model (params.yaml train block)", data, params, args.epochs)
    small = params.model_copy(update={"hidden_size": 8, "num_layers": 1, "lookback": 10})
    compare("sweep-sized model", data, small, args.epochs)


if __name__ == "__main__":
    main()
