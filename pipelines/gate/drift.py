"""Drift report: a version's newest days against the days its models train on.

Per series (BTC daily log return, log High/Low range, log volume) a two-sample
Kolmogorov-Smirnov test (scipy) of the newest `window_days` rows against the training window
(the first rows of features' chronological split). The gate records it and, by
`validate.drift.action`, warns or fails when a p-value falls below `alpha`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.params import DriftParams, FeatureParams
from forecasting.features import build_table, compute_features, split_chronologically

SERIES = {
    "btc_return": "daily log return log(close_t / close_t-1)",
    "btc_range": "daily range log(High / Low)",
    "btc_volume": "log(1 + volume)",
}
COLUMNS = ["series", "ks_statistic", "p_value", "recent_median", "train_median"]
METRIC_PREFIX = "drift"  # training-run metrics drift_<series>_ks / drift_<series>_p


def _series(frame: pd.DataFrame) -> pd.DataFrame:
    """SERIES of every day, from the features stage's own definitions (NaN where undefined)."""
    feats = compute_features(frame)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "btc_return": feats["btc_ret"],
                "btc_range": feats["btc_high_rel"] - feats["btc_low_rel"],  # log(High / Low)
                "btc_volume": np.log1p(frame["btc_volume"]),
            },
            index=frame.index,
        )


def drift_table(
    frame: pd.DataFrame, params: DriftParams, features: FeatureParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per SERIES (COLUMNS) and the two windows compared; ValueError/KeyError on a
    frame features could not use (the row checks say why)."""
    from scipy.stats import ks_2samp

    table = build_table(frame)
    split = split_chronologically(len(table), features.train_frac, features.val_frac)
    train_days = table.index[: split.n_train]
    values = _series(frame)
    train, recent = values.loc[train_days], values.iloc[-params.window_days :]
    if recent.index[0] <= train_days[-1]:
        raise ValueError(
            f"the newest {params.window_days} days overlap the training window "
            f"(it ends {train_days[-1].date()})"
        )
    rows = []
    for name in SERIES:
        new, old = recent[name].dropna(), train[name].dropna()
        test = ks_2samp(new, old)
        rows.append(
            {
                "series": name,
                "ks_statistic": float(test.statistic),
                "p_value": float(test.pvalue),
                "recent_median": float(new.median()),
                "train_median": float(old.median()),
            }
        )
    windows = {
        "recent": [str(recent.index[0].date()), str(recent.index[-1].date())],
        "train": [str(train_days[0].date()), str(train_days[-1].date())],
    }
    return pd.DataFrame(rows, columns=COLUMNS), windows


def drift_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The drift of a gate record (metrics/validation.json entry) as run metrics."""
    out = {}
    for row in (record.get("drift") or {}).get("series", []):
        out[f"{METRIC_PREFIX}_{row['series']}_ks"] = row["ks_statistic"]
        out[f"{METRIC_PREFIX}_{row['series']}_p"] = row["p_value"]
    return out
