"""dvc.yaml declares exactly the code its stages run: every project file a stage's command imports
is covered by its deps, and no code dep names a folder or file the command does not import (so
editing serving/, ui/, simulation/, dags/ or a registry report re-runs no stage). The code has
no import cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("forecasting", "core", "pipelines", "registry", "serving", "simulation", "cli", "ui")
ENTRY = REPO / "cli" / "main.py"  # what `coinflow ...` runs before the command's own module


def module_file(name: str) -> Path | None:
    """The file of a project module (`core.params` → core/params.py), if any."""
    parts = name.split(".")
    for candidate in (
        REPO.joinpath(*parts).with_suffix(".py"),
        REPO.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file() and parts[0] in PACKAGES:
            return candidate
    return None


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_names(nodes: list[ast.stmt], package: str) -> set[str]:
    """Modules imported by these statements and everything inside them (relative imports made
    absolute; `if TYPE_CHECKING:` blocks skipped: they never run)."""
    names: set[str] = set()
    todo: list[ast.AST] = list(nodes)
    while todo:
        node = todo.pop()
        if _type_checking(node):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return names


def package_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1])  # a module's package; an __init__'s own package


def files_of(names: set[str]) -> set[Path]:
    """The project files a set of imported names loads (each package's __init__ included)."""
    out = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            found = module_file(".".join(parts[:i]))
            if found is not None:
                out.add(found)
    return out


def closure_from(start: set[Path], skip: frozenset[Path] = frozenset()) -> set[Path]:
    """`start` and every project file they import, transitively (`skip`: never expanded)."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen or path in skip:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        todo.extend(files_of(import_names(tree.body, package_of(path))) - seen)
    return seen


def command_target(cmd: str) -> str:
    """ "module:function" a `coinflow ...` stage command runs (cli.main's table)."""
    from cli.main import COMMANDS

    words = cmd.split()
    assert words[0] == "coinflow", f"stage command {cmd!r} is not a coinflow command"
    table: object = COMMANDS
    for word in words[1:]:
        if not isinstance(table, dict) or word.startswith("-") or "$" in word:
            break
        table = table[word] if word in table else table
        if isinstance(table, str):
            module, attribute = table.split(":")
            if module.endswith(".cli") and attribute == "app":  # a typer group: its command
                return f"{module}:{words[words.index(word) + 1]}"
            return table
    raise AssertionError(f"{cmd!r} names no command of cli.main.COMMANDS")


def command_closure(cmd: str) -> set[Path]:
    """Project files a stage command runs: cli/main.py, the command's module at module level
    plus what its own function imports, and everything those import."""
    module, function = command_target(cmd).split(":")
    path = module_file(module)
    assert path is not None, module
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.ClassDef)]
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    assert body, f"{module} has no function {function}"
    names = import_names(top + body, package_of(path))
    start = {ENTRY} | files_of({module}) | files_of(names)
    return {path} | closure_from(start, skip=frozenset({path}))  # its other commands: not run


def stages() -> dict[str, dict[str, object]]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    return {name: stage.get("do", stage) for name, stage in spec["stages"].items()}


def code_deps(stage: dict[str, object]) -> list[str]:
    """The deps of a stage that name code (a package folder, or a file inside one)."""
    deps = [str(d).rstrip("/") for d in stage.get("deps", [])]  # type: ignore[attr-defined]
    return [d for d in deps if d.split("/")[0] in PACKAGES]


def docstring_only(path: Path) -> bool:
    """A package __init__ that defines nothing: editing it cannot change a stage's result."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def uncovered(imported: set[Path], deps: list[str]) -> list[str]:
    def covered(path: Path) -> bool:
        rel = path.relative_to(REPO).as_posix()
        return any(rel == d or rel.startswith(d + "/") for d in deps)

    return sorted(
        p.relative_to(REPO).as_posix()
        for p in imported
        if not covered(p) and not (p.name == "__init__.py" and docstring_only(p))
    )


def unused(imported: set[Path], deps: list[str]) -> list[str]:
    rels = [p.relative_to(REPO).as_posix() for p in imported]
    return [d for d in deps if not any(r == d or r.startswith(d + "/") for r in rels)]


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_cover_every_project_file_it_imports(name: str) -> None:
    stage = stages()[name]
    imported = command_closure(str(stage["cmd"]))
    missing = uncovered(imported, code_deps(stage))
    assert not missing, f"stage {name} imports files its deps do not cover: {missing}"
    assert len(imported) > 5  # the closure really was followed


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_name_only_code_the_command_imports(name: str) -> None:
    stage = stages()[name]
    extra = unused(command_closure(str(stage["cmd"])), code_deps(stage))
    assert not extra, f"stage {name} depends on code its command never imports: {extra}"


def test_no_stage_depends_on_serving_ui_simulation_dags_or_reports() -> None:
    for name, stage in stages().items():
        imported = {p.relative_to(REPO).as_posix() for p in command_closure(str(stage["cmd"]))}
        for folder in ("serving/", "ui/", "simulation/", "dags/"):
            assert not any(r.startswith(folder) for r in imported), (name, folder)
        assert "registry/report.py" not in imported, name
        assert not any(d.startswith(("serving", "ui", "simulation", "dags")) for d in stage["deps"])  # type: ignore[attr-defined]


def test_the_checks_see_a_missing_and_an_extra_dep() -> None:
    """Both rules can fail: a stage listing one file of what it imports, or a folder it never
    imports, is caught."""
    imported = command_closure("coinflow data features")
    assert REPO / "core" / "gate_record.py" in imported  # features reads the gate's record
    assert REPO / "forecasting" / "features.py" in imported
    assert "core/gate_record.py" in uncovered(imported, ["pipelines/training"])
    assert unused(imported, ["core", "serving"]) == ["serving"]
    assert REPO / "pipelines" / "data" / "fetch.py" not in command_closure(
        "coinflow data version v0.1"
    )


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
    """The project files one file imports directly (package __init__ files excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for name in import_names(tree.body, package_of(path)):
        found = module_file(name)
        if found is not None and found != path and found.name != "__init__.py":
            out.add(found)
    return out


def test_every_stage_runs_a_coinflow_command_with_exact_params() -> None:
    for name, stage in stages().items():
        assert re.match(r"coinflow\s", str(stage["cmd"])), name
