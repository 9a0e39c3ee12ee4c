"""The house plan holds: no Qt in the engine, API or CLI; no import cycles; one vocabulary."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "denoise_studio"


@pytest.mark.parametrize(
    "module", ["denoise_studio", "denoise_studio.engine", "denoise_studio.api", "denoise_studio.cli"]
)
def test_the_engine_api_and_cli_never_import_qt_or_napari(module):
    code = (
        f"import sys, {module}, denoise_studio.engine.run, denoise_studio.engine.persistence\n"
        f"import denoise_studio as ds; ds.make_config('n2v')\n"
        "faces = ('qtpy', 'napari', 'PyQt6', 'PyQt5', 'PySide6')\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in faces)\n"
        "print(','.join(leaked))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} loaded {out}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every module of the package that ``path`` imports, at the top or inside a function."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # ``from . import api`` imports the submodule; ``from .config import X`` the module itself.
            targets = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: _imports(path, name, modules) for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ is imported on the way to its submodules; that edge is not a cycle.
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles_inside_the_package():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_persistence_imports_no_pipeline_and_the_engine_no_face():
    graph = _graph()
    persistence = graph["denoise_studio.engine.persistence"]
    assert not any(target.startswith("denoise_studio.engine.pipelines") for target in persistence)
    faces = ("denoise_studio._qt", "denoise_studio.cli", "denoise_studio.api")
    for name, targets in graph.items():
        if name.startswith("denoise_studio.engine"):
            found = [target for target in targets if target.startswith(faces)]
            assert not found, f"{name} imports {found}"


def test_method_names_come_from_the_registry():
    """No face spells out the list of methods: they read the registry."""
    from denoise_studio.engine.registry import METHODS

    spelled = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "registry.py":
            continue
        text = path.read_text()
        if all(f'"{name}"' in text for name in METHODS):
            spelled.append(str(path.relative_to(PACKAGE)))
    assert spelled == []
