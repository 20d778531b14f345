"""`coinflow data fetch`: newer exports merged into data/raw from a directory or over HTTP;
rewritten history refused with nothing written; nothing new changes nothing."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.paths import ASSETS, Project
from pipelines.data.fetch import merge_export
from pipelines.data.ingest import parse_investing_csv

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def export(asset: str, drop_newest: int = 0) -> str:
    """The real export of an asset without its newest `drop_newest` rows (BOM, header kept)."""
    lines = (REPO / "data" / "raw" / f"{asset}.csv").read_text(encoding="utf-8").splitlines()
    return "\n".join([lines[0], *lines[1 + drop_newest :]]) + "\n"


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project whose data/raw lacks the newest 5 rows of every real export."""
    proj = Project(tmp_path / "project")
    proj.raw.mkdir(parents=True)
    for asset in ASSETS:
        (proj.raw / f"{asset}.csv").write_text(export(asset, drop_newest=5), encoding="utf-8")
    monkeypatch.setenv("COINFLOW_WORKDIR", str(proj.root))
    return proj


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The full real exports, as a newer download would bring them."""
    folder = tmp_path / "source"
    folder.mkdir()
    for asset in ASSETS:
        (folder / f"{asset}.csv").write_text(export(asset), encoding="utf-8")
    return folder


def cli(*args: str) -> tuple[int, str]:
    from cli.main import app

    result = CliRunner().invoke(app, ["data", "fetch", "--no-dvc", *args])
    return result.exit_code, result.output


def raw_bytes(proj: Project) -> dict[str, bytes]:
    return {a: (proj.raw / f"{a}.csv").read_bytes() for a in ASSETS}


def test_new_days_are_merged_and_parse_as_the_real_export(proj: Project, source: Path) -> None:
    code, out = cli("--source", str(source))
    assert code == 0, out
    assert "btc: 5 new day(s) 2024-10-27 .. 2024-10-31" in out
    for asset in ASSETS:
        merged = parse_investing_csv((proj.raw / f"{asset}.csv").read_text(encoding="utf-8"))
        real = parse_investing_csv(export(asset))
        assert merged.equals(real), asset
    before = raw_bytes(proj)
    code, out = cli("--source", str(source))  # again: nothing new, nothing written
    assert code == 0 and "nothing new: data/raw unchanged" in out
    assert raw_bytes(proj) == before


def test_over_http_with_the_source_from_the_environment(
    proj: Project, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = type(
        "Quiet",
        (http.server.SimpleHTTPRequestHandler,),
        {"log_message": lambda *a: None},
    )

    def serve() -> Iterator[str]:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(source))
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()

    for url in serve():
        monkeypatch.setenv("COINFLOW_DATA_SOURCE", url)
        code, out = cli()
        assert code == 0 and "eth: 5 new day(s)" in out, out
        code, out = cli()
        assert code == 0 and "nothing new" in out
        (source / "gold.csv").unlink()  # the server answers 404 for one asset: refused
        before = raw_bytes(proj)
        code, out = cli()
        assert code == 1 and "gold.csv" in out and "404" in out, out
        assert raw_bytes(proj) == before


def test_rewritten_history_is_refused_naming_asset_day_and_values(
    proj: Project, source: Path
) -> None:
    lines = export("btc").splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith('"10/01/2024"'))
    lines[i] = lines[i].replace('"60,835.5"', '"61,000.0"', 1)
    assert '"61,000.0"' in lines[i]
    (source / "btc.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = raw_bytes(proj)
    code, out = cli("--source", str(source))
    assert code == 1 and "fetch refused" in out
    assert "btc 2024-10-01" in out and "60,835.5" in out and "61,000.0" in out
    assert raw_bytes(proj) == before  # eth and gold were fine: still nothing written


def test_the_newest_day_may_be_revised_and_is_reported() -> None:
    old = export("btc", drop_newest=1)  # newest day: 10/30/2024
    lines = export("btc").splitlines()
    j = next(n for n, line in enumerate(lines) if line.startswith('"10/30/2024"'))
    lines[j] = '"10/30/2024","72,400.0","72,732.5","72,950.0","71,460.0","99.05K","-0.45%"'
    merge = merge_export("btc", old, "\n".join(lines) + "\n", "src")
    assert str(merge.revised) == "2024-10-30" and [str(d) for d in merge.added] == ["2024-10-31"]
    assert merge.revision == {"Price": (72347.8, 72400.0), "High": (72907.4, 72950.0)}
    assert merge.text.startswith("\ufeff") and '"10/30/2024","72,400.0"' in merge.text


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.replace('"72,343.7"', '"7_2,343.7"', 1), "cannot parse"),
        (lambda t: t + '"10/31/2024","1","1","1","1","","0%"\n', "appears twice"),
        (lambda t: t.replace('"Price"', '"Close"', 1), "header"),
    ],
)
def test_a_bad_export_is_refused_by_the_ingest_rules(
    proj: Project, source: Path, change: object, words: str
) -> None:
    text = (source / "btc.csv").read_text(encoding="utf-8")
    (source / "btc.csv").write_text(change(text), encoding="utf-8")  # type: ignore[operator]
    before = raw_bytes(proj)
    code, out = cli("--source", str(source))
    assert code == 1 and words in out, out
    assert raw_bytes(proj) == before
