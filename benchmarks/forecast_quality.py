"""How good are the forecasts, and do their intervals keep their promise? Persistence-empirical,
EWMA and params.yaml's torch model (with a learned and with a persistence median) on the
selected version's test window (v0.3: 632 days), scored by the code promotion uses.

Each model is scored, paired on the same days, with three calibrations of its intervals:
- adaptive: the online conformal calibrator (forecasting.calibration) as a version ships and
  serves it: its state fitted on the validation days in day order, then every test day
  calibrated with the state of that moment and its close folded in (registry.scoring);
- fixed: today's split-conformal offsets, fitted once on the same validation days;
- and, as the honest comparison, the uncalibrated trailing-year empirical spread.
For each: CRPS (USD), the adaptive/fixed CRPS ratio with a one-sided Diebold-Mariano test of
adaptive < fixed, 50/80/90/95% coverage, mean 80% width, median MASE. Then coverage per
volatility tercile (calm / normal / turbulent by the trailing 30-day volatility known on the
forecast day) and per horizon day (a 7-day forecast from every `--stride`-th test day, its
state advanced through the origin's close).

Nothing here is tuned on the test window: the models are params.yaml's train and baselines
blocks, the calibrator's step is params.yaml's `train.calibration_step` (a stated rule, not a
fitted figure), and every calibration is fitted on the validation block only.

    .venv/bin/python benchmarks/forecast_quality.py [--max-epochs N] [--horizon 7] [--stride 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    import numpy as np

    from forecasting.calibration import CalibrationState
    from forecasting.packaged import PackagedModel
    from registry.policy import ModelScore
    from registry.scoring import EvalSet

NOMINALS = (50, 80, 90, 95)


def quantiles_with(py: PackagedModel, eval_set: EvalSet, state: CalibrationState) -> np.ndarray:
    """The test days' quantiles with a fixed `state` (step 0: nothing to advance)."""
    return py.calibrated_run(eval_set.row_dates, eval_set.values, eval_set.positions, state)[0]


def fixed_offsets(py: PackagedModel, eval_set: EvalSet) -> CalibrationState:
    """Today's calibration: split-conformal offsets of the raw quantiles on the validation days."""
    import numpy as np

    from forecasting.calibration import fixed_state
    from forecasting.features import CLOSE
    from forecasting.forecast import windows_at
    from forecasting.quantiles import conformal_offsets

    values, val = eval_set.values, eval_set.val_positions
    raw = py.model.return_quantiles(windows_at(values, val, py.rows_needed))
    target = np.log(values[val + 1, CLOSE] / values[val, CLOSE])
    return fixed_state(py.levels, conformal_offsets(raw, target, py.levels))


def row(name: str, s: ModelScore, cov: dict[str, float], ratio: str, p: str) -> str:
    cells = " ".join(f"{cov[f'coverage_{n}']:6.1%}" for n in NOMINALS)
    return f"{name:34} {s.crps:8.2f} {ratio:>6} {p:>8} {cells} {s.width_80:8.0f} {s.mase:7.4f}"


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
    from forecasting.calibration import initial_state
    from forecasting.features import CLOSE
    from forecasting.quantiles import diebold_mariano
    from forecasting.scores import coverage_by_volatility, score_quantiles, trailing_volatility
    from pipelines.training.evaluation import horizon_coverage
    from pipelines.training.packaging import packaged_in_memory
    from pipelines.training.tracked_run import model_spec
    from pipelines.training.train import load_training_data, train_model
    from registry.scoring import calibrated_baseline, load_eval_set, served_quantiles
    from registry.scoring import score_quantiles as model_score

    with tempfile.TemporaryDirectory() as tmp:
        root = build_workspace(Path(tmp))
        proj = Project(root)
        params = load_params(proj.params_file)
        data = load_training_data(proj.features)
        eval_set = load_eval_set(proj)
        train = params.train
        if args.max_epochs:
            train = train.model_copy(update={"max_epochs": args.max_epochs})
        rows = eval_set.rows.tail(400).reset_index()
        models: dict[str, PackagedModel] = {
            "persistence-empirical": calibrated_baseline(eval_set, "persistence"),
            "ewma": calibrated_baseline(eval_set, "ewma"),
        }
        fits = []
        for median in ("learned", "persistence"):
            started = time.perf_counter()
            params_m = train.model_copy(update={"median": median})
            net, fit = train_model(params_m, data)
            assert fit.calibration is not None
            spec = model_spec(params_m, data, net, fit.calibration)
            name = f"{train.cell} median={median}"
            models[name] = packaged_in_memory(spec, rows, net)
            fits.append(
                f"{name}: {len(fit.history)} epochs (best {fit.best_epoch}) in "
                f"{time.perf_counter() - started:.0f} s"
            )

        target = np.log(eval_set.next_close / eval_set.close)
        volatility = trailing_volatility(eval_set.values[:, CLOSE])[eval_set.positions]
        levels = eval_set.levels
        print(
            f"{eval_set.version} test window: {len(eval_set.dates)} days "
            f"{eval_set.dates[0].date()} .. {eval_set.dates[-1].date()}; calibration step "
            f"{train.calibration_step}; {train.cell} h{train.hidden_size}x{train.num_layers} "
            f"lookback {train.lookback}: " + "; ".join(fits)
        )
        header = (
            f"{'model / calibration':34} {'CRPS $':>8} {'ratio':>6} {'DM p':>8} "
            + " ".join(f"{f'cov{n}':>6}" for n in NOMINALS)
            + f" {'width80':>8} {'MASE':>7}"
        )
        print(header)
        print("-" * len(header))
        by_tercile: dict[str, dict[str, float]] = {}
        adaptive: dict[str, ModelScore] = {}
        for name, py in models.items():
            adaptive_q = served_quantiles(py, eval_set)
            fixed_q = quantiles_with(py, eval_set, fixed_offsets(py, eval_set))
            scored = {}
            for label, quant in (("adaptive", adaptive_q), ("fixed offsets", fixed_q)):
                score = model_score(quant, eval_set, version=None, kind=name)
                cov = score_quantiles(quant, eval_set.close, eval_set.next_close, levels)
                scored[label] = (score, cov)
                by_tercile[f"{name} {label}"] = coverage_by_volatility(
                    quant, target, volatility, levels
                )
            (a, a_cov), (f, f_cov) = scored["adaptive"], scored["fixed offsets"]
            adaptive[name] = a
            dm = diebold_mariano(np.asarray(a.daily), np.asarray(f.daily))
            print(row(f"{name} adaptive", a, a_cov, f"{a.crps / f.crps:.4f}", f"{dm.p_value:.3g}"))
            print(row(f"{name} fixed offsets", f, f_cov, "", ""))
        raw_py = models["persistence-empirical"]
        raw_q = quantiles_with(raw_py, eval_set, initial_state(levels, 0.0))
        raw = model_score(raw_q, eval_set, version=None, kind="raw")
        raw_cov = score_quantiles(raw_q, eval_set.close, eval_set.next_close, levels)
        print(row("trailing-year empirical, uncalibrated", raw, raw_cov, "", ""))
        by_tercile["trailing-year empirical, uncalibrated"] = coverage_by_volatility(
            raw_q, target, volatility, levels
        )
        print("ratio: adaptive CRPS / fixed offsets' on the same days; DM p: one-sided, adaptive")
        print("lower than fixed (Diebold-Mariano, HAC variance)")
        reference = adaptive["persistence-empirical"]
        print("\nadaptive, against persistence-empirical adaptive (the champion a registry seeds):")
        for name, a in adaptive.items():
            dm = diebold_mariano(np.asarray(a.daily), np.asarray(reference.daily))
            p = "" if a is reference else f"DM p {dm.p_value:.3g}"
            print(f"{name:34} CRPS skill {a.crps / reference.crps:.4f} {p}")

        print("\ncoverage by volatility tercile (trailing 30-day volatility on the forecast day):")
        names = ("calm", "normal", "turbulent")
        head = " ".join(f"{f'{t[:4]}{n}':>8}" for t in names for n in NOMINALS)
        print(f"{'model / calibration':40} {head}")
        for name, cov in by_tercile.items():
            cells = " ".join(f"{cov[f'coverage_{n}_{t}']:8.1%}" for t in names for n in NOMINALS)
            print(f"{name:40} {cells}")

        print(
            f"\ncoverage by horizon day, adaptive (a {args.horizon}-day forecast every "
            f"{args.stride} test days, state advanced through each origin):"
        )
        days = " ".join(f"{f'd{h}':>6}" for h in range(1, args.horizon + 1))
        print(f"{'model':34} {'band':>5} {days}")
        for name, py in models.items():
            by_day = horizon_coverage(
                py,
                eval_set.row_dates,
                eval_set.values,
                eval_set.positions,
                horizon=args.horizon,
                stride=args.stride,
            )
            for n in NOMINALS:
                cells = " ".join(
                    f"{by_day[f'coverage_{n}_d{h}']:6.1%}" for h in range(1, args.horizon + 1)
                )
                print(f"{name:34} {n:4d}% {cells}")


if __name__ == "__main__":
    main()
