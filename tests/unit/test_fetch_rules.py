"""`coinflow data fetch` refuses new rows the gate would reject, before anything is written:
each malformed class is refused whole, naming asset, day, column and value, with data/raw,
data.dvc and params.yaml byte-identical afterwards; the corrected export is then accepted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.paths import ASSETS, Project
from pipelines.data.fetch import FetchError, fetch
from pipelines.data.ingest import parse_investing_csv
from tests.unit import fetch_helpers
from tests.unit.fetch_helpers import export, state

pytestmark = pytest.mark.unit
fetch_template = fetch_helpers.fetch_template  # a session fixture: the workspace copied

proj = fetch_helpers.project_copy  # a fresh copy of the template per test
source = fetch_helpers.source  # a full source folder per test


def edit(source: Path, asset: str, day: str, **fields: str) -> None:
    """Set fields (Price, Open, High, Low) of one day's row of the source export."""
    path = source / f"{asset}.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(f'"{day}"'))
    header = [c.strip('"\ufeff') for c in lines[0].split('","')]
    row = lines[i][1:-1].split('","')
    for column, value in fields.items():
        row[header.index(column)] = value
    lines[i] = '"' + '","'.join(row) + '"'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def drop(source: Path, asset: str, *days: str) -> None:
    """Remove days from the source export (a hole)."""
    path = source / f"{asset}.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not any(line.startswith(f'"{d}"') for d in days)]
    assert len(kept) == len(lines) - len(days)
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


# The workspace lacks each export's newest 5 rows: BTC and ETH 10/27 .. 10/31/2024, gold (no
# weekend rows) Friday 10/25 and 10/28 .. 10/31.
CLASSES: dict[str, tuple[Callable[[Path], None], str]] = {
    "negative price": (
        lambda s: edit(s, "btc", "10/29/2024", Low="-69,753.2"),
        "btc 2024-10-29 Low: '-69,753.2' is not a price (0 < price <= 1e+09 USD)",
    ),
    "zero price": (
        lambda s: edit(s, "eth", "10/30/2024", Price="0"),
        "eth 2024-10-30 Price: '0' is not a price",
    ),
    "European thousands separators (1,000x too small)": (
        lambda s: edit(
            s, "btc", "10/31/2024", Price="70.282", Open="72.344", High="72.686", Low="69.675"
        ),
        "btc 2024-10-31 Price: '70.282' is a log move of -6.94 from 2024-10-30's close 72,347.8",
    ),
    "a 100x BTC day": (
        lambda s: edit(
            s,
            "btc",
            "10/29/2024",
            Price="7,273,040.0",
            Open="6,995,720.0",
            High="7,356,940.0",
            Low="6,975,320.0",
        ),
        "btc 2024-10-29 Price: '7,273,040.0' is a log move of +4.64",
    ),
    "High < Low": (
        lambda s: edit(s, "btc", "10/28/2024", High="67,610.0", Low="70,203.4"),
        "btc 2024-10-28 High: '67,610.0' breaks High >= Low",
    ),
    "a 3-day BTC hole": (
        lambda s: drop(s, "btc", "10/28/2024", "10/29/2024", "10/30/2024"),
        "btc 2024-10-31 Date: 3 day(s) missing before it (from 2024-10-28)",
    ),
    "a 1-day ETH hole": (
        lambda s: drop(s, "eth", "10/29/2024"),
        "eth 2024-10-30 Date: 1 day(s) missing before it (from 2024-10-29): eth trades every day",
    ),
    "a hole between the data and the new rows": (
        lambda s: drop(s, "btc", "10/27/2024"),
        "btc 2024-10-28 Date: 1 day(s) missing before it (from 2024-10-27)",
    ),
    "gold missing a working week (weekends and holidays only)": (
        lambda s: drop(s, "gold", "10/28/2024", "10/29/2024", "10/30/2024"),
        "gold 2024-10-31 Date: 5 day(s) missing before it (from 2024-10-26): "
        "gold may miss at most 4 day(s) in a row",
    ),
}


@pytest.mark.parametrize("case", list(CLASSES))
def test_a_malformed_export_is_refused_whole_and_nothing_is_written(
    proj: Project, source: Path, case: str
) -> None:
    change, expected = CLASSES[case]
    change(source)
    before = state(proj)
    with pytest.raises(FetchError) as err:
        fetch(str(source), proj)  # a DVC project: dvc add would run after a merge
    message = str(err.value)
    assert expected in message, message
    assert "breaks the gate's row rules, refused whole (nothing was written)" in message
    assert message.startswith(f"{source}/")  # the file named
    assert state(proj) == before


def test_the_corrected_export_is_accepted_after_a_refused_one(proj: Project, source: Path) -> None:
    CLASSES["negative price"][0](source)
    before = state(proj)
    with pytest.raises(FetchError, match="is not a price"):
        fetch(str(source), proj)
    assert state(proj) == before
    (source / "btc.csv").write_text(export("btc"), encoding="utf-8")  # the corrected download
    merges = fetch(str(source), proj, dvc=False)
    assert [len(m.added) for m in merges] == [5, 5, 5]
    for asset in ASSETS:
        merged = parse_investing_csv((proj.raw / f"{asset}.csv").read_text(encoding="utf-8"))
        assert merged.equals(parse_investing_csv(export(asset))), asset
