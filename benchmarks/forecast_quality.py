"""How good are the forecasts? The params.yaml model against both probabilistic baselines on
the selected version's test window (v0.3: 632 days), scored by the code promotion uses.

For each model: CRPS and mean pinball loss (USD), median MASE (persistence = 1), coverage and
mean width of the 80% and 95% intervals, and a one-sided Diebold-Mariano test (HAC variance)
of its daily CRPS against the persistence-empirical baseline. Then coverage per horizon: from
every `--stride`-th test day, a `--horizon`-day forecast (day 1 exact, later days from sampled
paths), and the share of days h whose actual close fell inside each band.

Nothing here is tuned on the test window: the model is params.yaml's train block, calibrated
(split-conformal) on the validation block it never trained on, like every registered version.

    .venv/bin/python benchmarks/forecast_quality.py [--max-epochs N] [--horizon 7] [--stride 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def horizon_coverage(
    model: Any, eval_set: Any, horizon: int, stride: int
) -> dict[float, list[float]]:
    """Nominal coverage → share of origins whose day-h close fell in the band, h = 1..horizon."""
    import numpy as np

    from forecasting.features import CLOSE
    from forecasting.forecast import PATHS, forecast_quantiles, forecast_seed
    from forecasting.quantiles import interval_pairs

    values = eval_set.values
    dates = np.asarray(eval_set.rows.index.values, dtype="datetime64[D]")
    pairs = interval_pairs(model.levels)
    hits: dict[float, list[list[bool]]] = {n: [] for n in (0.8, 0.95) if n in pairs}
    for pos in eval_set.positions[::stride]:
        if pos + horizon >= len(values):
            break
        seed = forecast_seed("benchmark", int(pos))
        _, closes = forecast_quantiles(
            model, dates[: pos + 1], values[: pos + 1], horizon, PATHS, seed
        )
        actual = values[pos + 1 : pos + 1 + horizon, CLOSE]
        for nominal in hits:
            lo, hi = pairs[nominal]
            hits[nominal].append(list((closes[:, lo] <= actual) & (actual <= closes[:, hi])))
    return {n: np.mean(np.asarray(h, dtype=float), axis=0).tolist() for n, h in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=None, help="default: params.yaml")
    parser.add_argument("--horizon", type=int, default=7)
    parser.add_argument("--stride", type=int, default=5)
    args = parser.parse_args()

    import numpy as np

    from benchmarks.workspace import build_workspace
    from core.params import load_params
    from core.paths import Project
    from forecasting.network import NetQuantiles
    from forecasting.quantiles import diebold_mariano
    from pipelines.training.train import load_training_data, train_model
    from registry.scoring import (
        calibrated_baseline,
        load_eval_set,
        score_quantiles,
        test_quantiles,
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = build_workspace(Path(tmp))
        proj = Project(root)
        params = load_params(proj.params_file)
        train = params.train
        if args.max_epochs:
            train = train.model_copy(update={"max_epochs": args.max_epochs})
        data = load_training_data(proj.features)
        eval_set = load_eval_set(proj)
        started = time.perf_counter()
        net, fit = train_model(train, data)
        seconds = time.perf_counter() - started
        models: dict[str, Any] = {
            f"{train.cell} (params.yaml)": NetQuantiles(
                net, data.scaler, train.lookback, fit.calibration
            ),
            "persistence-empirical": calibrated_baseline(eval_set, "persistence"),
            "ewma": calibrated_baseline(eval_set, "ewma"),
        }
        scores = {
            name: score_quantiles(test_quantiles(m, eval_set), eval_set, version=None, kind=name)
            for name, m in models.items()
        }
        reference = scores["persistence-empirical"]
        print(
            f"{eval_set.version} test window: {len(eval_set.dates)} days "
            f"{eval_set.dates[0].date()} .. "
            f"{eval_set.dates[-1].date()}; {train.cell} h{train.hidden_size}x{train.num_layers} "
            f"lookback {train.lookback}: {len(fit.history)} epochs (best {fit.best_epoch}) "
            f"in {seconds:.0f} s"
        )
        header = (
            f"{'model':24} {'CRPS $':>8} {'pinball $':>9} {'skill':>6} {'MASE':>7} "
            f"{'cov80':>6} {'cov95':>6} {'width80 $':>9} {'width95 $':>9} {'DM p':>7}"
        )
        print(header)
        print("-" * len(header))
        for name, s in scores.items():
            p = (
                diebold_mariano(np.asarray(s.daily), np.asarray(reference.daily)).p_value
                if s is not reference
                else float("nan")
            )
            print(
                f"{name:24} {s.crps:8.2f} {s.pinball:9.2f} {s.crps / reference.crps:6.3f} "
                f"{s.mase:7.4f} {s.coverage_80:6.1%} {s.coverage_95:6.1%} {s.width_80:9.0f} "
                f"{s.width_95:9.0f} {p:7.3g}"
            )
        print("skill = CRPS / persistence-empirical's; DM p: one-sided, lower CRPS than it")
        print(f"\ncoverage by horizon (origins every {args.stride} test days):")
        days = " ".join(f"{f'd{h}':>6}" for h in range(1, args.horizon + 1))
        print(f"{'model':24} {'band':>5} {days}")
        for name, model in models.items():
            by_h = horizon_coverage(model, eval_set, args.horizon, args.stride)
            for nominal, shares in by_h.items():
                cells = " ".join(f"{x:6.1%}" for x in shares)
                print(f"{name:24} {nominal:5.0%} {cells}")


if __name__ == "__main__":
    main()
