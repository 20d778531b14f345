"""Imports point down the layers only: every import of every module, at module level or inside a
function, names a layer at or below its own; the kernel imports nothing of ours but itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]

# Lowest first. A module may import its own layer and any layer before it, never one after.
LAYERS = [
    "forecasting",
    "core",
    "pipelines.data",
    "pipelines.gate",
    "pipelines.training",
    "pipelines.sweep",
    "registry",
    "serving",
    "simulation",
    "cli",
]
ENTRY_POINTS = ("dags",)  # thin: may import any layer (nothing imports them)
ISOLATED = ("ui",)  # HTTP only: imports nothing of the project
PROJECT = {name.split(".")[0] for name in LAYERS} | set(ISOLATED) | {"coinflow_common"}
# What the kernel may import besides itself: it ships alone with every registered version.
KERNEL_THIRD_PARTY = {"numpy", "pandas", "scipy", "torch"}


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (the longest matching prefix)."""
    found = [lay for lay in LAYERS if module == lay or module.startswith(lay + ".")]
    if not found and module.split(".")[0] == "pipelines":
        return "pipelines"  # the package itself (its __init__)
    return max(found, key=len) if found else None


def rank(layer: str) -> int:
    if layer == "pipelines":
        return LAYERS.index("pipelines.data")
    return LAYERS.index(layer)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str | None = None) -> list[tuple[int, str, int]]:
    """(line, absolute module name, relative level) of every import in a file (module `name`)."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
                out.append((node.lineno, name, node.level))
            elif node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
                # `from pipelines import x` names a subpackage: judge the most specific name
                out += [(node.lineno, n if layer_of(n) else node.module, 0) for n in names]
    return out


def project_files(*tops: str) -> list[Path]:
    return sorted(
        p for top in tops for p in (REPO / top).rglob("*.py") if "migrations" not in p.parts
    )


def upward_imports(files: dict[Path, str]) -> list[str]:
    """Every import that points at a higher layer (or at the UI, from anywhere else), of files
    given as {path: module name}."""
    bad = []
    for path, module in files.items():
        mine = layer_of(module)
        assert mine is not None, path
        for line, name, _ in imports(path, module):
            if name.split(".")[0] not in PROJECT:
                continue
            target = layer_of(name)
            where = f"{module}:{line} imports {name}"
            if target is None or rank(target) > rank(mine):
                bad.append(where)
    return bad


def test_every_import_points_down() -> None:
    files = project_files(*{lay.split(".")[0] for lay in LAYERS})
    assert len(files) > 80  # the whole tree was read
    assert not upward_imports({p: module_name(p) for p in files})


def test_the_ui_imports_nothing_of_the_project() -> None:
    bad = [
        f"{p.relative_to(REPO)}:{line} imports {name}"
        for p in project_files("ui")
        for line, name, _ in imports(p)
        if name.split(".")[0] in PROJECT - {"ui"}
    ]
    assert not bad


def test_dags_import_no_other_dag_file_but_their_shared_module() -> None:
    for path in project_files(*ENTRY_POINTS):
        for _, name, _ in imports(path):
            assert not name.startswith("dags"), (path, name)


def test_the_kernel_imports_only_itself_relatively_and_numeric_libraries() -> None:
    """A version ships exactly forecasting/ and is imported under a private name (core.kernels):
    an absolute import of itself or of anything of ours would escape that copy."""
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for path in project_files("forecasting"):
        for line, name, level in imports(path):
            top = name.split(".")[0]
            if level:
                continue
            if top not in stdlib | KERNEL_THIRD_PARTY or top == "logging":
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not bad


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The rule can fail: a function-level import of core in the kernel, and of serving in a
    pipeline stage, are both caught; a downward one is not."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import numpy\nfrom core import tags\n\ndef f():\n    from serving.app import create_app\n"
    )
    assert upward_imports({probe: "forecasting.probe"}) == [
        "forecasting.probe:2 imports core.tags",
        "forecasting.probe:5 imports serving.app.create_app",
    ]
    assert upward_imports({probe: "pipelines.training.probe"}) == [
        "pipelines.training.probe:5 imports serving.app.create_app"
    ]
    assert upward_imports({probe: "simulation.probe"}) == []
