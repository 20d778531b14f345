"""`coinflow data fetch`: newer exports merged into data/raw from a directory or over HTTP, then
`dvc add`ed; all or nothing (a failing `dvc add`/push restores every file); rewritten history
refused with nothing written; nothing new changes nothing; the next steps it prints work."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from core.params import load_params
from core.paths import ASSETS, Project
from pipelines.data.fetch import MAX_EXPORT_BYTES, FetchError, fetch, merge_export
from pipelines.data.ingest import parse_investing_csv
from tests.unit import fetch_helpers
from tests.unit.fetch_helpers import REPO, cli, copy_project, export, state

pytestmark = pytest.mark.unit
fetch_template = fetch_helpers.fetch_template  # session fixtures: the workspaces copied
dvc_template = fetch_helpers.dvc_template


proj = fetch_helpers.project_copy  # a fresh copy of the template per test


@pytest.fixture
def dvc_proj(dvc_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project whose data.dvc records its data/raw (dvc add run)."""
    return copy_project(dvc_template, tmp_path / "project", monkeypatch)


source = fetch_helpers.source  # a full source folder per test


def raw_bytes(proj: Project) -> dict[str, bytes]:
    return {a: (proj.raw / f"{a}.csv").read_bytes() for a in ASSETS}


@pytest.mark.slow  # dvc add + dvc push: ~8 s of CPU
def test_new_days_are_merged_added_to_dvc_and_pushed(
    dvc_proj: Project, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = dvc_proj
    remote = tmp_path / "remote"
    (proj.root / ".dvc" / "config.local").write_text(f"['remote \"mine\"']\n    url = {remote}\n")
    monkeypatch.setenv("COINFLOW_DVC_PUSH_REMOTE", "mine")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no dvc on PATH: this Python's dvc
    assert (proj.root / "data.dvc").read_bytes() != (REPO / "data.dvc").read_bytes()
    code, out = cli("--source", str(source))
    assert code == 0, out
    assert "btc: 5 new day(s) 2024-10-27 .. 2024-10-31" in out
    assert "dvc add data/raw: data.dvc updated; pushed to remote 'mine'" in out
    recorded = yaml.safe_load((proj.root / "data.dvc").read_text())["outs"][0]["md5"]
    listing = json.loads((remote / "files" / "md5" / recorded[:2] / recorded[2:]).read_text())
    pushed = {entry["relpath"]: entry["md5"] for entry in listing}  # what data.dvc records
    for asset in ASSETS:
        merged = parse_investing_csv((proj.raw / f"{asset}.csv").read_text(encoding="utf-8"))
        assert merged.equals(parse_investing_csv(export(asset))), asset
        md5 = hashlib.md5((proj.raw / f"{asset}.csv").read_bytes()).hexdigest()
        assert pushed[f"{asset}.csv"] == md5, asset
        assert (remote / "files" / "md5" / md5[:2] / md5[2:]).is_file(), asset
    after = state(proj)
    code, out = cli("--source", str(source))  # again: nothing new, nothing written
    assert code == 0 and "nothing new: data/raw unchanged" in out
    assert state(proj) == after


@pytest.mark.slow  # dvc add (+ a failing push): up to ~6 s of CPU
@pytest.mark.parametrize("failure", ["push to a remote that does not exist", "corrupt .dvc/config"])
def test_a_failing_dvc_add_or_push_restores_every_file(
    dvc_proj: Project, source: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    proj = dvc_proj
    if failure.startswith("push"):  # dvc add succeeds and rewrites data.dvc; the push fails
        monkeypatch.setenv("COINFLOW_DVC_PUSH_REMOTE", "nowhere")
    else:  # dvc add itself fails, after the raw files were replaced
        with (proj.root / ".dvc" / "config").open("a") as config:
            config.write("[core\nbroken\n")
    before = state(proj)
    with pytest.raises(FetchError) as err:
        fetch(str(source), proj)
    message = str(err.value)
    assert "failed" in message and "restored byte for byte: nothing was changed" in message
    assert ("push -r nowhere" if failure.startswith("push") else "dvc add data/raw") in message
    assert state(proj) == before


def test_outside_a_dvc_project_dvc_add_is_refused_before_anything_is_written(
    proj: Project, source: Path
) -> None:
    (proj.root / ".dvc").rename(proj.root / "not-dvc")
    before = state(proj)
    code, out = cli("--source", str(source))
    assert code == 1 and "is not a DVC project (no .dvc)" in out and "--no-dvc" in out, out
    assert state(proj) == before
    code, out = cli("--source", str(source), "--no-dvc")  # the way out it names works
    assert code == 0 and "btc: 5 new day(s)" in out and "data.dvc not updated" in out


def test_the_printed_next_steps_work_on_a_fresh_clone(proj: Project, source: Path) -> None:
    """Issue 26: `data cut --use` right after a fetch, with no data/interim (a fresh clone)."""
    from cli.main import app

    params = proj.params_file.read_text()
    lines = [line for line in params.splitlines(keepends=True) if "v0.3:" not in line]
    proj.params_file.write_text("".join(lines).replace("version: v0.3 ", "version: v0.2 "))
    assert not proj.interim.exists()
    code, out = cli("--source", str(source), "--no-dvc")
    assert code == 0 and "next: `dvc add data/raw`, `coinflow data cut --use`" in out, out
    result = CliRunner().invoke(app, ["data", "cut", "--use"])
    assert result.exit_code == 0, result.output
    assert "v0.3: cut-off 2024-10-31 (now data.version)" in result.output
    assert load_params(proj.params_file).data.version == "v0.3"


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
        server.handle_error = lambda *a: None  # type: ignore[method-assign]  # a refused body
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()

    for url in serve():
        monkeypatch.setenv("COINFLOW_DATA_SOURCE", url)
        code, out = cli("--no-dvc")
        assert code == 0 and "eth: 5 new day(s)" in out, out
        code, out = cli("--no-dvc")
        assert code == 0 and "nothing new" in out
        before = state(proj)
        with (source / "eth.csv").open("r+b") as big:  # sparse: no disk, no memory
            big.truncate(MAX_EXPORT_BYTES + 1)
        code, out = cli("--no-dvc")
        assert code == 1 and f"eth.csv: {MAX_EXPORT_BYTES + 1} bytes, over the" in out, out
        (source / "eth.csv").write_text(export("eth"), encoding="utf-8")
        (source / "gold.csv").unlink()  # the server answers 404 for one asset: refused
        code, out = cli("--no-dvc")
        assert code == 1 and "gold.csv" in out and "404" in out, out
        assert state(proj) == before


def test_rewritten_history_is_refused_naming_asset_day_and_values(
    proj: Project, source: Path
) -> None:
    lines = export("btc").splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith('"10/01/2024"'))
    lines[i] = lines[i].replace('"60,835.5"', '"61,000.0"', 1)
    assert '"61,000.0"' in lines[i]
    (source / "btc.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = state(proj)
    code, out = cli("--source", str(source))
    assert code == 1 and "fetch refused" in out
    assert "btc 2024-10-01" in out and "60,835.5" in out and "61,000.0" in out
    assert state(proj) == before  # eth and gold were fine: still nothing written


def test_the_newest_day_may_be_revised_and_is_reported() -> None:
    rules = load_params(REPO / "params.yaml").validate_
    old = export("btc", drop_newest=1)  # newest day: 10/30/2024
    lines = export("btc").splitlines()
    j = next(n for n, line in enumerate(lines) if line.startswith('"10/30/2024"'))
    lines[j] = '"10/30/2024","72,400.0","72,732.5","72,950.0","71,460.0","99.05K","-0.45%"'
    merge = merge_export("btc", old, "\n".join(lines) + "\n", "src", rules)
    assert str(merge.revised) == "2024-10-30" and [str(d) for d in merge.added] == ["2024-10-31"]
    assert merge.revision == {"Price": (72347.8, 72400.0), "High": (72907.4, 72950.0)}
    assert merge.text.startswith("\ufeff") and '"10/30/2024","72,400.0"' in merge.text
    lines[j] = '"10/30/2024","72,400.0","72,732.5","70,950.0","71,460.0","99.05K","-0.45%"'
    with pytest.raises(FetchError, match=r"btc 2024-10-30 High: '70,950.0' breaks High >= Low"):
        merge_export("btc", old, "\n".join(lines) + "\n", "src", rules)  # a revision is checked


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
    before = state(proj)
    code, out = cli("--source", str(source))
    assert code == 1 and words in out and f"{source}/btc.csv" in out, out
    assert state(proj) == before
