"""Fair re-scoring: every candidate forecasts the same test days of the same dataset version.

Every model — registered torch versions, the baselines, the in-process reference baseline —
is scored by the same code: its calibrated next-day return quantiles on each test day, turned
into USD, give the median's point scores, pinball, CRPS, coverage, widths and the daily CRPS
the Diebold–Mariano test compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.paths import Project, project
from forecasting.features import CLOSE
from forecasting.forecast import InputRowsError, QuantileModel
from registry.errors import EvalDataError
from registry.policy import ModelScore

if TYPE_CHECKING:
    from core.params import BaselineParams
    from forecasting.baselines import EmpiricalQuantiles, EwmaQuantiles
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
    val_positions: np.ndarray  # the validation days (where baselines are calibrated)
    levels: tuple[float, ...]
    baselines: BaselineParams

    @property
    def values(self) -> np.ndarray:
        values: np.ndarray = self.rows.to_numpy(dtype="float64")
        return values

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
    )


def test_quantiles(
    model: QuantileModel, eval_set: EvalSet, positions: np.ndarray | None = None
) -> np.ndarray:
    """A model's next-day log-return quantiles on the test days (or other row positions)."""
    from forecasting.forecast import windows_at

    at = eval_set.positions if positions is None else positions
    try:
        return model.return_quantiles(windows_at(eval_set.values, at, model.rows_needed))
    except InputRowsError as exc:
        raise EvalDataError(f"cannot score on {eval_set.version}'s days: {exc}") from exc


def windowed_quantiles(py: PackagedModel, eval_set: EvalSet) -> np.ndarray:
    """Any version through its DataFrame face (what MLflow's pyfunc predict() runs), one test day
    at a time (slow; the batched path must agree with it, which the tests check)."""
    from forecasting.forecast import input_frame
    from forecasting.packaged import quantile_columns

    needed, out = py.rows_needed, []
    for i, pos in enumerate(eval_set.positions):
        window = input_frame(eval_set.rows.iloc[pos - needed + 1 : pos + 1].reset_index())
        closes = py.predict_frame(window, horizon=1)[quantile_columns(py.levels)]
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
    """A loaded pyfunc scored on the evaluation rows."""
    return score_quantiles(
        test_quantiles(py, eval_set),
        eval_set,
        version=version,
        kind=py.kind,
        trained_on=str(py.config.get("data_version", "")),
    )


def calibrated_baseline(eval_set: EvalSet, kind: str) -> EmpiricalQuantiles | EwmaQuantiles:
    """A baseline (persistence | ewma) with conformal offsets fitted on the validation days."""
    import dataclasses

    from forecasting.baselines import EmpiricalQuantiles, EwmaQuantiles
    from forecasting.quantiles import conformal_offsets

    raw: EmpiricalQuantiles | EwmaQuantiles = (
        EmpiricalQuantiles(eval_set.levels, eval_set.baselines.window)
        if kind == "persistence"
        else EwmaQuantiles(
            eval_set.levels, eval_set.baselines.window, eval_set.baselines.ewma_decay
        )
    )
    close = eval_set.values[:, CLOSE]
    target = np.log(close[eval_set.val_positions + 1] / close[eval_set.val_positions])
    offsets = conformal_offsets(
        test_quantiles(raw, eval_set, eval_set.val_positions), target, eval_set.levels
    )
    return dataclasses.replace(raw, offsets=offsets)


def baseline_score(eval_set: EvalSet) -> ModelScore:
    """The reference baseline on the same rows: persistence with calibrated empirical quantiles
    (its median is persistence: MASE 1, the anchor every model's MASE is measured against)."""
    model = calibrated_baseline(eval_set, "persistence")
    return score_quantiles(
        test_quantiles(model, eval_set), eval_set, version=None, kind="persistence"
    )
