"""Stage 3: the Great Expectations gate — suite built in code, Data Docs HTML, a typed error."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import CoinflowError
from core.files import file_md5, write_json
from core.params import FeatureParams, ValidateParams, load_params
from core.paths import Project, project
from pipelines.data import history
from pipelines.gate.drift import drift_table
from pipelines.gate.expectations import (
    CHECK_COLUMNS,
    ROW,
    add_check_columns,
    build_drift_suite,
    build_suite,
)

log = logging.getLogger(__name__)
MAX_EXAMPLES = 5
VIEWS = "pipelines.gate.docs"  # GE imports the Data Docs views by module name
SECTIONS = ("expectations", "validations", "profiling")  # GE's default Data Docs site sections


class VersionFileError(CoinflowError, ValueError):
    """A dataset version file that is missing or is not a readable parquet frame."""


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation the data broke, with up to MAX_EXAMPLES offending rows or values."""

    expectation: str
    column: str | None
    description: str
    examples: list[Any] = field(default_factory=list)

    def __str__(self) -> str:
        where = f" [{self.column}]" if self.column else ""
        shown = "; ".join(json.dumps(e, default=str) for e in self.examples)
        return f"{self.expectation}{where}: {self.description}" + (f"; e.g. {shown}" * bool(shown))


@dataclass(frozen=True)
class ValidationOutcome:
    """Result of the gate on one dataset version."""

    version: str
    success: bool
    n_rows: int
    evaluated: int
    failed: list[FailedExpectation]
    docs_path: Path
    warnings: list[FailedExpectation] = field(default_factory=list)  # drift with action warn
    history: str = ""  # what the rows were compared with (pipelines.data.history.rule)
    drift: dict[str, Any] = field(default_factory=dict)  # the drift report, or why none


class DataValidationError(CoinflowError):
    """One or more dataset versions failed the Great Expectations gate."""

    def __init__(self, *outcomes: ValidationOutcome) -> None:
        self.outcomes = outcomes
        self.outcome = outcomes[0]
        lines = []
        for out in outcomes:
            lines.append(
                f"dataset version {out.version} failed the Great Expectations gate: "
                f"{len(out.failed)} of {out.evaluated} expectations failed "
                f"(Data Docs: {out.docs_path})"
            )
            lines.extend(f"  - {failure}" for failure in out.failed)
        super().__init__("\n".join(lines))


def _quiet_gx() -> None:
    """No analytics; no INFO chatter (metric registry, datasource dumps, API-doc decorators)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    logging.getLogger("great_expectations._docs_decorators").setLevel(logging.ERROR)


def _context(site_dir: Path) -> Any:
    """An in-memory GE context whose only Data Docs site is a folder, rendered by VIEWS (GE's
    pages, templates compiled once per process); no progress bars, no analytics."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    page = {"module_name": VIEWS, "class_name": "PageView"}
    site = {
        "class_name": "SiteBuilder",
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "view": {"module_name": VIEWS, "class_name": "IndexPageView"},
        },
        "site_section_builders": {s: {"view": page} for s in SECTIONS},
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(site_dir),
        },
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        data_docs_sites={"coinflow": site},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _examples(result: Any, checked: pd.DataFrame) -> list[Any]:
    """Up to MAX_EXAMPLES offending rows (row number, date, source columns) or observed values."""
    kwargs = result.expectation_config.kwargs
    res = result.result or {}
    rows = [r[ROW] for r in res.get("unexpected_index_list") or [] if isinstance(r, dict)]
    if rows:
        cols = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
        ids = [ROW, "date", "series"]  # "series": the drift table's rows
        shown = [*ids, *[s for c in cols for s in CHECK_COLUMNS.get(c, [])], *cols]
        shown = [c for c in dict.fromkeys(shown) if c in checked.columns]
        sample = checked.iloc[[int(r) for r in rows[:MAX_EXAMPLES]]][shown]
        return [{k: _plain(v) for k, v in rec.items()} for rec in sample.to_dict("records")]
    mismatched = (res.get("details") or {}).get("mismatched")
    if mismatched:  # the column-set expectation: which columns are missing / unexpected
        return [mismatched]
    if "observed_value" in res:
        return [{"observed": _plain(res["observed_value"])}]
    return [_plain(v) for v in res.get("partial_unexpected_list", [])[:MAX_EXAMPLES]]


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (dates as ISO text, NaN/NaT as None)."""
    if value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (pd.Timestamp, dt.date)):
        return value.isoformat()[:10]
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _failure(result: Any, checked: pd.DataFrame) -> FailedExpectation:
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column") or (
        f"{kwargs['column_A']}, {kwargs['column_B']}" if "column_A" in kwargs else None
    )
    text = config.description or config.type
    info = result.exception_info or {}
    errors = [
        i
        for i in ([info] if "raised_exception" in info else info.values())
        if isinstance(i, dict) and i.get("raised_exception")
    ]
    if errors:
        return FailedExpectation(
            config.type, column, f"{text} — could not evaluate: {errors[0]['exception_message']}"
        )
    count = (result.result or {}).get("unexpected_count")
    suffix = f" — {count} offending row{'s' * (count != 1)}" if count else ""
    return FailedExpectation(config.type, column, text + suffix, _examples(result, checked))


def _run_suite(context: Any, name: str, suite: Any, frame: pd.DataFrame) -> Any:
    """Validate `frame` against `suite` in `context`; the suite result, also stored there.

    No Checkpoint and no Data Docs action: validate_version builds the site once, after every
    suite has run (GE rebuilt it, and re-checked the definitions, per Checkpoint)."""
    import great_expectations as gx

    batch = (
        context.data_sources.add_pandas(name)
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("all_rows")
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=context.suites.add(suite))
    )
    return definition.run(
        batch_parameters={"dataframe": frame},
        result_format={
            "result_format": "COMPLETE",
            "partial_unexpected_count": MAX_EXAMPLES,
            "unexpected_index_column_names": [c for c in ("date", ROW) if c in frame.columns],
        },
    )


def _drift(
    frame: pd.DataFrame, params: ValidateParams, features: FeatureParams | None
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """The drift table (None when it cannot be computed) and its record."""
    settings = params.drift.model_dump()
    if features is None:
        return None, {**settings, "computed": False, "reason": "no feature split given"}
    try:
        table, windows = drift_table(frame, params.drift, features)
    except (ValueError, KeyError, IndexError) as exc:  # a frame the row checks refuse
        return None, {**settings, "computed": False, "reason": f"{type(exc).__name__}: {exc}"}
    drifted = table.loc[table["p_value"] < params.drift.alpha, "series"].tolist()
    record = {
        **settings,
        "computed": True,
        **windows,
        "drifted": drifted,
        "series": [{k: _plain(v) for k, v in row.items()} for row in table.to_dict("records")],
    }
    return table.assign(**{ROW: np.arange(len(table))}), record


def validate_version(
    frame: pd.DataFrame,
    version: str,
    cutoff: dt.date,
    params: ValidateParams,
    docs_dir: Path,
    reference: history.Reference | str = "no reference given",
    features: FeatureParams | None = None,
) -> ValidationOutcome:
    """Run the gate's suites on one version frame; (re)write its Data Docs under docs_dir.

    The rows suite (including immutability against `reference`, see pipelines.data.history) and,
    given `features` (the split defining the training window), the drift report's suite."""
    _quiet_gx()
    ref = reference if isinstance(reference, history.Reference) else None
    checked = add_check_columns(frame, params.ohlc, history.row_changes(frame, ref))
    drift, drift_record = _drift(frame, params, features)
    name = f"coinflow_{version.replace('.', '_')}"
    rule = history.rule(reference)
    with tempfile.TemporaryDirectory(prefix="gx-docs-") as site:
        context = _context(Path(site))
        rows = _run_suite(context, name, build_suite(name, cutoff, params, rule), checked)
        shifts = []
        if drift is not None:
            drift_name = f"{name}_drift"
            result = _run_suite(
                context, drift_name, build_drift_suite(drift_name, params.drift), drift
            )
            shifts = [_failure(r, drift) for r in result.results if not r.success]
        context.build_data_docs()  # every suite's and result's page, and the index
        # Replace the whole folder: no stale pages from an earlier run, no "already exists".
        shutil.rmtree(docs_dir, ignore_errors=True)
        shutil.copytree(site, docs_dir)
    failed = [_failure(r, checked) for r in rows.results if not r.success]
    fails_on_drift = params.drift.action == "fail"
    return ValidationOutcome(
        version,
        bool(rows.success) and not (shifts and fails_on_drift),
        len(frame),
        int(rows.statistics["evaluated_expectations"]),
        failed + shifts * fails_on_drift,
        docs_dir / "index.html",
        warnings=[] if fails_on_drift else shifts,
        history=rule,
        drift=drift_record,
    )


def read_version(path: Path) -> pd.DataFrame:
    """Read a version parquet; a missing, empty or non-parquet file raises VersionFileError."""
    if not path.is_file():
        raise VersionFileError(f"dataset version file {path} not found: run `dvc repro`")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise VersionFileError(
            f"dataset version file {path} is not a readable parquet ({type(exc).__name__}: {exc})"
        ) from exc


# "v0.3 as published at git HEAD 1a2b3c4": the sha stays in the Data Docs and the log, never in
# the committed metrics/validation.json (it would change with every commit: a dirty tree).
HEAD_SHA = re.compile(r"(git HEAD) [0-9a-f]{7,40}\b")


def outcome_record(
    outcome: ValidationOutcome, md5: str, root: Path | None = None
) -> dict[str, Any]:
    """The metrics/validation.json entry for one version (features' gate reads success + md5);
    the Data Docs path relative to the project `root`, no git sha (the file is committed)."""
    docs = outcome.docs_path
    if root is not None and docs.is_relative_to(root):
        docs = docs.relative_to(root)
    record: dict[str, Any] = {
        "success": outcome.success,
        "md5": md5,
        "n_rows": outcome.n_rows,
        "evaluated": outcome.evaluated,
        "failed": [f.expectation + (f"[{f.column}]" if f.column else "") for f in outcome.failed],
        "failures": [asdict(f) for f in outcome.failed],
        "warnings": [str(w) for w in outcome.warnings],
        "history": outcome.history,
        "drift": outcome.drift,
        "docs": str(docs),
    }
    record["history"] = HEAD_SHA.sub(r"\1", outcome.history)
    for failure in record["failures"]:  # the history expectation's text names the reference
        failure["description"] = HEAD_SHA.sub(r"\1", failure["description"])
    return record


def main(proj: Project | None = None) -> None:
    """Validate every version in params.yaml; write metrics/validation.json and Data Docs."""
    proj = proj or project()
    params = load_params(proj.params_file)
    paths = {v: proj.version_file(v) for v in params.data.versions}
    frames = {v: read_version(path) for v, path in paths.items()}  # an unreadable file: no output
    refs = history.references(frames, params.data.versions, history.published(proj))
    records, failures = {}, []
    for version, cutoff in params.data.versions.items():
        outcome = validate_version(
            frames[version],
            version,
            cutoff,
            params.validate_,
            proj.validation_docs(version),
            refs[version],
            params.features,
        )
        records[version] = outcome_record(outcome, file_md5(paths[version]), proj.root)
        log.info(
            "%s: %s, %d/%d expectations met, docs %s (%s)",
            version,
            "PASS" if outcome.success else "FAIL",
            outcome.evaluated - len(outcome.failed),
            outcome.evaluated,
            outcome.docs_path,
            outcome.history,
        )
        for warning in outcome.warnings:
            log.warning("%s: drift: %s", version, warning)
        failures += [] if outcome.success else [outcome]
    write_json(proj.metrics_file("validation"), records)
    if failures:
        raise DataValidationError(*failures)
