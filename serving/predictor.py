"""A loaded model version: its kernel's array forecast, its latest rows, its lineage and the
calibration state it answers with."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from core import tags
from forecasting.features import CLOSE
from forecasting.forecast import InputRowsError, check_arrays

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow.entities.model_registry import ModelVersion

    from forecasting.calibration import CalibrationState
    from forecasting.packaged import PackagedModel
    from serving.calibration_states import StoredState
    from serving.prediction_log import CalibrationUsed


def points(dates: np.ndarray, closes: np.ndarray) -> list[dict[str, object]]:
    """[{"date": ISO, "close": float}] from parallel arrays."""
    return [
        {"date": d, "close": c}
        for d, c in zip(
            np.datetime_as_string(dates, unit="D").tolist(), closes.tolist(), strict=True
        )
    ]


SHIPPED, STORED, FIXED = "shipped", "stored", "fixed"  # where an answer's calibration came from
MAX_PARTS = 256  # encoded answer parts a version keeps (horizons x levels x alias sets)


def encode(value: object) -> str:
    """JSON exactly as /predict has always sent it (compact separators, no NaN)."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def adaptive_state(py: PackagedModel) -> CalibrationState | None:
    """The adaptive calibration state a version shipped with; None when its calibration is
    fixed: conformal offsets of a version packaged before adaptive calibration (a step-0 state
    in this kernel, no state at all in a kernel of packaging interface 1)."""
    state: CalibrationState | None = getattr(py, "state", None)
    return state if state is not None and state.step > 0 else None


@dataclass(frozen=True)
class Calibrator:
    """What a version's intervals are calibrated with: an adaptive state of its own kernel (the
    newest stored one, else the one it shipped) or, for an older kernel, its fixed offsets
    (state None). Replaced whole when a newer state is read: a request keeps the one it took."""

    state: CalibrationState | None
    used: CalibrationUsed

    @classmethod
    def of(cls, state: CalibrationState | None, source: str) -> Calibrator:
        """The calibrator of `state` (None: fixed offsets) from `source` (stored | shipped)."""
        from serving.prediction_log import CalibrationUsed

        if state is None:
            return cls(None, CalibrationUsed(FIXED, None, None))
        return cls(state, CalibrationUsed(source, state.as_of, state.digest()))

    def forecast(
        self, py: PackagedModel, dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(forecast dates, close quantiles) of `py` calibrated with this state."""
        if self.state is None:  # an older kernel: its forecast knows no state
            return py.forecast(dates, values, horizon)
        return py.forecast(dates, values, horizon, state=self.state)

    @functools.cached_property
    def lineage(self) -> dict[str, Any]:
        """How the answer was calibrated, for its lineage (built once per state)."""
        used = self.used
        if self.state is None:
            return {"method": "fixed conformal offsets", "source": FIXED}
        return {
            "method": "adaptive conformal",
            "source": used.source,
            "as_of": used.as_of,
            "digest": used.digest,
            "updates": int(self.state.updates),
            "multipliers": {f"{k:g}": float(v) for k, v in self.state.multipliers.items()},
        }


class Answer(NamedTuple):
    """One forecast: its days, close quantiles (horizon, levels) and the calibrator used."""

    dates: np.ndarray
    quantiles: np.ndarray
    calibrator: Calibrator


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
    calibrator: Calibrator
    _history: dict[int, list[dict[str, object]]] = field(default_factory=dict, repr=False)
    # Forecasts from the shipped rows depend only on the horizon and the calibrator: computed
    # once each (emptied when the calibrator changes).
    _cached: dict[int, Answer] = field(default_factory=dict, repr=False)
    # Encoded parts of answers, keyed by everything they depend on (the calibration state's
    # digest among it): a state swap or an alias move selects another key, never a stale text.
    _parts: dict[tuple[Any, ...], str] = field(default_factory=dict, repr=False)

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

    def _part(self, key: tuple[Any, ...], build: Callable[[], str]) -> str:
        parts = self._parts
        text = parts.get(key)
        if text is None:
            text = build()
            if len(parts) >= MAX_PARTS:
                parts.clear()  # bounded; rebuilt on the next request that needs one
            parts[key] = text
        return text

    def lineage_json(self, calibrator: Calibrator, aliases: list[str]) -> str:
        """An answer's lineage, encoded once per calibration state and alias set."""

        def build() -> str:
            calibration = {**self.lineage["calibration"], **calibrator.lineage}
            return encode({**self.lineage, "calibration": calibration, "aliases": aliases})

        return self._part(("lineage", calibrator.used, tuple(aliases)), build)

    def answer_json(
        self,
        out: Answer,
        *,
        prediction_id: str | None,
        shown: list[float],
        history: list[dict[str, object]],
        aliases: list[str],
        history_days: int | None,
    ) -> str:
        """The /predict body, byte for byte `encode` of the whole answer. From the version's
        own rows (`history_days` given) all but the id depends only on the calibration state,
        horizon, levels, aliases and days: encoded once; from request rows, the lineage is."""

        def tail() -> str:
            from serving.prediction_log import forecast_points

            forecasts = encode(forecast_points(out.dates, out.quantiles, self.levels, shown))
            lineage = self.lineage_json(out.calibrator, aliases)
            return f',"forecasts":{forecasts},"history":{encode(history)},"lineage":{lineage}}}'

        head = f'{{"prediction_id":{encode(prediction_id)}'
        if history_days is None:
            return head + tail()
        key = ("answer", out.calibrator.used, len(out.dates), tuple(shown), tuple(aliases))
        return head + self._part((*key, history_days), tail)

    def use_state(self, stored: StoredState | None) -> bool:
        """Calibrate from now on with a stored state (None: the shipped one); True when that
        changed the calibrator. A version without adaptive calibration keeps its offsets; a
        stored state that fails its digest raises StateError."""
        from serving.calibration_states import read_state

        shipped = adaptive_state(self.py)
        if shipped is None:
            return False
        if stored is None:
            new = Calibrator.of(shipped, SHIPPED)
        else:
            new = Calibrator.of(read_state(self.py, stored), STORED)
        if new.used == self.calibrator.used:
            return False
        # Each a single assignment: requests see old or new (parts are keyed by state).
        self.calibrator, self._cached, self._parts = new, {}, {}
        return True

    def answers_at_once(self, horizon: int, from_rows: bool) -> bool:
        """True when a forecast costs at most one kernel step (~1 ms for a sweep-sized network):
        one day ahead, or already cached. A longer one samples paths (tens to hundreds of ms)."""
        return horizon == 1 or (not from_rows and horizon in self._cached)

    def predict(self, dates: np.ndarray | None, values: np.ndarray | None, horizon: int) -> Answer:
        """The forecast from explicit rows, or from the latest rows of the model's dataset
        version (cached per calibrator: they never change), with the calibrator it used."""
        calibrator, cached = self.calibrator, self._cached
        if dates is None or values is None:
            if horizon not in cached:
                cached[horizon] = self._forecast(
                    calibrator, self.recent_dates, self.recent_values, horizon
                )
            return cached[horizon]
        if len(values) != self.rows_needed:
            raise InputRowsError(
                f"version {self.version} needs exactly {self.rows_needed} "
                f"consecutive daily rows (lookback + 1), got {len(values)}"
            )
        return self._forecast(calibrator, dates, values, horizon)

    def _forecast(
        self, calibrator: Calibrator, dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> Answer:
        out_dates, closes = calibrator.forecast(self.py, dates, values, horizon)
        if not np.isfinite(closes).all():
            raise InputRowsError("the forecast is not finite: input prices are out of range")
        return Answer(out_dates, closes, calibrator)


def build_loaded_model(
    name: str, model_version: ModelVersion, py: PackagedModel, run_tags: dict[str, str]
) -> LoadedModel:
    """Wrap an unwrapped pyfunc, calibrated with the state it shipped (the cache then swaps in
    its newest stored one); checks its shipped rows and warms it up with one forecast."""
    version_tags = dict(model_version.tags or {})
    config = py.config
    dates, values = py.recent_arrays()
    check_arrays(dates, values, py.rows_needed)

    def pick(key: str, tag: str) -> Any:
        return version_tags.get(tag) or config.get(key) or run_tags.get(tag)

    shipped = adaptive_state(py)
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
        # Training-time scores and, for an older kernel, its fixed offsets; the state each answer
        # used is added per answer (Calibrator.lineage).
        "calibration": {
            "offsets": {} if shipped is not None else _fixed_offsets(py),
            "scores": dict(config.get("scores", {})),
        },
    }
    model = LoadedModel(
        name,
        int(model_version.version),
        py.kind,
        py.rows_needed,
        lineage,
        py,
        dates,
        values,
        Calibrator.of(shipped, SHIPPED),
    )
    model.predict(None, None, 1)  # first call pays torch's lazy set-up, not a user request
    return model


def _fixed_offsets(py: PackagedModel) -> dict[str, float]:
    """A fixed calibration's conformal offsets (nominal coverage → log-return widening): its
    step-0 state's, or an interface-1 config's own."""
    state = getattr(py, "state", None)
    if state is not None:
        return {f"{k:g}": float(v) for k, v in state.offsets.items()}
    return {k: float(v) for k, v in py.config.get("calibration", {}).items()}
