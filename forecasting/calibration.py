"""Online conformal calibration of a model's central intervals: every realised close moves them.

A model forecasts quantiles of the next day's log return (its RAW quantiles). For each central
interval of nominal coverage L (0.5, 0.8, 0.9, 0.95 from the levels) the calibrated interval is

    median - k_L x (median - raw lower bound),  median + k_L x (raw upper bound - median)

so the conformity score is the realised return's distance from the median in units of the
model's own half-width on that side (normalised by the spread the model already has), and k_L
is that score's running L-quantile. After the close of day t,

    log k_L += step x (miss_t - (1 - L)),   miss_t: the return fell outside the interval for t

which is the quantile-tracking (P) term of conformal PID control (Angelopoulos, Candès &
Tibshirani 2023, arXiv 2307.16895), on the log of the multiplier so that k stays positive and
a step is the same relative change at any volatility. It needs no exchangeability: summed over
any T days, sum(miss_t - (1 - L)) = (log k_after - log k_before) / step exactly, so the miss
rate of any stretch is off nominal by the multiplier's log change over it / (step x T).

The step comes from that identity, not from any measured figure: step = log 2 / (90 x 0.10)
≈ 0.077, so a level that misses 10 points too often for a quarter (90 days) doubles its
multiplier — a doubling of volatility the model does not see is absorbed within a quarter
whose coverage stays within 10 points of nominal (params.yaml `train.calibration_step`).

A state with step 0 is fixed: the split-conformal offsets (additive log-return widenings) that
versions packaged before adaptive calibration ship (`fixed_state`), applied by the same code.
Quantiles stay non-crossing (each row sorted); the median is never moved.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .quantiles import check_levels, interval_pairs, median_index


@dataclass(frozen=True)
class CalibrationState:
    """One version's calibrator after `updates` realised closes (the last on `as_of`)."""

    levels: tuple[float, ...]  # the model's quantile levels
    multipliers: dict[float, float]  # nominal central coverage → k (1.0 = the model's raw spread)
    step: float  # the update step (log scale); 0: fixed
    as_of: str | None  # ISO day of the last realised close folded in (None: none yet)
    updates: int  # how many realised closes were folded in
    offsets: dict[float, float] = field(default_factory=dict)  # fixed widening (fixed_state)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", check_levels(self.levels))
        nominals = set(interval_pairs(self.levels))
        if set(self.multipliers) != nominals:
            raise ValueError(
                f"multipliers must name the intervals {sorted(nominals)}, got "
                f"{sorted(self.multipliers)}"
            )
        if not all(math.isfinite(k) and k > 0 for k in self.multipliers.values()):
            raise ValueError(f"multipliers must be positive and finite, got {self.multipliers}")
        if not set(self.offsets) <= nominals:
            raise ValueError(f"offsets name unknown intervals: {sorted(self.offsets)}")
        if not (math.isfinite(self.step) and self.step >= 0):
            raise ValueError(f"the step must be finite and >= 0, got {self.step}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (floats keep their exact value through JSON; keys are repr strings)."""
        return {
            "levels": list(self.levels),
            "multipliers": {repr(n): k for n, k in sorted(self.multipliers.items())},
            "step": self.step,
            "as_of": self.as_of,
            "updates": self.updates,
            "offsets": {repr(n): v for n, v in sorted(self.offsets.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CalibrationState:
        """The state `to_dict` wrote."""
        return cls(
            levels=tuple(float(t) for t in d["levels"]),
            multipliers={float(n): float(k) for n, k in d["multipliers"].items()},
            step=float(d["step"]),
            as_of=None if d["as_of"] is None else str(d["as_of"]),
            updates=int(d["updates"]),
            offsets={float(n): float(v) for n, v in d.get("offsets", {}).items()},
        )

    def digest(self) -> str:
        """A short stable hash of the whole state (lineage and replay name a state by it)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def initial_state(levels: Sequence[float], step: float) -> CalibrationState:
    """The raw spread (every k = 1) before any realised close."""
    levels = check_levels(levels)
    return CalibrationState(levels, dict.fromkeys(interval_pairs(levels), 1.0), step, None, 0)


def fixed_state(levels: Sequence[float], offsets: Mapping[float, float]) -> CalibrationState:
    """A non-adaptive calibration: the raw spread widened by fixed log-return offsets per
    interval (the split-conformal offsets of interface-1 configs); closes never move it."""
    state = initial_state(levels, 0.0)
    return replace(state, offsets={float(n): float(v) for n, v in offsets.items()})


def load_state(entry: Mapping[str, Any] | None, levels: Sequence[float]) -> CalibrationState:
    """A config's `calibration` entry as a state: a `to_dict` state, or an interface-1 offsets
    mapping ({"0.8": 0.01, ...}, or nothing) read as a fixed calibration."""
    if entry and "multipliers" in entry:
        return CalibrationState.from_dict(entry)
    return fixed_state(levels, {float(n): float(v) for n, v in (entry or {}).items()})


def apply(quantiles: np.ndarray, state: CalibrationState) -> np.ndarray:
    """(..., levels) raw log-return quantiles → calibrated: each interval at the median ±
    k × the raw half-widths (± its fixed offset), each row sorted."""
    q = np.asarray(quantiles, dtype="float64")
    if q.shape[-1] != len(state.levels):
        raise ValueError(f"quantiles have {q.shape[-1]} levels, the state {len(state.levels)}")
    scale, shift = np.ones(len(state.levels)), np.zeros(len(state.levels))
    for nominal, (lo, hi) in interval_pairs(state.levels).items():
        scale[[lo, hi]] = state.multipliers[nominal]
        offset = state.offsets.get(nominal, 0.0)
        shift[lo], shift[hi] = -offset, offset
    m = median_index(state.levels)
    centre = q[..., m : m + 1]
    return np.sort(centre + scale * (q - centre) + shift, axis=-1)


def _day(day: object) -> str:
    """An ISO day from a str, date or datetime64."""
    return str(np.asarray(day, dtype="datetime64[D]"))


def _step(
    state: CalibrationState, row: np.ndarray, realised: float, day: str
) -> tuple[np.ndarray, CalibrationState]:
    """(the interval issued for `day` with `state`, the state after `day`'s close)."""
    issued = apply(row, state)
    if not math.isfinite(realised) or (state.as_of is not None and day <= state.as_of):
        return issued, state  # not known yet, or already folded in
    multipliers = {}
    for nominal, (lo, hi) in interval_pairs(state.levels).items():
        miss = not (issued[lo] <= realised <= issued[hi])
        multipliers[nominal] = state.multipliers[nominal] * math.exp(
            state.step * (miss - (1 - nominal))
        )
    return issued, replace(state, multipliers=multipliers, as_of=day, updates=state.updates + 1)


def update(
    state: CalibrationState, quantiles_row: np.ndarray, realised: float, day: object
) -> CalibrationState:
    """The state after the realised log return of `day`, given that day's RAW quantiles (the
    forecast issued the day before). A day at or before `state.as_of` changes nothing."""
    return _step(state, np.asarray(quantiles_row, dtype="float64"), float(realised), _day(day))[1]


def run(
    state: CalibrationState,
    quantiles: np.ndarray,
    realised: np.ndarray,
    days: Sequence[object],
) -> tuple[np.ndarray, CalibrationState]:
    """Calibrate forecasts in day order: row i (RAW quantiles of the return realised on
    days[i]) with the state after days < days[i] only, then fold its return in (NaN: not known
    yet, folded in by a later call). Returns the calibrated rows and the final state."""
    q = np.asarray(quantiles, dtype="float64")
    y = np.asarray(realised, dtype="float64")
    iso = [_day(d) for d in days]
    if not len(q) == len(y) == len(iso):
        raise ValueError(f"{len(q)} quantile rows, {len(y)} returns and {len(iso)} days")
    if any(b <= a for a, b in zip(iso, iso[1:], strict=False)):
        raise ValueError("days must be strictly increasing")
    if iso and state.as_of is not None and iso[0] <= state.as_of:
        raise ValueError(
            f"the state already holds closes through {state.as_of}: calibrating the forecast "
            f"for {iso[0]} with it would look ahead"
        )
    out = np.empty_like(q)
    for i, day in enumerate(iso):
        out[i], state = _step(state, q[i], float(y[i]), day)
    return out, state
