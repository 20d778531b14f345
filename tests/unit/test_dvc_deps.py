"""dvc.yaml declares every project file its stages import, and the code has no import cycles."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "registry", "serving", "ui")
# The `coinflow` command's `serve` and `ui` sub-commands: stages import them, never run them.
NOT_RUN_BY_STAGES = ("serving", "ui")


def module_file(name: str) -> Path | None:
    """The file of a project module (`pipelines.features` → pipelines/features.py), if any."""
    parts = name.split(".")
    for candidate in (
        REPO.joinpath(*parts).with_suffix(".py"),
        REPO.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file() and parts[0] in PACKAGES:
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports anywhere (module level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def closure(entry: Path) -> set[Path]:
    """The project files `entry` imports, transitively (a package import runs its __init__)."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def stage_entry(cmd: str) -> Path:
    """The module a stage command runs: the `coinflow` script's module, or `python -m X`."""
    if match := re.search(r"python3?\s+-m\s+([\w.]+)", cmd):
        found = module_file(match.group(1))
    else:
        assert cmd.split()[0] == "coinflow", f"stage command {cmd!r} is neither coinflow nor -m"
        scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
        found = module_file(scripts["coinflow"].split(":")[0])
    assert found is not None, cmd
    return found


def stages() -> dict[str, dict[str, object]]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    return {name: stage.get("do", stage) for name, stage in spec["stages"].items()}


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_cover_every_project_file_it_imports(name: str) -> None:
    stage = stages()[name]
    deps = [str(d).rstrip("/") for d in stage.get("deps", [])]  # type: ignore[attr-defined]

    def covered(path: Path) -> bool:
        rel = path.relative_to(REPO).as_posix()
        return any(rel == d or rel.startswith(d + "/") for d in deps)

    imported = closure(stage_entry(str(stage["cmd"])))
    missing = sorted(
        p.relative_to(REPO).as_posix()
        for p in imported
        if p.relative_to(REPO).parts[0] not in NOT_RUN_BY_STAGES and not covered(p)
    )
    assert not missing, f"stage {name} imports files its deps do not cover: {missing}"
    assert len(imported) > 10  # the closure really was followed


def test_the_check_sees_a_missing_dep() -> None:
    """The rule above can fail: a stage that lists one file of what it imports is caught."""
    imported = closure(module_file("pipelines.features"))  # type: ignore[arg-type]
    assert REPO / "pipelines" / "gate_record.py" in imported  # features reads the gate's record
    assert REPO / "pipelines" / "paths.py" in imported


def test_no_import_cycles_between_project_modules() -> None:
    """Policy apart from orchestration: no module imports (even lazily) one that imports it."""
    files = {p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    graph = {f: closure_step(f) & files for f in files}
    cycles = []
    for start in sorted(files):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start and len(path) > 1:
                    cycles.append(" → ".join(p.relative_to(REPO).as_posix() for p in path))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, cycles[:5]


def closure_step(path: Path) -> set[Path]:
    """The project files one file imports directly (its own package's __init__ excluded)."""
    out = set()
    for name in imported_modules(path):
        found = module_file(name)
        if found is not None and found != path and found.name != "__init__.py":
            out.add(found)
    return out
