"""The rules one day's BTC prices must obey: one definition for the data gate and the API.

Each rule is a *slack* that is >= 0 when the rule holds (NaN where an input is missing), so the
gate can show by how much a row broke it and the API can refuse a request row by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PRICE = 1e9  # USD: any price above is a corrupt value, not a market (the gate and the API)
MAX_VOLUME = 1e15  # units traded in a day: likewise


@dataclass(frozen=True)
class OhlcRules:
    """Tolerances from params.yaml `validate`."""

    tolerance: float  # relative slack for High >= max(Open, Close), Low <= min(Open, Close)
    max_wick: float  # High <= max_wick * max(Open, Close); Low >= min(Open, Close) / max_wick


# rule name → what it says, for messages (the GE suite's helper columns carry the same names)
RULES = {
    "high_low": "High >= Low",
    "high_body": "High >= max(Open, Close) within the tolerance",
    "low_body": "Low <= min(Open, Close) within the tolerance",
    "high_wick": "High <= max_wick x max(Open, Close)",
    "low_wick": "Low >= min(Open, Close) / max_wick",
}


def ohlc_slacks(
    opn: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, rules: OhlcRules
) -> dict[str, np.ndarray]:
    """Every rule's slack per row (>= 0 holds, < 0 broken, NaN when an input is missing)."""
    body_high, body_low = np.maximum(opn, close), np.minimum(opn, close)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return {
            "high_low": high - low,
            "high_body": high * (1 + rules.tolerance) - body_high,
            "low_body": body_low - low * (1 - rules.tolerance),
            "high_wick": rules.max_wick * body_high - high,
            "low_wick": low - body_low / rules.max_wick,
        }
