"""One training run on a dataset version: the pure whole-tensor loop (no tracking, no CLI)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.params import TrainParams
from core.paths import project
from forecasting.features import FEATURE_COLUMNS, Scaler, Split, fit_scaler, make_windows
from forecasting.network import Forecaster, ModelConfig

if TYPE_CHECKING:
    from forecasting.calibration import CalibrationState

log = logging.getLogger(__name__)

# Called after each epoch with (epoch, train_loss, val_loss); returning True stops (prunes) the run.
EpochHook = Callable[[int, float, float], bool]


class DivergedError(RuntimeError):
    """The loss became NaN or infinite: this run failed, the process goes on."""


@dataclass(frozen=True)
class TrainingData:
    """Scaled features and targets of one dataset version, with its split and USD prices."""

    dates: pd.DatetimeIndex
    x: np.ndarray
    y: np.ndarray
    close: np.ndarray
    next_close: np.ndarray
    split: Split
    scaler: Scaler
    version: str
    md5: str
    table: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)

    def refit(self, split: Split) -> TrainingData:
        """The same rows cut at `split`'s end (nothing later is kept), with a scaler fitted on
        that split's own training rows: a backtest fold that has never seen the future."""
        end = split.test_start + split.n_test
        table = self.table.iloc[:end]
        return scaled_data(table, split, fit_scaler(table, split), self.version, self.md5)

    def for_median(self, median: str) -> TrainingData:
        """The same rows with the target as a model with this median is trained on (a
        persistence median: scaled, not centred; features.Scaler.for_median)."""
        scaler = self.scaler.for_median(median)
        if scaler == self.scaler:
            return self
        target = self.scaler.target_from_scaled(self.y.astype("float64"))
        y = scaler.target_to_scaled(target).astype("float32")
        return dataclasses.replace(self, y=y, scaler=scaler)

    def realised(self, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """(the next-day log return of each row, the ISO day it is realised on)."""
        days = self.dates[rows] + pd.Timedelta(days=1)
        return np.log(self.next_close[rows] / self.close[rows]), list(days.strftime("%Y-%m-%d"))

    def end_rows(self, part: str, lookback: int) -> np.ndarray:
        """Rows whose window ends in `part` (train windows need `lookback` rows of history)."""
        start, stop = {
            "train": (lookback - 1, self.split.n_train),
            "val": (self.split.val_start, self.split.test_start),
            "test": (self.split.test_start, len(self.y)),
        }[part]
        return np.arange(start, stop)

    def tensors(self, part: str, lookback: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.end_rows(part, lookback)
        return (
            torch.from_numpy(make_windows(self.x, lookback, rows)),
            torch.from_numpy(self.y[rows]),
        )


@dataclass
class FitResult:
    """Best weights by validation loss and the per-epoch history."""

    state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[tuple[float, float]] = field(default_factory=list)
    stopped_early: bool = False
    pruned: bool = False
    calibration: CalibrationState | None = None  # fitted on the validation days: shipped


def load_training_data(features_dir: Path | None = None) -> TrainingData:
    """Read the features stage's table and meta (scaler fitted on train rows only)."""
    features_dir = features_dir or project().features
    meta = json.loads((features_dir / "meta.json").read_text())
    table = pd.read_parquet(features_dir / "table.parquet")
    scaler = Scaler(**meta["scaler"])
    return scaled_data(table, Split(**meta["split"]), scaler, meta["version"], meta["md5"])


def scaled_data(
    table: pd.DataFrame, split: Split, scaler: Scaler, version: str, md5: str
) -> TrainingData:
    """TrainingData from the features table, scaled with `scaler`."""
    x = scaler.transform(table[FEATURE_COLUMNS].to_numpy()).astype("float32")
    y = scaler.target_to_scaled(table["target"].to_numpy()).astype("float32")
    return TrainingData(
        pd.DatetimeIndex(table.index),
        x,
        y,
        table["close"].to_numpy(),
        table["next_close"].to_numpy(),
        split,
        scaler,
        version,
        md5,
        table,
    )


def model_config(params: TrainParams, input_size: int) -> ModelConfig:
    """The architecture fields of params.yaml `train`, for `input_size` features."""
    names = [f.name for f in fields(ModelConfig) if f.name != "input_size"]
    return ModelConfig(input_size=input_size, **{n: getattr(params, n) for n in names})


def check_params(params: TrainParams, data: TrainingData) -> ModelConfig:
    """Refuse impossible settings before any training starts."""
    config = model_config(params, data.x.shape[1])
    if params.lookback >= data.split.n_train:
        raise ValueError(
            f"lookback {params.lookback} is not shorter than the "
            f"{data.split.n_train} training rows of {data.version}"
        )
    return config


def seed_everything(seed: int, threads: int) -> None:
    """Deterministic CPU training: fixed seeds, fixed thread count."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)


def fit(
    net: nn.Module,
    data: TrainingData,
    params: TrainParams,
    on_epoch: EpochHook | None = None,
    progress: bool = False,
) -> FitResult:
    """Adam + pinball loss over the quantile levels on whole tensors, early stopping on the
    validation loss; raises DivergedError."""
    from tqdm import tqdm

    from forecasting.quantiles import pinball_torch

    x_train, y_train = data.tensors("train", params.lookback)
    x_val, y_val = data.tensors("val", params.lookback)
    optimizer = torch.optim.Adam(net.parameters(), lr=params.lr)
    levels = torch.tensor(params.levels, dtype=torch.float32)

    def loss_fn(quantiles: torch.Tensor, target: torch.Tensor) -> Any:
        return pinball_torch(quantiles, target, levels)

    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if params.precision == "bf16"
        else contextlib.nullcontext
    )
    generator = torch.Generator().manual_seed(params.seed)
    best, stale = math.inf, 0
    result = FitResult(state=copy.deepcopy(net.state_dict()), best_epoch=0)
    for epoch in tqdm(range(1, params.max_epochs + 1), disable=not progress, desc="epochs"):
        net.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), params.batch_size):
            idx = order[start : start + params.batch_size]
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                out = net(x_train[idx])
            loss = loss_fn(out.float(), y_train[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        net.eval()
        with torch.inference_mode():
            val_loss = loss_fn(net(x_val), y_val).item()
        train_loss = total / len(x_train)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise DivergedError(
                f"loss diverged at epoch {epoch} (train {train_loss}, val {val_loss})"
            )
        result.history.append((train_loss, val_loss))
        if val_loss < best:
            best, stale = val_loss, 0
            result.state, result.best_epoch = copy.deepcopy(net.state_dict()), epoch
        else:
            stale += 1
        if on_epoch is not None and on_epoch(epoch, train_loss, val_loss):
            result.pruned = True
            break
        if stale >= params.patience:
            result.stopped_early = True
            break
    net.load_state_dict(result.state)
    return result


def predict_quantiles(net: Forecaster, data: TrainingData, part: str, lookback: int) -> np.ndarray:
    """Unscaled next-day log-return quantiles (rows, levels) for every row of a split part
    (RAW: the network's own)."""
    x, _ = data.tensors(part, lookback)
    net.eval()
    with torch.inference_mode():
        scaled = net(x).numpy().astype("float64")
    return data.scaler.for_median(net.config.median).target_from_scaled(scaled)


def calibrated_quantiles(
    net: Forecaster, data: TrainingData, part: str, lookback: int, state: CalibrationState
) -> tuple[np.ndarray, CalibrationState]:
    """predict_quantiles calibrated day by day from `state` (forecasting.calibration.run): what
    every score and forecast uses. (calibrated quantiles, the state after the part's days)."""
    from forecasting.calibration import run

    realised, days = data.realised(data.end_rows(part, lookback))
    return run(state, predict_quantiles(net, data, part, lookback), realised, days)


def fit_calibration(
    net: Forecaster, data: TrainingData, lookback: int, step: float
) -> CalibrationState:
    """The calibration state a version ships: the calibrator run over the validation days
    (which the weights never trained on) from the raw spread, in day order."""
    from forecasting.calibration import initial_state

    return calibrated_quantiles(net, data, "val", lookback, initial_state(net.config.levels, step))[
        1
    ]


def predict_returns(net: Forecaster, data: TrainingData, part: str, lookback: int) -> np.ndarray:
    """The median next-day log return (the point forecast) for every row of a split part."""
    return predict_quantiles(net, data, part, lookback)[:, net.median]


def train_model(
    params: TrainParams,
    data: TrainingData,
    on_epoch: EpochHook | None = None,
    progress: bool = False,
) -> tuple[Forecaster, FitResult]:
    """Validate params, seed, build and fit one model (no tracking); a finished fit carries the
    calibration state fitted on the validation days."""
    config = check_params(params, data)
    seed_everything(params.seed, params.threads)
    net = Forecaster(config)
    result = fit(net, data.for_median(params.median), params, on_epoch, progress)
    if not result.pruned:
        result.calibration = fit_calibration(net, data, params.lookback, params.calibration_step)
    return net, result


def progress_default() -> bool:
    """Progress bars unless COINFLOW_PROGRESS=0 (tests/CI) or output is not a terminal."""
    flag = os.environ.get("COINFLOW_PROGRESS")
    return flag != "0" if flag is not None else os.isatty(2)
