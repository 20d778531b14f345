"""A loaded model version: its kernel's array forecast, its latest rows and its lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core import tags
from forecasting.features import CLOSE
from forecasting.forecast import InputRowsError, check_arrays

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from forecasting.packaged import PackagedModel


def points(dates: np.ndarray, closes: np.ndarray) -> list[dict[str, object]]:
    """[{"date": ISO, "close": float}] from parallel arrays."""
    return [
        {"date": d, "close": c}
        for d, c in zip(
            np.datetime_as_string(dates, unit="D").tolist(), closes.tolist(), strict=True
        )
    ]


def forecast_points(
    dates: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...], shown: list[float]
) -> list[dict[str, object]]:
    """Per forecast day: the median close and the bounds of each shown central interval (USD)."""
    from forecasting.quantiles import interval_pairs, median_index

    pairs = interval_pairs(levels)
    med = median_index(levels)
    out = []
    for day, row in zip(np.datetime_as_string(dates, unit="D").tolist(), quantiles, strict=True):
        bands = [
            {"level": lvl, "lower": float(row[pairs[lvl][0]]), "upper": float(row[pairs[lvl][1]])}
            for lvl in shown
        ]
        out.append({"date": day, "close": float(row[med]), "intervals": bands})
    return out


@dataclass
class LoadedModel:
    """One registry version held in memory, ready to forecast (every kind on the array path)."""

    name: str
    version: int
    kind: str
    rows_needed: int
    lineage: dict[str, Any]
    py: PackagedModel
    recent_dates: np.ndarray
    recent_values: np.ndarray
    _history: dict[int, list[dict[str, object]]] = field(default_factory=dict, repr=False)
    # Forecasts from the shipped rows depend only on the horizon: computed once each.
    _cached: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def levels(self) -> tuple[float, ...]:
        return self.py.levels

    @property
    def intervals(self) -> list[float]:
        """Nominal coverage of every central interval the model forecasts, widest first."""
        from forecasting.quantiles import interval_pairs

        return list(interval_pairs(self.levels))

    def recent_history(self, days: int) -> list[dict[str, object]]:
        """The latest `days` actual closes of the shipped rows (memoised: they never change)."""
        if days not in self._history:
            self._history[days] = (
                points(self.recent_dates[-days:], self.recent_values[-days:, CLOSE]) if days else []
            )
        return self._history[days]

    def predict(
        self, dates: np.ndarray | None, values: np.ndarray | None, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(forecast dates, close quantiles (horizon, levels)) from explicit rows, or from the
        latest rows of the model's dataset version (cached: they never change)."""
        if dates is None or values is None:
            if horizon not in self._cached:
                self._cached[horizon] = self._forecast(
                    self.recent_dates, self.recent_values, horizon
                )
            return self._cached[horizon]
        if len(values) != self.rows_needed:
            raise InputRowsError(
                f"version {self.version} needs exactly {self.rows_needed} "
                f"consecutive daily rows (lookback + 1), got {len(values)}"
            )
        return self._forecast(dates, values, horizon)

    def _forecast(
        self, dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        out_dates, closes = self.py.forecast(dates, values, horizon)
        if not np.isfinite(closes).all():
            raise InputRowsError("the forecast is not finite: input prices are out of range")
        return out_dates, closes


def build_loaded_model(
    name: str, model_version: ModelVersion, py: PackagedModel, run_tags: dict[str, str]
) -> LoadedModel:
    """Wrap an unwrapped pyfunc; checks its shipped rows and warms it up with one forecast."""
    version_tags = dict(model_version.tags or {})
    config = py.config
    dates, values = py.recent_arrays()
    check_arrays(dates, values, py.rows_needed)

    def pick(key: str, tag: str) -> Any:
        return version_tags.get(tag) or config.get(key) or run_tags.get(tag)

    lineage = {
        "model_name": name,
        "version": int(model_version.version),
        "run_id": model_version.run_id,
        "data_version": pick("data_version", tags.DATA_VERSION),
        "dvc_md5": pick("dvc_md5", tags.DVC_MD5),
        "git_sha": pick("git_sha", tags.GIT_SHA),
        "trained_at": config.get("trained_at"),
        # The kernel this version's answers are computed with: the one it shipped (core.kernels).
        "code_fingerprint": version_tags.get(tags.CODE) or config.get("code_fingerprint"),
        "kind": py.kind,
        "rows_needed": py.rows_needed,
        "levels": list(py.levels),
        "calibration": {
            "offsets": {k: float(v) for k, v in config.get("calibration", {}).items()},
            "scores": dict(config.get("scores", {})),
        },
    }
    model = LoadedModel(
        name, int(model_version.version), py.kind, py.rows_needed, lineage, py, dates, values
    )
    model.predict(None, None, 1)  # first call pays torch's lazy set-up, not a user request
    return model
