"""docker-compose.yaml, the Dockerfile and their config, checked offline (no Docker engine)."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
BIN = Path(sys.executable).parent
PYTHON_CLIS = ("coinflow", "airflow", "mlflow")
# `$$` is a literal dollar; ${NAME}, ${NAME:?msg}, ${NAME:-default} and $NAME interpolate.
INTERPOLATION = re.compile(r"\$\$|\$\{(?P<braced>\w+)(?P<op>:?[-?+])?[^}]*\}|\$(?P<bare>\w+)")
REQUIRED = re.compile(r"\$\{\w+:\?[^}]+\}")
PG_URL = re.compile(
    r"postgresql(?:\+\w+)?://(?P<user>[^:@/]+):(?P<pw>[^@]+)@postgres:5432/(?P<db>\w+)"
)
AIRFLOW_PROBE = """
import contextlib, importlib, io, json, shlex, sys
from airflow.cli import cli_parser
from airflow.configuration import conf
from airflow.executors.executor_loader import ExecutorLoader

job, errors = json.load(sys.stdin), []
parser = cli_parser.get_parser()
for argv in job["argvs"]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(argv[1:])
    except SystemExit:
        errors.append(f"{shlex.join(argv)}: {err.getvalue().strip().splitlines()[-1:]}")
options = conf.configuration_description
for name, value in job["env"].items():
    section, key = (part.lower() for part in name.split("__")[1:])
    if key not in options.get(section, {}).get("options", {}):
        errors.append(f"{name}: Airflow has no option [{section}] {key}")
    elif key in ("executor", "auth_manager"):
        job["imports"].append(ExecutorLoader.executors.get(value, value))
for path in job["imports"]:
    module, _, attr = path.rpartition(".")
    try:
        getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        errors.append(f"cannot import {path}: {exc}")
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # anchors and merges resolve


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _interpolations(node: Any) -> Iterator[re.Match[str]]:
    for text in _strings(node):
        yield from (m for m in INTERPOLATION.finditer(text) if m.group() != "$$")


def _is_secret(name: str) -> bool:
    upper = name.upper()
    return any(w in upper for w in ("PASSWORD", "SECRET", "TOKEN", "KEY")) and not upper.endswith(
        ("_FILE", "_PATH")
    )


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _depends_on(service: dict[str, Any]) -> dict[str, Any]:
    deps = service.get("depends_on") or {}
    return dict.fromkeys(deps, None) if isinstance(deps, list) else deps


def _env_file(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = (ln.split("=", 1) for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
    return {key.strip(): value for key, value in pairs}


def _argv(command: str | list[str] | None) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def _calls(compose: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(where, argv) of every command and every healthcheck command, `$$` unescaped."""
    calls = []
    for name, svc in compose["services"].items():
        calls.append((name, _argv(svc.get("command"))))
        test = _as_list((svc.get("healthcheck") or {}).get("test"))
        if test and test[0] == "CMD":
            calls.append((f"{name} healthcheck", test[1:]))
        elif test and test[0] != "NONE":
            lexer = shlex.shlex(test[-1].replace("$$", "$"), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            segment: list[str] = []
            for token in [*lexer, ";"]:
                if token in (";", "&&", "||", "|"):
                    calls.append((f"{name} healthcheck", segment))
                    segment = []
                else:
                    segment.append(token)
    return [(where, argv) for where, argv in calls if argv]


def _click_error(root: Any, argv: list[str]) -> str | None:
    """Parse argv with a click command tree as the CLI would; None when it parses.

    Duck-typed: typer ships its own copy of click, whose classes are not click's.
    """
    cmd, rest, path = root, argv[1:], [argv[0]]
    while hasattr(cmd, "list_commands"):  # a group
        ctx = cmd.context_class(cmd, info_name=path[0])
        sub = cmd.get_command(ctx, rest[0]) if rest else None
        if sub is None:
            return f"{shlex.join(path)} has no sub-command {rest[:1]}"
        cmd, path = sub, [*path, rest.pop(0)]
    try:
        cmd.make_context(" ".join(path), rest)
    except Exception as exc:  # click's (or typer's click's) ClickException
        if not hasattr(exc, "format_message"):
            raise
        return f"{shlex.join(argv)}: {exc.format_message()}"
    return None


def _console_script(name: str) -> Any:
    found = {ep.value: ep for ep in entry_points(group="console_scripts", name=name)}
    assert len(found) == 1, f"`{name}` console scripts: {sorted(found) or 'none'}"
    assert (BIN / name).exists(), f"{name} is an entry point but not installed in {BIN}"
    return next(iter(found.values()))


def test_compose_file_matches_the_compose_spec() -> None:
    cmd = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_references_point_at_declared_services_volumes_networks_and_files(compose: dict) -> None:
    services, volumes = compose["services"], set(compose.get("volumes") or {})
    networks, used_volumes = {"default", *(compose.get("networks") or {})}, set()
    for name, svc in services.items():
        for target in _depends_on(svc):
            assert target in services and target != name, f"{name} depends on unknown {target}"
        for net in svc.get("networks") or []:
            assert net in networks, f"{name} uses undeclared network {net}"
        for mount in svc.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith((".", "/")):
                where = (REPO / source).resolve()
                assert where.exists(), f"{name} bind-mounts missing {source} (run `dvc pull`?)"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"
                used_volumes.add(source)
        for env_file in _as_list(svc.get("env_file")):
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert (REPO / path).is_file(), f"{name}: env_file {path} missing"
        if "build" in svc:
            build = svc["build"]
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / (dockerfile or "Dockerfile")).is_file(), f"{name}: no Dockerfile"
    assert used_volumes == volumes, f"declared but unused volumes: {volumes - used_volumes}"


def test_every_dependency_waits_on_a_condition_and_services_report_health(compose: dict) -> None:
    services = compose["services"]
    one_shot = {
        t
        for s in services.values()
        for t, spec in _depends_on(s).items()
        if (spec or {}).get("condition") == "service_completed_successfully"
    }
    for name, svc in services.items():
        for target, spec in _depends_on(svc).items():
            condition = (spec or {}).get("condition")
            assert condition in ("service_healthy", "service_completed_successfully"), (
                f"{name} → {target}: depends_on needs a condition, got {condition!r}"
            )
        if name in one_shot:
            assert svc.get("restart") in ("no", False), f"one-shot {name} must not restart"
            assert "healthcheck" not in svc, f"one-shot {name} never becomes healthy"
        else:
            test = _as_list((svc.get("healthcheck") or {}).get("test"))
            assert test and test[0] != "NONE", f"long-running {name} has no healthcheck"


def test_secrets_are_required_from_the_environment_never_defaulted(compose: dict) -> None:
    found = list(_interpolations(compose))
    assert not [m.group() for m in found if m["bare"]], "write ${VAR}, not $VAR"
    defaulted = {m.group() for m in found if _is_secret(m["braced"]) and m["op"] != ":?"}
    assert not defaulted, f"secrets must be ${{VAR:?set VAR}}: {sorted(defaulted)}"
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: write environment as a mapping"
        for files in _as_list(svc.get("env_file")):
            secrets = [k for k in _env_file(REPO / files) if _is_secret(k)]
            assert not secrets, f"{files} holds secrets {secrets}: put them in .env"
        for key, value in env.items():
            if _is_secret(key):
                assert REQUIRED.fullmatch(str(value)), f"{name}: {key}={value!r} is a literal"
    for text in _strings(compose):
        for url in PG_URL.finditer(text):
            assert REQUIRED.fullmatch(url["pw"]), f"literal password in {text!r}"


def test_postgres_init_creates_every_database_the_urls_name(compose: dict) -> None:
    postgres = compose["services"]["postgres"]
    mounts = [m for m in postgres["volumes"] if "/docker-entrypoint-initdb.d/" in m]
    assert mounts, "no init script mounted into /docker-entrypoint-initdb.d"
    script = (REPO / mounts[0].split(":")[0]).read_text(encoding="utf-8")
    created = set(re.findall(r"CREATE DATABASE (\w+)", script, flags=re.I))
    urls = [u for text in _strings(compose) for u in PG_URL.finditer(text)]
    assert {u["db"] for u in urls} == created == {"airflow", "mlflow", "optuna", "predictions"}
    assert {u["user"] for u in urls} == {postgres["environment"]["POSTGRES_USER"]}


@pytest.mark.parametrize("cli", ["coinflow", "mlflow"])
def test_click_commands_exist_in_their_cli(compose: dict, cli: str) -> None:
    import typer

    root = _console_script(cli).load()
    root = typer.main.get_command(root) if isinstance(root, typer.Typer) else root
    calls = [(where, argv) for where, argv in _calls(compose) if argv[0] == cli]
    assert calls, f"compose never runs {cli}"
    errors = [f"{where}: {err}" for where, argv in calls if (err := _click_error(root, argv))]
    assert not errors, "\n".join(errors)


def test_airflow_commands_and_settings_exist_in_airflow(compose: dict, tmp_path: Path) -> None:
    _console_script("airflow")
    calls = _calls(compose)
    env = {
        k: str(v)
        for svc in compose["services"].values()
        for k, v in (svc.get("environment") or {}).items()
        if k.startswith("AIRFLOW__")
    }
    job = {
        "argvs": [argv for _, argv in calls if argv[0] == "airflow"],
        "env": env,
        "imports": [argv[argv.index("--app") + 1] for _, argv in calls if argv[0] == "celery"],
    }
    assert job["argvs"] and job["imports"], "compose runs no airflow command / celery probe"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    result = subprocess.run(
        [sys.executable, "-c", AIRFLOW_PROBE],
        input=json.dumps(job),
        env={**run_env, "AIRFLOW_HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert not errors, "\n".join(errors)


def test_python_services_run_a_project_cli(compose: dict) -> None:
    for name, svc in compose["services"].items():
        if "build" in svc:  # the project image
            argv = _argv(svc.get("command"))
            assert argv and argv[0] in PYTHON_CLIS, f"{name} runs {argv!r}"


def test_mlflow_server_env_names_real_server_options(compose: dict) -> None:
    from mlflow.cli import cli

    server = cli.commands["server"]
    envvars = {p.envvar for p in server.params if p.envvar}
    svc = compose["services"]["mlflow"]
    names = [*svc["environment"]] + [k for f in svc["env_file"] for k in _env_file(REPO / f)]
    assert set(names) <= set(envvars), f"not `mlflow server` options: {set(names) - envvars}"


def test_mlflow_folder_holds_config_only() -> None:
    assert not list((REPO / "mlflow").rglob("*.py")), "mlflow/ would shadow the mlflow library"
    probe = "import importlib.util; print(importlib.util.find_spec('mlflow').origin)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "site-packages" in result.stdout, f"`import mlflow` at the repo root: {result.stdout}"


def _env_example() -> list[tuple[str, str, bool]]:
    """(name, value, documented) per variable; documented: its paragraph has a comment."""
    found = []
    for block in ENV_EXAMPLE.read_text(encoding="utf-8").split("\n\n"):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        commented = any(ln.startswith("#") for ln in lines)
        for ln in lines:
            if not ln.startswith("#"):
                name, _, value = ln.partition("=")
                found.append((name, value, commented))
    return found


def test_env_example_documents_exactly_the_interpolated_variables(compose: dict) -> None:
    example = _env_example()
    used = {m["braced"] for m in _interpolations(compose)}
    assert {name for name, _, _ in example} == used, "compose and .env.example disagree"
    assert all(documented for _, _, documented in example), "a variable without a comment"
    filled = [name for name, value, _ in example if _is_secret(name) and value]
    assert not filled, f".env.example must not ship secret values: {filled}"


def test_make_env_generates_every_secret_and_never_overwrites(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    target, script = tmp_path / ".env", REPO / "docker" / "make-env.sh"
    subprocess.run(["sh", str(script), str(target)], check=True, capture_output=True, timeout=60)
    env = _env_file(target)
    example = {name: value for name, value, _ in _env_example()}
    assert env.keys() == example.keys()
    for name, value in env.items():
        if _is_secret(name):
            assert re.fullmatch(r"[A-Za-z0-9_=-]{40,}", value), f"{name}={value!r}"
        else:
            assert value == example[name]
    Fernet(env["AIRFLOW_FERNET_KEY"].encode())  # raises on a malformed key
    assert len(env["AIRFLOW_JWT_SECRET"]) >= 64 and oct(target.stat().st_mode)[-3:] == "600"
    again = subprocess.run(["sh", str(script), str(target)], capture_output=True, timeout=60)
    assert again.returncode != 0 and _env_file(target) == env


def test_entrypoint_writes_the_airflow_passwords_file_then_execs(
    compose: dict, tmp_path: Path
) -> None:
    api_env = compose["services"]["airflow-apiserver"]["environment"]
    assert {"AIRFLOW_ADMIN_USER", "AIRFLOW_ADMIN_PASSWORD"} <= api_env.keys()
    password_file = tmp_path / "passwords.json"
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "AIRFLOW_ADMIN_USER": "alice",
        "AIRFLOW_ADMIN_PASSWORD": 'p@ss "w:rd',
        "HOME": str(tmp_path),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
    }
    cmd = ["sh", str(REPO / "docker" / "entrypoint.sh"), "sh", "-c", 'echo "ran $0"', "arg"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "ran arg\n", result.stderr
    assert json.loads(password_file.read_text()) == {"alice": 'p@ss "w:rd'}
    assert oct(password_file.stat().st_mode)[-3:] == "600"
    password_file.unlink()
    del env["AIRFLOW_ADMIN_PASSWORD"]  # every other Airflow component: no file, same exec
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout == "ran arg\n" and not password_file.exists()


def _dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text(encoding="utf-8"))
    lines = (ln.strip() for ln in text.splitlines())
    return [
        (ln.split()[0].upper(), ln.partition(" ")[2].strip())
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def _dockerignored(path: str) -> bool:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    parts = Path(path.rstrip("/")).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in (ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")):
        if any(fnmatch(p, pattern.lstrip("!").rstrip("/")) for p in prefixes):
            ignored = not pattern.startswith("!")  # the last matching line wins
    return ignored


def test_dockerfile_installs_cpu_torch_then_the_project_and_runs_as_non_root(
    compose: dict,
) -> None:
    steps = _dockerfile()
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert steps[0] == ("FROM", "python:3.11-slim")
    pips = [i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install" in args]
    torch_run = steps[pips[0]][1]
    project_at = next(i for i in pips if re.search(r"pip install \.(\s|$)", steps[i][1]))
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_run and project_at > pips[0]
    pin = re.search(r"torch==(\S+)", torch_run)
    torch_dep = next(d for d in project["project"]["dependencies"] if d.startswith("torch"))
    assert pin and SpecifierSet(torch_dep.removeprefix("torch")).contains(pin[1])
    assert [a for op, a in steps if op == "USER"][-1] not in ("", "root", "0")

    workdir, env = "/", dict[str, str]()
    copied: dict[str, tuple[str, int]] = {}  # source → (absolute destination, step)
    for i, (op, args) in enumerate(steps):
        if op == "WORKDIR":
            workdir = posixpath.join(workdir, args)
        elif op == "ENV":
            for key, _, value in (pair.partition("=") for pair in shlex.split(args)):
                env[key] = value
        elif op == "COPY":
            *sources, dest = [a for a in shlex.split(args) if not a.startswith("--")]
            for src in sources:
                assert (REPO / src).exists(), f"COPY {src}: no such file in the build context"
                assert not _dockerignored(src), f"COPY {src}: excluded by .dockerignore"
                into = posixpath.join(workdir, dest)
                is_dir = dest.endswith("/") and (REPO / src).is_file()
                copied[src.rstrip("/")] = (
                    posixpath.join(into, Path(src).name) if is_dir else posixpath.normpath(into),
                    i,
                )
    assert workdir == "/opt/coinflow"
    needed = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    for path in [*needed, "pyproject.toml", project["project"]["readme"]]:
        assert path in copied and copied[path][1] < project_at, f"`pip install .` lacks {path}"
    entrypoint = json.loads(next(a for op, a in steps if op == "ENTRYPOINT"))
    assert copied["docker/entrypoint.sh"][0] == entrypoint[0]

    airflow = compose["services"]["airflow-scheduler"]
    assert airflow["environment"]["AIRFLOW__CORE__DAGS_FOLDER"] == copied["dags"][0]
    assert f"airflow-logs:{env['AIRFLOW_HOME']}/logs" in airflow["volumes"]
    mlflow = compose["services"]["mlflow"]
    artifacts = mlflow["command"][mlflow["command"].index("--artifacts-destination") + 1]
    assert f"mlflow-artifacts:{artifacts}" in mlflow["volumes"]
    for path in (".venv", ".git", ".env", "data", "mlruns", "reports"):
        assert _dockerignored(path), f".dockerignore lets {path} into the build context"


def test_two_celery_workers_on_redis_and_artifacts_proxied_by_mlflow(compose: dict) -> None:
    services = compose["services"]
    worker = services["airflow-worker"]
    assert _argv(worker["command"])[:3] == ["airflow", "celery", "worker"]
    assert worker["deploy"]["replicas"] >= 2  # the mapped sweep tasks run side by side
    for name, svc in services.items():
        if name.startswith("airflow-"):
            env = svc["environment"]
            assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
            assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/"), name
            assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql"), name
    argv = _argv(services["mlflow"]["command"])
    assert "--serve-artifacts" in argv and "--default-artifact-root" not in argv
    destination = argv[argv.index("--artifacts-destination") + 1]
    holders = {
        name
        for name, svc in services.items()
        for mount in svc.get("volumes") or []
        if mount.startswith("mlflow-artifacts:")
    }
    assert holders == {"mlflow"}  # clients go through the server, never to the files
    assert f"mlflow-artifacts:{destination}" in services["mlflow"]["volumes"]
