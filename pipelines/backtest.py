"""Rolling-origin backtests: K expanding-window folds that never touch the final test window.

Fold k trains on every row before its validation block, stops early and calibrates on that
block, and is scored on the `fold_days` that follow; the folds' test blocks end where the
version's own test window starts, so a sweep that optimises the mean fold score never sees the
rows promotion judges it on. Each fold fits its own scaler on its own training rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipelines.features import Split

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
