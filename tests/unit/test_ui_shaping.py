"""UI data shaping and figures: API answers → picker choices, plot series, rows, lineage."""

from __future__ import annotations

import datetime as dt
import io

import matplotlib.dates as mdates
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from ui import plots, shaping
from ui.client import Forecast, Lineage, ModelRef, Models, Monitoring, Sweep

pytestmark = pytest.mark.unit

MODELS = Models.model_validate(
    {
        "name": "btc-forecaster",
        "aliases": {"challenger": 3, "champion": 2, "previous-champion": 1},
        "versions": [
            {
                "version": 1,
                "aliases": ["previous-champion"],
                "kind": "persistence",
                "data_version": "v0.2",
                "created_at": 1_730_000_000_000,
                "metrics": {
                    "test_mase": 1.0,
                    "test_mae": 815.0,
                    "test_rmse": 1200.0,
                    "test_crps": 620.0,
                    "test_coverage_80": 0.8123,
                },
            },
            {
                "version": 3,
                "aliases": ["challenger"],
                "kind": "torch",
                "data_version": "v0.3",
                "created_at": "2024-11-02T10:11:12+00:00",
                "metrics": {
                    "test_mase": 0.97,
                    "test_mae": 790.0,
                    "test_rmse": 1150.5,
                    "test_crps": 598.456,
                    "test_coverage_80": 0.79,
                    "test_coverage_95": 0.951,
                },
            },
            {
                "version": 2,
                "aliases": ["champion"],
                "kind": "torch",
                "data_version": "v0.3",
                "metrics": {
                    "test_mase": 0.99,
                    "test_mae": 800.0,
                    "test_rmse": 1180.0,
                    "test_crps": 610.0,
                },
            },
        ],
    }
)
LINEAGE = {
    "model_name": "btc-forecaster",
    "version": 2,
    "aliases": ["champion"],
    "run_id": "abc123",
    "data_version": "v0.3",
    "dvc_md5": "d41d8cd98f00b204",
    "git_sha": "0123abcd",
    "trained_at": "2024-11-01T00:00:00+00:00",
    "kind": "torch",
}
FORECAST = Forecast.model_validate(
    {
        # deliberately out of order: shaping sorts by date
        "history": [
            {"date": "2024-10-31", "close": 70_000.0},
            {"date": "2024-10-29", "close": 69_000.0},
            {"date": "2024-10-30", "close": 72_000.0},
        ],
        "forecasts": [
            {
                "date": "2024-11-02",
                "close": 71_000.0,
                "intervals": [
                    {"level": 0.95, "lower": 64_000.0, "upper": 78_000.0},
                    {"level": 0.8, "lower": 67_000.0, "upper": 75_000.0},
                ],
            },
            {
                "date": "2024-11-01",
                "close": 70_500.0,
                "intervals": [
                    {"level": 0.8, "lower": 68_000.0, "upper": 73_000.0},
                    {"level": 0.95, "lower": 66_000.0, "upper": 75_000.0},
                ],
            },
        ],
        "lineage": LINEAGE,
    }
)


def test_choices_list_aliases_in_promotion_order_then_versions_newest_first() -> None:
    choices = shaping.model_choices(MODELS)
    assert [value for _, value in choices] == [
        "alias:champion",
        "alias:challenger",
        "alias:previous-champion",
        "version:3",
        "version:2",
        "version:1",
    ]
    labels = {value: label for label, value in choices}
    assert labels["alias:champion"] == "@champion → v2 (torch)"
    assert labels["version:1"] == "v1 · persistence · data v0.2 · @previous-champion"


def test_default_choice_keeps_current_then_champion_then_first() -> None:
    choices = shaping.model_choices(MODELS)
    assert shaping.default_choice(choices, "version:3") == "version:3"
    assert shaping.default_choice(choices, "version:99") == "alias:champion"
    assert shaping.default_choice([("v5", "version:5")]) == "version:5"
    assert shaping.default_choice([]) is None


@pytest.mark.parametrize(
    ("value", "ref"),
    [
        ("alias:challenger", ModelRef("alias", "challenger")),
        ("version:12", ModelRef("version", "12")),
        (None, ModelRef("alias", "champion")),
        ("", ModelRef("alias", "champion")),
    ],
)
def test_parse_choice(value: str | None, ref: ModelRef) -> None:
    assert shaping.parse_choice(value) == ref


@pytest.mark.parametrize("value", ["version:abc", "version:0", "alias:", "stage:Production", "3"])
def test_parse_choice_rejects_unknown_values(value: str) -> None:
    with pytest.raises(shaping.ChoiceError, match="neither"):
        shaping.parse_choice(value)


def test_forecast_series_sorts_and_holds_persistence_at_last_actual_close() -> None:
    series = shaping.forecast_series(FORECAST)
    assert series.history_dates == [
        dt.date(2024, 10, 29),
        dt.date(2024, 10, 30),
        dt.date(2024, 10, 31),
    ]
    assert series.history_close == [69_000.0, 72_000.0, 70_000.0]
    assert series.forecast_dates == [dt.date(2024, 11, 1), dt.date(2024, 11, 2)]
    assert series.forecast_close == [70_500.0, 71_000.0]
    assert series.persistence_close == [70_000.0, 70_000.0]  # last by date, not by position


def test_forecast_series_without_history_is_a_clear_error() -> None:
    empty = FORECAST.model_copy(update={"history": []})
    with pytest.raises(ValueError, match="no history"):
        shaping.forecast_series(empty)


def test_forecast_summary_compares_final_forecast_with_persistence() -> None:
    text = shaping.forecast_summary(shaping.forecast_series(FORECAST), FORECAST.lineage)
    assert "v2" in text and "$71,000" in text and "2024-11-02" in text
    assert "+1.43%" in text and "$70,000" in text
    persistence = FORECAST.lineage.model_copy(update={"kind": "persistence"})
    text = shaping.forecast_summary(shaping.forecast_series(FORECAST), persistence)
    assert "vs persistence" not in text and "%" not in text.split(";")[0]
    assert "the persistence baseline: last close $70,000" in text


@pytest.mark.parametrize(
    ("url", "run_id", "expected"),
    [
        ("http://mlflow:5000/", "abc", "http://mlflow:5000/#/runs/abc"),
        ("http://127.0.0.1:5000", "abc", "http://127.0.0.1:5000/#/runs/abc"),
        (None, "abc", None),
        ("http://127.0.0.1:5000", None, None),
    ],
)
def test_run_url(url: str | None, run_id: str | None, expected: str | None) -> None:
    assert shaping.run_url(url, run_id) == expected


def test_lineage_panel_shows_every_field_and_links_the_run_only_when_configured() -> None:
    lineage = Lineage.model_validate(LINEAGE)
    text = shaping.lineage_markdown(lineage)
    for value in (
        "btc-forecaster v2",
        "@champion",
        "`abc123`",
        "v0.3",
        "`d41d8cd98f00b204`",
        "`0123abcd`",
        "torch",
        "2024-11-01T00:00:00+00:00",
    ):
        assert value in text
    assert "MLflow UI" not in text
    linked = shaping.lineage_markdown(lineage, "http://mlflow.local:5000")
    assert "(http://mlflow.local:5000/#/runs/abc123)" in linked
    sparse = shaping.lineage_markdown(Lineage(model_name="m", version=1))
    assert "| run id | — |" in sparse and "| DVC md5 | — |" in sparse


def test_version_rows_newest_first_with_metrics_and_readable_dates() -> None:
    rows = shaping.version_rows(MODELS)
    assert len(rows[0]) == len(shaping.VERSION_HEADERS)
    assert [r[0] for r in rows] == [3, 2, 1]
    assert rows[0] == [
        *(3, "@challenger", "torch", "v0.3", "2024-11-02 10:11", 0.97),
        *(598.46, "79.0%", "95.1%", 790.0, 1150.5),
    ]
    assert rows[1][6:9] == [610.0, "", ""]  # coverage unknown: blank, not 0
    assert rows[1][4] == ""  # no created_at
    assert rows[2][4] == "2024-10-27 03:33"  # epoch milliseconds, shown in UTC


def test_trial_rows_best_validation_loss_first_and_failures_last() -> None:
    sweep = Sweep.model_validate(
        {
            "parent_run_id": "p",
            "study_name": "s",
            "trials": [
                {
                    "trial_number": 0,
                    "status": "FINISHED",
                    "hidden_size": 32,
                    "num_layers": 1,
                    "val_loss": 0.5,
                    "objective": 1.02,
                },
                {"trial_number": 1, "status": "FAILED", "hidden_size": 64, "num_layers": 2},
                {
                    "trial_number": 2,
                    "status": "FINISHED",
                    "cell": "gru",
                    "hidden_size": 16,
                    "num_layers": 3,
                    "lookback": 20,
                    "lr": 0.01,
                    "val_loss": 0.25,
                    "objective": 0.9712345,
                    "test_mase": 0.98,
                    "test_crps": 601.234,
                },
            ],
        }
    )
    rows = shaping.trial_rows(sweep)
    assert [r[0] for r in rows] == [2, 0, 1]
    assert rows[0] == [2, "FINISHED", "gru", 16, 3, 20, 0.01, 0.9712, 0.25, 0.98, 601.23]
    assert len(rows[0]) == len(shaping.TRIAL_HEADERS)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _ys(line: Line2D) -> list[float]:
    return np.asarray(line.get_ydata(), dtype=float).tolist()


def _heights(ax: Axes) -> list[float]:
    return [bar.get_height() for bar in ax.patches if isinstance(bar, Rectangle)]


def test_forecast_figure_draws_actual_model_and_flat_persistence() -> None:
    series = shaping.forecast_series(FORECAST)
    fig = plots.forecast_figure(series, "title")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert _ys(lines["actual close"]) == series.history_close
    # both forecasts start at the last actual point, then follow their own path
    assert _ys(lines["model forecast (median)"]) == [70_000.0, 70_500.0, 71_000.0]
    assert _ys(lines["persistence (last close)"]) == [70_000.0] * 3
    assert series.bands == {
        0.95: ([66_000.0, 64_000.0], [75_000.0, 78_000.0]),
        0.8: ([68_000.0, 67_000.0], [73_000.0, 75_000.0]),
    }
    fans = {c.get_label(): c for c in ax.collections}
    assert set(fans) == {"95% interval", "80% interval"}
    (path,) = fans["80% interval"].get_paths()
    assert {67_000.0, 75_000.0, 68_000.0, 73_000.0} <= set(path.vertices[:, 1].tolist())
    xs = np.asarray(lines["model forecast (median)"].get_xdata(), dtype=float).tolist()
    assert (
        xs
        == mdates.date2num(
            [dt.date(2024, 10, 31), dt.date(2024, 11, 1), dt.date(2024, 11, 2)]
        ).tolist()
    )
    assert _png(fig).startswith(b"\x89PNG")


def test_sweep_figure_plots_finished_trials_by_layer_count() -> None:
    sweep = Sweep.model_validate(
        {
            "trials": [
                {"hidden_size": 32, "num_layers": 1, "val_loss": 0.5},
                {"hidden_size": 64, "num_layers": 2, "val_loss": 0.4},
                {"hidden_size": 16, "num_layers": 2, "val_loss": 0.3},
                {"hidden_size": 8, "num_layers": 1},  # failed: no loss, not drawn
            ]
        }
    )
    ax = plots.sweep_figure(sweep).axes[0]
    points = sorted(
        tuple(p) for c in ax.collections for p in np.asarray(c.get_offsets(), dtype=float).tolist()
    )
    assert points == [(16.0, 0.3), (32.0, 0.5), (64.0, 0.4)]
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["1 layer(s)", "2 layer(s)"]


def _score(version: int, role: str, day: str, mase: float) -> dict[str, object]:
    return {
        "version": version,
        "role": role,
        "window": "30d",
        "day": day,
        "n": 30,
        "mase": mase,
        "coverage_80": 0.8,
        "coverage_95": 0.95,
        "crps": 600.0,
    }


LIVE = Monitoring.model_validate(
    {
        "model_name": "btc-forecaster",
        "computed_at": "2024-10-04T06:00:00Z",
        "latest": [_score(2, "champion", "2024-10-04", 1.02)],
        "series": [
            *(_score(1, "champion", f"2024-10-0{d}", 0.98) for d in (1, 2)),
            *(_score(2, "champion", f"2024-10-0{d}", 1.02) for d in (3, 4)),
            *(_score(1, "shadow", f"2024-10-0{d}", 0.99) for d in (3, 4)),
        ],
        "alias_moves": [  # out of order on purpose; the first and last lie outside the series
            {"at": "2024-10-03T07:00:00+00:00", "action": "promote", "version": 2},
            {"at": "2024-09-01T07:00:00+00:00", "action": "first-champion", "version": 1},
            {"at": "2024-10-04T09:30:00+00:00", "action": "rollback", "version": 1},
            {"at": "2024-11-01T00:00:00+00:00", "action": "promote", "version": 3},
        ],
    }
)


def test_live_marks_are_the_champion_moves_within_the_plotted_days() -> None:
    series = shaping.live_series(LIVE)
    assert [s.label for s in series] == ["v1 (champion)", "v1 (shadow)", "v2 (champion)"]
    marks = shaping.live_marks(LIVE.alias_moves, series)
    assert marks == [
        shaping.LiveMark(dt.date(2024, 10, 3), "v2 promoted", rollback=False),
        shaping.LiveMark(dt.date(2024, 10, 4), "rolled back to v1", rollback=True),
    ]
    assert shaping.live_marks(LIVE.alias_moves, []) == []


def test_moves_note_names_the_latest_moves_or_why_there_are_none() -> None:
    note = shaping.moves_note(LIVE, shown=2)
    assert note == (
        " Champion moves (4): rolled back to v1 on 2024-10-04; v3 promoted on 2024-11-01."
    )
    assert shaping.moves_note(LIVE.model_copy(update={"alias_moves": []})) == ""
    down = LIVE.model_copy(update={"alias_moves": [], "alias_moves_error": "registry down"})
    assert "not marked: registry down" in shaping.moves_note(down)
    odd = LIVE.alias_moves[0].model_copy(update={"action": "sideways"})
    assert shaping.move_label(odd) == "v2 (sideways)"


def test_live_figure_marks_each_move_on_both_panels_with_its_version() -> None:
    series = shaping.live_series(LIVE)
    marks = shaping.live_marks(LIVE.alias_moves, series)
    fig = plots.live_figure(series, "30d", marks)
    mase_ax, cov_ax = fig.axes
    for ax in (mase_ax, cov_ax):
        vertical = sorted(
            (float(np.asarray(line.get_xdata(), dtype=float)[0]), line.get_color())
            for line in ax.get_lines()
            if len(set(np.asarray(line.get_xdata(), dtype=float).tolist())) == 1
            and line.get_label().startswith("_")  # not a plotted series
        )
        assert vertical == [
            (float(mdates.date2num(dt.date(2024, 10, 3))), plots.PROMOTED),
            (float(mdates.date2num(dt.date(2024, 10, 4))), plots.ROLLED_BACK),
        ]
    assert [t.get_text() for t in mase_ax.texts] == ["v2 promoted", "rolled back to v1"]
    legend = mase_ax.get_legend()
    assert legend is not None  # the marks stay out of the legend
    assert [t.get_text() for t in legend.get_texts()] == [s.label for s in series] + ["persistence"]
    assert _png(fig).startswith(b"\x89PNG")
