"""Fair re-scoring: every candidate forecasts the same test days of the same dataset version.

Every model — registered torch versions, the baselines, the in-process reference baseline —
is a packaged version (forecasting.packaged) scored by the same code, as it would have been
served: its shipped calibration state advanced with the platform's rows (the dataset version's)
through the first test day, then each test day calibrated with the state of that moment and
its close folded in. The calibrated next-day return quantiles, turned into USD, give the
median's point scores, pinball, CRPS, coverage, widths and the daily CRPS the Diebold–Mariano
test compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.paths import Project, project
from forecasting.forecast import InputRowsError
from registry.errors import EvalDataError
from registry.policy import ModelScore

if TYPE_CHECKING:
    from core.params import BaselineParams
    from forecasting.packaged import PackagedModel


@dataclass(frozen=True)
class EvalSet:
    """The test split of one dataset version: forecast days, their closes, and the raw rows."""

    version: str
    md5: str
    dates: pd.DatetimeIndex  # day t: the forecast is made at t's close for t+1
    close: np.ndarray
    next_close: np.ndarray
    rows: pd.DataFrame  # the version's raw input rows, indexed by date, oldest first
    positions: np.ndarray  # position of each test day t in `rows`
    val_positions: np.ndarray  # the validation days (where baselines fit their calibration)
    levels: tuple[float, ...]
    baselines: BaselineParams
    calibration_step: float  # a baseline's calibrator (params.yaml train.calibration_step)

    @property
    def values(self) -> np.ndarray:
        values: np.ndarray = self.rows.to_numpy(dtype="float64")
        return values

    @property
    def row_dates(self) -> np.ndarray:
        """The day of each raw row (datetime64[D])."""
        return np.asarray(self.rows.index.values, dtype="datetime64[D]")

    def describe(self) -> dict[str, Any]:
        """Which rows were scored, for decision records."""
        return {
            "data_version": self.version,
            "dvc_md5": self.md5,
            "rows": len(self.dates),
            "first_day": str(self.dates[0].date()),
            "last_day": str(self.dates[-1].date()),
        }


def load_eval_set(proj: Project | None = None) -> EvalSet:
    """Test split of the features stage's version, with that version's raw rows (md5-checked)."""
    from core.files import file_md5
    from core.params import load_params
    from forecasting.features import INPUT_COLUMNS
    from pipelines.training.train import load_training_data

    proj = proj or project()
    if not (proj.features / "meta.json").is_file():
        raise EvalDataError(f"no features at {proj.features}: run the features stage first")
    params = load_params(proj.params_file)
    data = load_training_data(proj.features)
    path = proj.version_file(data.version)
    if not path.is_file():
        raise EvalDataError(f"dataset version file {path} (features' version) not found")
    if file_md5(path) != data.md5:
        raise EvalDataError(
            f"{path} has md5 {file_md5(path)} but the features were built from "
            f"md5 {data.md5}: re-run the features stage"
        )
    rows = pd.read_parquet(path)[INPUT_COLUMNS]
    test, val = data.end_rows("test", 1), data.end_rows("val", 1)
    positions = rows.index.get_indexer(data.dates[test])
    val_positions = rows.index.get_indexer(data.dates[val])
    if (positions < 0).any() or not np.allclose(
        rows["btc_close"].to_numpy()[positions], data.close[test]
    ):
        raise EvalDataError(f"test days of the features do not match the rows of {path}")
    return EvalSet(
        data.version,
        data.md5,
        data.dates[test],
        data.close[test],
        data.next_close[test],
        rows,
        positions,
        val_positions,
        params.train.levels,
        params.baselines,
        params.train.calibration_step,
    )


def served_quantiles(py: PackagedModel, eval_set: EvalSet) -> np.ndarray:
    """A version's next-day log-return quantiles on the test days as it would have served them:
    its shipped state advanced with the version's rows through the first test day, then day by
    day over the test days (PackagedModel.calibrated_run)."""
    dates, values = eval_set.row_dates, eval_set.values
    try:
        state = py.advance(dates, values, str(dates[eval_set.positions[0]]))
        quantiles, _ = py.calibrated_run(dates, values, eval_set.positions, state)
    except (InputRowsError, ValueError) as exc:
        raise EvalDataError(f"cannot score on {eval_set.version}'s days: {exc}") from exc
    return quantiles


def windowed_quantiles(py: PackagedModel, eval_set: EvalSet) -> np.ndarray:
    """Any version through its DataFrame face (what MLflow's pyfunc predict() runs), one test day
    at a time with the state advanced through that day (slow; served_quantiles must agree with
    it, which the tests check)."""
    from forecasting.forecast import input_frame
    from forecasting.packaged import quantile_columns

    dates, values = eval_set.row_dates, eval_set.values
    needed, state, out = py.rows_needed, py.state, []
    for i, pos in enumerate(eval_set.positions):
        state = py.advance(dates, values, str(dates[pos]), state)
        window = input_frame(eval_set.rows.iloc[pos - needed + 1 : pos + 1].reset_index())
        closes = py.predict_frame(window, 1, state)[quantile_columns(py.levels)]
        out.append(np.log(closes.to_numpy(dtype="float64")[0] / eval_set.close[i]))
    return np.vstack(out)


def score_quantiles(quant: np.ndarray, eval_set: EvalSet, **identity: Any) -> ModelScore:
    """The ModelScore of test-day quantiles (identity: version, kind, trained_on)."""
    from forecasting.scores import daily_crps
    from forecasting.scores import score_quantiles as usd_scores

    s = usd_scores(quant, eval_set.close, eval_set.next_close, eval_set.levels)
    return ModelScore(
        mase=s["mase"],
        mae=s["mae"],
        rmse=s["rmse"],
        crps=s["crps"],
        pinball=s["pinball"],
        coverage_80=s.get("coverage_80", float("nan")),
        coverage_95=s.get("coverage_95", float("nan")),
        width_80=s.get("width_80", float("nan")),
        width_95=s.get("width_95", float("nan")),
        daily=tuple(
            daily_crps(quant, eval_set.close, eval_set.next_close, eval_set.levels).tolist()
        ),
        **identity,
    )


def score_model(py: PackagedModel, eval_set: EvalSet, version: int | None = None) -> ModelScore:
    """A loaded pyfunc scored on the evaluation rows, as served."""
    return score_quantiles(
        served_quantiles(py, eval_set),
        eval_set,
        version=version,
        kind=py.kind,
        trained_on=str(py.config.get("data_version", "")),
    )


def calibrated_baseline(eval_set: EvalSet, kind: str) -> PackagedModel:
    """A baseline (persistence | ewma) packaged as its registered version is: the calibrator run
    over the validation days from the raw spread, in day order, gives the state it ships."""
    from forecasting.calibration import initial_state
    from pipelines.training.packaging import RECENT_ROWS, packaged_in_memory

    window = eval_set.baselines.window
    config: dict[str, Any] = {
        "kind": kind,
        "data_version": eval_set.version,
        "window": window,
        **({"decay": eval_set.baselines.ewma_decay} if kind == "ewma" else {}),
        "lookback": window,
        "levels": list(eval_set.levels),
        "median": "persistence",
    }
    rows = eval_set.rows.tail(RECENT_ROWS).reset_index()
    start = initial_state(eval_set.levels, eval_set.calibration_step)
    raw = packaged_in_memory(config | {"calibration": start.to_dict()}, rows)
    _, fitted = raw.calibrated_run(eval_set.row_dates, eval_set.values, eval_set.val_positions)
    return packaged_in_memory(config | {"calibration": fitted.to_dict()}, rows)


def baseline_score(eval_set: EvalSet) -> ModelScore:
    """The reference baseline on the same rows: persistence with calibrated empirical quantiles
    (its median is persistence: MASE 1, the anchor every model's MASE is measured against)."""
    return score_model(calibrated_baseline(eval_set, "persistence"), eval_set)
