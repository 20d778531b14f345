"""Quiet, correct logs: Optuna's messages reach `logging` at their own level (its own stderr
handler made Airflow's task log show "A new study created" as a red ERROR line), and migrating
the prediction log prints no alembic chatter (7 "setup plugin" lines and 2 context lines in
every `coinflow monitor score`), only the upgrades it runs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_a_new_study_is_logged_at_info_through_logging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import optuna

    from pipelines.sweep.storage import open_storage

    caplog.set_level(logging.INFO)
    seen: list[logging.LogRecord] = []  # every record Optuna emits, once per emission
    counter = logging.Handler()
    counter.emit = seen.append  # type: ignore[method-assign]
    library = logging.getLogger("optuna")
    library.addHandler(counter)
    try:
        optuna.create_study(study_name="s", storage=open_storage(str(tmp_path / "journal.log")))
    finally:
        library.removeHandler(counter)
    (record,) = [r for r in seen if "A new study created" in r.getMessage()]
    assert record.name.startswith("optuna.") and record.levelno == logging.INFO
    assert record in caplog.records  # it reached logging's root handlers
    # ... and once: Optuna's own stderr handler is gone, so nothing writes it a second time.
    assert library.propagate and not library.handlers


def test_migrating_the_prediction_log_says_only_what_it_upgraded(tmp_path: Path) -> None:
    """In a fresh process (alembic logs its plugins when first imported), logging at INFO as
    every `coinflow` command does: the first migration names its upgrades, the second says
    nothing."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from serving.log_database import engine_for, migrate\n"
        "engine = engine_for(sys.argv[1])\n"
        "migrate(engine)\n"
        "print('-- again', file=sys.stderr, flush=True)\n"
        "migrate(engine)\n"
    )
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    done = subprocess.run(
        [sys.executable, "-c", code, url], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    first, again = done.stderr.split("-- again\n")
    assert first.startswith("Running upgrade  -> 0001, The prediction log")
    for chatter in ("setup plugin", "Context impl", "Will assume"):
        assert chatter not in done.stderr
    assert again == ""
