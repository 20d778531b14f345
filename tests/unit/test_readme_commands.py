"""Every command in the README's shell blocks runs as written, as far as it can be checked without
running it: each `coinflow` line parses against the real CLI (its sub-commands and options), each
`make` target, `dvc repro` stage, script and benchmark exists, and each `curl` that posts a body
says it is JSON (without the header FastAPI answers 422) and names a route the API has."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)
# Placeholders a reader replaces: an optional part in [brackets], a <name>.
OPTIONAL, NAMED = re.compile(r"\s\[[^\]]*\]"), re.compile(r"<[a-z_]+>")


def commands() -> list[list[str]]:
    """Every command of every ```sh block: comments dropped, `\\` continuations joined, `&&`
    chains split, placeholders filled in."""
    out = []
    for block in BLOCK.findall(README.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = NAMED.sub("abc123", OPTIONAL.sub("", line))
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                out.append(words[:cut])
                words = words[cut + 1 :]
    return out


def of(program: str) -> list[list[str]]:
    return [c[1:] for c in commands() if c and c[0] in (program, f".venv/bin/{program}")]


def test_the_readme_has_commands_of_each_kind() -> None:
    assert len(of("coinflow")) >= 20 and of("curl") and of("make") and of("dvc")


@pytest.mark.parametrize("args", of("coinflow"), ids=" ".join)
def test_each_coinflow_command_parses(args: list[str]) -> None:
    """The line with --help appended: click resolves every sub-command and refuses an option
    the command does not have before it prints the help (option values are not run)."""
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_make_targets_dvc_stages_and_scripts_exist() -> None:
    import yaml

    makefile = (REPO / "Makefile").read_text()
    for args in of("make"):
        assert re.search(rf"^{args[0]}:", makefile, re.M), f"make {args[0]}"
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for args in of("dvc"):
        if args[0] == "repro" and len(args) > 1:
            assert args[1] in stages, f"dvc repro {args[1]}"
    for program in ("python", "sh"):
        for args in of(program):
            assert (REPO / args[0]).is_file(), f"{program} {args[0]}"


def test_each_curl_sends_json_to_a_route_the_api_has() -> None:
    from serving.app import create_app
    from serving.settings import ServingSettings

    settings = ServingSettings(
        coinflow_model_name="btc-forecaster",
        mlflow_tracking_uri="sqlite:///unused.db",
        coinflow_prediction_log_url="",
    )
    routes = {getattr(r, "path", "") for r in create_app(settings).routes}
    for args in of("curl"):
        url = next(a for a in args if a.startswith("http"))
        path = re.sub(r"^https?://[^/]+", "", url).split("?")[0]
        assert path in routes, url
        if "-d" in args:
            headers = [args[i + 1].lower() for i, a in enumerate(args) if a == "-H"]
            assert "content-type: application/json" in headers, args
            body = args[args.index("-d") + 1]
            assert body.startswith("@") or json.loads(body) is not None, body
