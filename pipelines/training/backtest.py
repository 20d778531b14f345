"""Rolling-origin backtests: K expanding-window folds that never touch the final test window.

Fold k trains on every row before its validation block, stops early and fits its calibration
state on that block (forecasting.calibration, in day order), and is scored on the `fold_days`
that follow, calibrated day by day from that state as it would have been served; the folds'
test blocks end where the version's own test window starts, so a sweep that optimises the mean
fold score never sees the rows promotion judges it on. Each fold fits its own scaler on its own
training rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from forecasting.features import Split

if TYPE_CHECKING:
    from core.params import TrainParams
    from forecasting.calibration import CalibrationState
    from pipelines.training.train import TrainingData

MIN_TRAIN_ROWS = 365  # a fold trains on at least a year of days


@dataclass(frozen=True)
class Fold:
    """Row ranges (end-exclusive) of one fold over the rows that have a target."""

    number: int
    split: Split  # train [0, n_train), validate next n_val, test next n_test

    @property
    def end(self) -> int:
        """One past the fold's last test row: nothing at or after it may influence the fold."""
        return self.split.test_start + self.split.n_test

    def describe(self) -> dict[str, Any]:
        return {"fold": self.number, **asdict(self.split)}


def rolling_folds(split: Split, folds: int, fold_days: int, val_days: int) -> list[Fold]:
    """`folds` expanding-window folds ending where `split`'s test window starts (oldest first)."""
    if folds < 0 or fold_days < 1 or val_days < 1:
        raise ValueError(
            f"backtest needs folds >= 0, fold_days >= 1, val_days >= 1 (got {folds}, "
            f"{fold_days}, {val_days})"
        )
    out = []
    for k in range(folds):
        test_start = split.test_start - (folds - k) * fold_days
        n_train = test_start - val_days
        if n_train < MIN_TRAIN_ROWS:
            raise ValueError(
                f"fold {k + 1} of {folds} would train on {n_train} rows (< {MIN_TRAIN_ROWS}): "
                "use fewer or shorter folds"
            )
        out.append(Fold(k + 1, Split(n_train, val_days, fold_days)))
    return out


# Called after each fold with (fold number, mean skill so far); True stops (prunes) the run.
FoldHook = Callable[[int, float], bool]


def baseline_quantiles(
    data: TrainingData, rows: np.ndarray, val_rows: np.ndarray, window: int, params: TrainParams
) -> np.ndarray:
    """The persistence-empirical baseline's calibrated log-return quantiles at `rows`, from the
    closes alone: its state fitted on `val_rows`, then day by day over `rows`."""
    from forecasting.baselines import EmpiricalQuantiles
    from forecasting.calibration import initial_state, run
    from forecasting.features import CLOSE, INPUT_COLUMNS
    from forecasting.forecast import windows_at

    values = np.zeros((len(data.close), len(INPUT_COLUMNS)))
    values[:, CLOSE] = data.close
    model = EmpiricalQuantiles(params.levels, window)

    def calibrated(
        part: np.ndarray, state: CalibrationState
    ) -> tuple[np.ndarray, CalibrationState]:
        raw = model.return_quantiles(windows_at(values, part, window + 1))
        return run(state, raw, *data.realised(part))

    _, fitted = calibrated(val_rows, initial_state(params.levels, params.calibration_step))
    return calibrated(rows, fitted)[0]


def run_backtest(
    params: TrainParams,
    data: TrainingData,
    folds: list[Fold],
    baseline_window: int,
    on_fold: FoldHook | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Train and score one model per fold; (the fold table, pruned?). Each fold's `skill` is
    its CRPS over the baseline's on the same test days (below 1: better than the baseline)."""
    from forecasting.scores import score_quantiles
    from pipelines.training.train import calibrated_quantiles, train_model

    table: list[dict[str, Any]] = []
    for fold in folds:
        part = data.refit(fold.split)
        net, fit = train_model(params, part)
        if fit.calibration is None:
            raise ValueError(f"fold {fold.number}: a finished fit carries its calibration")
        rows = part.end_rows("test", params.lookback)
        quant, _ = calibrated_quantiles(net, part, "test", params.lookback, fit.calibration)
        ours = score_quantiles(quant, part.close[rows], part.next_close[rows], params.levels)
        val = part.end_rows("val", 1)
        base_q = baseline_quantiles(part, rows, val, baseline_window, params)
        base = score_quantiles(base_q, part.close[rows], part.next_close[rows], params.levels)
        table.append(
            {
                **fold.describe(),
                "first_day": str(part.dates[rows[0]].date()),
                "last_day": str(part.dates[rows[-1]].date()),
                "epochs": len(fit.history),
                **{k: ours[k] for k in FOLD_SCORES if k in ours},
                "baseline_crps": base["crps"],
                "skill": ours["crps"] / base["crps"],
            }
        )
        mean_skill = float(np.mean([r["skill"] for r in table]))
        if on_fold is not None and on_fold(fold.number, mean_skill):
            return table, True
    return table, False


FOLD_SCORES = ("crps", "pinball", "coverage_80", "coverage_95", "width_80", "mase", "mae")
