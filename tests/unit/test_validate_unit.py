"""The gate on tiny synthetic frames: tolerance, helper columns, error text, record format."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.params import DriftParams, FeatureParams, ValidateParams
from core.paths import Project
from core.rules import OhlcRules
from pipelines.data.version import VERSION_COLUMNS
from pipelines.gate import validate
from pipelines.training.features import GateNotPassedError, gate_passed

pytestmark = pytest.mark.unit

PARAMS = ValidateParams(
    min_rows=5,
    max_rows=100,
    max_gap_days=1,
    max_abs_log_move=0.7,
    ohlc_tolerance=0.005,
    max_wick=2.0,
    max_filled_run={"eth": 1, "gold": 4},
    drift=DriftParams(window_days=30, alpha=0.01, action="warn"),
)
CUTOFF = dt.date(2020, 1, 31)


def _frame(n: int = 20) -> pd.DataFrame:
    """n clean days from 2020-01-01 shaped like a dataset version; ETH missing on day 1-3."""
    dates = pd.date_range("2020-01-01", periods=n, freq="D", name="date")
    close = 100.0 * 1.01 ** np.arange(n)
    frame = pd.DataFrame(
        {
            "btc_open": close * 0.99,
            "btc_high": close * 1.02,
            "btc_low": close * 0.97,
            "btc_close": close,
            "btc_volume": 1e6,
            "eth_close": close / 10,
            "eth_volume": 5e5,
            "eth_filled": np.int8(0),
            "gold_close": 1500.0,
            "gold_filled": np.int8(0),
        },
        index=dates,
    )
    frame.loc[frame.index[:3], ["eth_close", "eth_volume"]] = np.nan
    return frame.astype({"gold_filled": "int8", "eth_filled": "int8"})[VERSION_COLUMNS]


def _run(
    frame: pd.DataFrame, tmp_path: Path, params: ValidateParams = PARAMS
) -> validate.ValidationOutcome:
    return validate.validate_version(frame, "v9.9", CUTOFF, params, tmp_path / "docs")


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gate")


@pytest.fixture(scope="module")
def clean(shared_dir: Path) -> validate.ValidationOutcome:
    """The gate on a clean frame, run once for the tests that only read its outcome."""
    return _run(_frame(), shared_dir / "clean")


@pytest.fixture(scope="module")
def too_short(shared_dir: Path) -> validate.ValidationOutcome:
    """The gate on 3 rows (fewer than min_rows), run once likewise."""
    return _run(_frame(3), shared_dir / "short")


def test_clean_frame_with_leading_eth_gap_passes(
    clean: validate.ValidationOutcome, shared_dir: Path
) -> None:
    outcome = clean
    assert outcome.success and outcome.failed == [] and outcome.n_rows == 20
    assert outcome.evaluated == 45
    assert outcome.docs_path == shared_dir / "clean" / "docs" / "index.html"
    assert outcome.docs_path.is_file()


def test_data_docs_pages_share_compiled_templates(clean: validate.ValidationOutcome) -> None:
    """GE renders the site with pipelines.gate.docs' views, whose templates compile once per
    process: a GE upgrade that drops the sections' `view` option or the views' jinja `env`
    fails here, not as a silent slowdown."""
    from pipelines.gate import docs

    site = clean.docs_path.parent
    assert docs.COMPILED.code  # what the views compiled, for every later page of the process
    (page,) = (site / "validations").glob("**/*.html")
    assert "Succeeded" in page.read_text(encoding="utf-8")
    assert (site / "expectations" / "coinflow_v9_9.html").is_file()


@pytest.mark.parametrize(
    ("column", "factor", "passes", "rule"),
    [
        ("btc_open", 1.02 * 1.004, True, None),  # Open 0.4% above High: source rounding
        ("btc_open", 1.02 * 1.006, False, "btc_high_slack"),
        ("btc_close", 0.97 * 0.996, True, None),  # Close 0.4% below Low
        ("btc_close", 0.97 * 0.994, False, "btc_low_slack"),
    ],
)
def test_ohlc_rule_allows_only_the_tolerance(
    tmp_path: Path, column: str, factor: float, passes: bool, rule: str | None
) -> None:
    frame = _frame()
    close = frame["btc_close"].iloc[10]
    frame.iloc[10, frame.columns.get_loc(column)] = close * factor
    outcome = _run(frame, tmp_path)
    assert outcome.success is passes
    if rule:
        assert [f.column for f in outcome.failed] == [rule]
        assert outcome.failed[0].examples[0]["date"] == "2020-01-11"


def test_gap_rule_reads_max_gap_days(tmp_path: Path) -> None:
    frame = _frame().drop(index=pd.Timestamp("2020-01-05"))
    assert [f.column for f in _run(frame, tmp_path).failed] == ["date_gap_days"]
    relaxed = PARAMS.model_copy(update={"max_gap_days": 2})
    assert _run(frame, tmp_path, relaxed).success


def test_check_columns_values_and_missing_inputs() -> None:
    frame = _frame(3)
    checked = validate.add_check_columns(frame, OhlcRules(0.0, 2.0))
    assert list(checked["date"]) == list(frame.index) and list(checked["row_number"]) == [0, 1, 2]
    np.testing.assert_allclose(checked["btc_high_slack"], frame["btc_close"].to_numpy() * 0.02)
    np.testing.assert_allclose(checked["btc_low_slack"], frame["btc_close"].to_numpy() * 0.02)
    assert checked["date_gap_days"].iloc[1:].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(checked["btc_log_move"].iloc[1:], np.log(1.01))
    assert np.isnan(checked["btc_log_move"].iloc[0])
    broken = validate.add_check_columns(
        frame.drop(columns=["btc_close"]).reset_index(drop=True), OhlcRules(0.0, 2.0)
    )
    assert broken[["btc_high_slack", "btc_log_move", "date_gap_days"]].isna().all().all()


def test_error_names_each_version_and_failure(
    tmp_path: Path, too_short: validate.ValidationOutcome
) -> None:
    bad = _frame()
    bad.iloc[4, bad.columns.get_loc("btc_volume")] = np.nan
    first, second = _run(bad, tmp_path), too_short
    message = str(validate.DataValidationError(first, second))
    assert message.count("dataset version v9.9 failed") == 2
    assert (
        "expect_column_values_to_not_be_null [btc_volume]: no missing values — 1 offending "
        'row; e.g. {"row_number": 4, "date": "2020-01-05", "btc_volume": null}'
    ) in message
    assert "expect_table_row_count_to_be_between: 5 to 100 rows" in message
    assert str(first.docs_path) in message


def test_record_is_what_features_gate_reads(
    tmp_path: Path, clean: validate.ValidationOutcome, too_short: validate.ValidationOutcome
) -> None:
    outcomes = {"ok": clean, "bad": too_short}
    records = {v: validate.outcome_record(o, f"md5-{v}") for v, o in outcomes.items()}
    proj = Project(tmp_path)
    proj.metrics.mkdir()
    proj.metrics_file("validation").write_text(json.dumps(records))
    gate_passed("ok", "md5-ok", proj)
    for version, md5 in [("bad", "md5-bad"), ("ok", "other-md5"), ("unknown", "md5-ok")]:
        with pytest.raises(GateNotPassedError):
            gate_passed(version, md5, proj)
    assert records["bad"]["failed"] == ["expect_table_row_count_to_be_between"]


def test_rerun_replaces_data_docs(tmp_path: Path) -> None:
    (tmp_path / "docs" / "stale.html").parent.mkdir(parents=True)
    (tmp_path / "docs" / "stale.html").write_text("old")
    for _ in range(2):
        outcome = _run(_frame(), tmp_path)
    assert not (tmp_path / "docs" / "stale.html").exists()
    assert len(list((tmp_path / "docs" / "validations").glob("**/*.html"))) == 1
    assert "coinflow_v9_9" in outcome.docs_path.read_text()


@pytest.mark.parametrize(
    "content", [None, b"", b"not,a,parquet\n"], ids=["missing", "empty", "csv"]
)
def test_read_version_names_the_bad_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "v0.1.parquet"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(validate.VersionFileError, match=str(path)):
        validate.read_version(path)


@pytest.mark.parametrize(
    ("column", "value", "failed"),
    [
        # non-finite: fails the price bound and every OHLC relation it is part of
        ("btc_high", np.inf, {"btc_high", "btc_high_slack", "btc_high_wick_slack"}),
        ("btc_low", -np.inf, {"btc_low", "btc_low_slack", "btc_low_wick_slack"}),
        # absurd but finite: orders of magnitude above its own day's Open/Close
        ("btc_high", 1e7, {"btc_high_wick_slack"}),
        ("btc_low", 1e-3, {"btc_low_wick_slack"}),
        # a corrupt close rises above the day's High and breaks its close-to-close moves
        ("btc_close", 1e6, {"btc_high_slack", "btc_log_move"}),
        # the exogenous series: a 1000x spike in one day, a non-finite value
        ("eth_close", 1e5, {"eth_log_move"}),
        ("gold_close", np.inf, {"gold_close", "gold_log_move"}),
        ("btc_volume", np.inf, {"btc_volume"}),
        ("eth_volume", 1e18, {"eth_volume"}),
    ],
)
def test_non_finite_and_absurd_values_fail_the_gate_by_name(
    tmp_path: Path, column: str, value: float, failed: set[str]
) -> None:
    frame = _frame()
    frame.iloc[10, frame.columns.get_loc(column)] = value
    outcome = _run(frame, tmp_path)
    assert not outcome.success
    assert {f.column for f in outcome.failed} == failed
    message = str(validate.DataValidationError(outcome))
    assert "2020-01-11" in message  # the offending row is named


def test_a_series_carried_forward_too_long_fails_naming_asset_and_days(tmp_path: Path) -> None:
    """ETH's export stops 5 days before the cut-off (carried flat), gold skips a working week."""
    frame = _frame()
    frame.loc[frame.index[-5:], "eth_filled"] = 1
    frame.loc[frame.index[-5:], "eth_close"] = frame["eth_close"].iloc[-6]
    frame.loc[frame.index[3:8], "gold_filled"] = 1
    outcome = _run(frame, tmp_path)
    assert {f.column for f in outcome.failed} == {"eth_stale_run", "gold_stale_run"}
    message = str(validate.DataValidationError(outcome))
    assert "ETH carried forward at most 1 day(s) in a row" in message
    assert "4 offending rows" in message and "2020-01-17" in message  # days 2 .. 5 of the run
    assert "GOLD carried forward at most 4" in message and "2020-01-08" in message
    frame.loc[frame.index[-5:-1], "eth_filled"] = 0  # one filled day (a holiday) is fine
    frame.loc[frame.index[3], "gold_filled"] = 0  # and four gold days in a row
    assert _run(frame, tmp_path).success


def test_version_flags_the_days_eth_was_carried(tmp_path: Path) -> None:
    from pipelines.data.version import align_assets

    days = pd.date_range("2020-01-01", periods=10, freq="D", name="date")
    btc = pd.DataFrame(dict.fromkeys(("open", "high", "low", "close", "volume"), 1.0), index=days)
    eth = btc[["close", "volume"]].drop(index=days[[0, 6, 7]])  # starts day 2; days 7-8 missing
    gold = btc[["close"]]
    out = align_assets(btc, eth, gold, days[0].date(), days[-1].date())
    assert out["eth_filled"].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    assert np.isnan(out["eth_close"].iloc[0])  # before the series starts: missing, not filled


def _shifted(n: int = 300, shift_last: int = 30) -> pd.DataFrame:
    """n days of noisy prices whose last `shift_last` days trade 20x the volume."""
    frame = _frame(n)
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    frame["btc_close"], frame["btc_open"] = close, close * 0.995
    frame["btc_high"], frame["btc_low"] = close * 1.02, close * 0.97
    frame["btc_volume"] = rng.uniform(1e6, 2e6, n)
    frame.iloc[-shift_last:, frame.columns.get_loc("btc_volume")] *= 20
    return frame


SPLIT = FeatureParams(train_frac=0.6, val_frac=0.2)


@pytest.mark.parametrize("action", ["warn", "fail"])
def test_drift_of_the_newest_window_warns_or_fails_by_params(tmp_path: Path, action: str) -> None:
    params = PARAMS.model_copy(
        update={"max_rows": 1000, "drift": DriftParams(window_days=30, alpha=0.01, action=action)}
    )
    frame = _shifted()
    outcome = validate.validate_version(
        frame, "v9.9", dt.date(2021, 12, 31), params, tmp_path / "docs", features=SPLIT
    )
    drift = outcome.drift
    assert drift["computed"] and drift["drifted"] == ["btc_volume"]
    assert drift["recent"] == [str(frame.index[-30].date()), str(frame.index[-1].date())]
    assert drift["train"][1] < drift["recent"][0]  # the two windows never overlap
    by_series = {row["series"]: row for row in drift["series"]}
    assert by_series["btc_volume"]["ks_statistic"] == 1.0  # every recent volume is larger
    assert by_series["btc_return"]["p_value"] > 0.01  # same return distribution throughout
    named = outcome.warnings if action == "warn" else outcome.failed
    assert [f.column for f in named] == ["p_value"]
    assert named[0].examples[0]["series"] == "btc_volume"
    assert outcome.success is (action == "warn")
    record = validate.outcome_record(outcome, "md5")
    assert record["drift"] == drift and len(record["warnings"]) == (action == "warn")
    pages = sorted((tmp_path / "docs" / "validations").glob("*/**/*.html"))
    assert [p.relative_to(tmp_path / "docs" / "validations").parts[0] for p in pages] == [
        "coinflow_v9_9",
        "coinflow_v9_9_drift",
    ]


def test_drift_not_computed_on_a_frame_too_short_says_why(tmp_path: Path) -> None:
    outcome = validate.validate_version(
        _frame(40), "v9.9", dt.date(2020, 12, 31), PARAMS, tmp_path / "docs", features=SPLIT
    )
    assert outcome.success and not outcome.drift["computed"]
    assert "overlap the training window" in outcome.drift["reason"]
