"""Quantile forecasts: the levels, non-crossing outputs, proper scores, split-conformal offsets
and the Diebold–Mariano test. Pure NumPy (and one torch function for training); no I/O.

Conventions: `levels` is a sorted tuple of quantile levels in (0, 1) that holds 0.5 and is
symmetric (τ and 1 - τ), so every pair (τ, 1 - τ) is a central interval of nominal coverage
1 - 2τ. Quantile arrays have the levels on their last axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """The levels, validated: sorted, inside (0, 1), with the median, symmetric."""
    out = tuple(float(t) for t in levels)
    if not out or list(out) != sorted(set(out)):
        raise ValueError(f"quantile levels must be distinct and sorted, got {list(out)}")
    if not all(0 < t < 1 for t in out):
        raise ValueError(f"quantile levels must lie strictly between 0 and 1, got {list(out)}")
    if 0.5 not in out:
        raise ValueError("quantile levels must include the median 0.5")
    if any(
        not math.isclose(a + b, 1.0, abs_tol=1e-9) for a, b in zip(out, reversed(out), strict=True)
    ):
        raise ValueError(f"quantile levels must be symmetric (τ and 1 - τ), got {list(out)}")
    return out


def median_index(levels: Sequence[float]) -> int:
    """Position of 0.5 among the levels."""
    return list(levels).index(0.5)


def interval_pairs(levels: Sequence[float]) -> dict[float, tuple[int, int]]:
    """Nominal coverage → (lower index, upper index) of each central interval, widest first."""
    n = len(levels)
    return {round(1 - 2 * levels[i], 6): (i, n - 1 - i) for i in range(n // 2)}


def monotone_quantiles(raw: torch.Tensor, median: int) -> torch.Tensor:
    """Non-crossing quantiles by construction: the median output is the median; every step away
    from it adds a softplus (> 0) increment, so the levels can never cross."""
    import torch
    from torch.nn.functional import softplus

    centre = raw[..., median : median + 1]
    up = torch.cumsum(softplus(raw[..., median + 1 :]), dim=-1)
    down = torch.flip(torch.cumsum(softplus(torch.flip(raw[..., :median], [-1])), dim=-1), [-1])
    return torch.cat([centre - down, centre, centre + up], dim=-1)


def pinball_torch(
    quantiles: torch.Tensor, target: torch.Tensor, levels: torch.Tensor
) -> torch.Tensor:
    """Mean pinball (quantile) loss over rows and levels: the training loss."""
    import torch

    diff = target.unsqueeze(-1) - quantiles
    return torch.maximum(levels * diff, (levels - 1) * diff).mean()


def pinball(quantiles: np.ndarray, target: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Pinball loss per row and level, shape (n, Q)."""
    tau = np.asarray(levels, dtype="float64")
    diff = np.asarray(target, dtype="float64")[:, None] - quantiles
    loss: np.ndarray = np.maximum(tau * diff, (tau - 1) * diff)
    return loss


def _crps_weights(levels: Sequence[float]) -> np.ndarray:
    """Trapezoid weights over τ in [0, 1] (end segments to 0 and 1 take the nearest level)."""
    tau = np.asarray(levels, dtype="float64")
    edges = np.concatenate([[0.0], (tau[1:] + tau[:-1]) / 2, [1.0]])
    return np.diff(edges)


def crps(quantiles: np.ndarray, target: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """CRPS per row from quantiles: 2 ∫ pinball_τ dτ, the integral by the levels' weights."""
    score: np.ndarray = 2 * pinball(quantiles, target, levels) @ _crps_weights(levels)
    return score


def coverage(quantiles: np.ndarray, target: np.ndarray, lower: int, upper: int) -> float:
    """Share of rows whose target lies inside [quantile[lower], quantile[upper]]."""
    y = np.asarray(target, dtype="float64")
    return float(np.mean((quantiles[:, lower] <= y) & (y <= quantiles[:, upper])))


@dataclass(frozen=True)
class DieboldMariano:
    """One-sided DM test that model A's loss is lower than model B's (HAC variance)."""

    statistic: float
    p_value: float
    mean_differential: float  # mean(loss_a - loss_b): negative when A is better
    lag: int
    n: int


def diebold_mariano(
    loss_a: np.ndarray, loss_b: np.ndarray, lag: int | None = None
) -> DieboldMariano:
    """H0: equal expected loss; H1: A's is lower. Newey–West variance with Bartlett weights
    (default lag ⌊n^(1/3)⌋), Harvey–Leybourne–Newbold small-sample correction, Student t."""
    from scipy import stats

    d = np.asarray(loss_a, dtype="float64") - np.asarray(loss_b, dtype="float64")
    n = len(d)
    if n < 3:
        raise ValueError(f"the Diebold–Mariano test needs at least 3 paired losses, got {n}")
    lag = int(n ** (1 / 3)) if lag is None else lag
    mean = float(d.mean())
    centred = d - mean
    variance = float(centred @ centred) / n
    for k in range(1, lag + 1):
        weight = 1 - k / (lag + 1)
        variance += 2 * weight * float(centred[k:] @ centred[:-k]) / n
    if variance <= 0 or not math.isfinite(variance):
        statistic = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    else:
        correction = math.sqrt((n + 1 - 2 * (lag + 1) + (lag + 1) * lag / n) / n)
        statistic = mean / math.sqrt(variance / n) * correction
    p_value = float(stats.t.cdf(statistic, df=n - 1))
    return DieboldMariano(statistic, p_value, mean, lag, n)


def conformal_offsets(
    quantiles: np.ndarray, target: np.ndarray, levels: Sequence[float]
) -> dict[float, float]:
    """Split-conformal (CQR) widening of each central interval, from rows the model never fit:
    the ⌈(n + 1)(1 - α)⌉-th smallest conformity score max(q_lo - y, y - q_hi). Fixed once fitted
    (calibration.fixed_state applies them): what versions shipped before adaptive calibration."""
    y = np.asarray(target, dtype="float64")
    n = len(y)
    out = {}
    for nominal, (lo, hi) in interval_pairs(levels).items():
        scores = np.sort(np.maximum(quantiles[:, lo] - y, y - quantiles[:, hi]))
        rank = min(n, math.ceil((n + 1) * nominal))
        out[nominal] = float(scores[rank - 1])
    return out


def sample_from_quantiles(
    quantiles: np.ndarray, levels: Sequence[float], u: np.ndarray
) -> np.ndarray:
    """Draws at probabilities `u` (one per row) from each row's piecewise-linear quantile
    function, extended linearly beyond the outermost levels (tails are not cut at 2.5%)."""
    tau = np.asarray(levels, dtype="float64")
    q = np.asarray(quantiles, dtype="float64")
    knots = np.concatenate([[0.0], tau, [1.0]])
    low_slope = (q[:, 1] - q[:, 0]) / (tau[1] - tau[0])
    high_slope = (q[:, -1] - q[:, -2]) / (tau[-1] - tau[-2])
    values = np.column_stack(
        [q[:, 0] - low_slope * tau[0], q, q[:, -1] + high_slope * (1 - tau[-1])]
    )
    idx = np.clip(np.searchsorted(knots, u, side="right") - 1, 0, len(knots) - 2)
    left, right = knots[idx], knots[idx + 1]
    rows = np.arange(len(q))
    frac = (u - left) / (right - left)
    draws: np.ndarray = values[rows, idx] + frac * (values[rows, idx + 1] - values[rows, idx])
    return draws


def forecast_scores(
    quantiles: np.ndarray, target: np.ndarray, naive_abs_error: np.ndarray, levels: Sequence[float]
) -> dict[str, float]:
    """The probabilistic scores of one forecast window (USD quantiles of the next close):
    mean pinball, CRPS, coverage and mean width of every central interval, median MASE."""
    med = median_index(levels)
    mae = float(np.mean(np.abs(quantiles[:, med] - target)))
    naive = float(np.mean(naive_abs_error))
    out = {
        "pinball": float(pinball(quantiles, target, levels).mean()),
        "crps": float(crps(quantiles, target, levels).mean()),
        "median_mae": mae,
        "mase": mae / naive if naive > 0 else float("nan"),
    }
    for nominal, (lo, hi) in interval_pairs(levels).items():
        key = f"{round(nominal * 100):d}"
        out[f"coverage_{key}"] = coverage(quantiles, target, lo, hi)
        out[f"width_{key}"] = float(np.mean(quantiles[:, hi] - quantiles[:, lo]))
    return out
