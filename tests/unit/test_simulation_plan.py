"""The replay's retrain schedule: every K days of serving, never on the last simulated day (a
version made then could never serve, so the sweep would be spent for nothing)."""

from __future__ import annotations

import datetime as dt

import pytest

from simulation.workspace import Plan

pytestmark = pytest.mark.unit
JAN1 = dt.date(2024, 1, 1)


@pytest.mark.parametrize(
    ("days", "every", "retrains", "skipped"),
    [
        (61, 30, [dt.date(2024, 1, 31)], dt.date(2024, 3, 1)),  # day 60 is the last: skipped
        (60, 30, [dt.date(2024, 1, 31)], None),
        (3, 1, [dt.date(2024, 1, 2)], dt.date(2024, 1, 3)),
        (1, 1, [], None),
        (31, 30, [], dt.date(2024, 1, 31)),
    ],
)
def test_no_retrain_on_the_last_day(
    days: int, every: int, retrains: list[dt.date], skipped: dt.date | None
) -> None:
    plan = Plan(JAN1, JAN1 + dt.timedelta(days=days - 1), every)
    assert plan.retrain_days == retrains and plan.skipped_retrain == skipped
    assert all(day < plan.end for day in plan.retrain_days)
