"""The package's layers: no import cycle, nothing imports a layer above it, no front end in it.

    python -m pytest tests/test_layers.py     # the check; the graph is read from the source (ast)

Layers, lowest first: engine -> pipeline -> evaluation, review -> report -> distributed, gallery
-> cli. Imports inside functions count too: they break cycles at import time, not in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "saliency_core"
RANK = {
    "_version": 0,
    "engine": 0,
    "pipeline": 1,
    "evaluation": 2,
    "review": 2,
    "report": 3,
    "distributed": 4,
    "gallery": 4,
    "cli": 5,
    "__main__": 6,
}


def _module_name(path: Path) -> str:
    parts = ["saliency_core", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
            for n in ast.walk(block)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:  # never runs: annotations only
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")
                    parent = parent[: len(parent) - (node.level - 1)]
                    base = ".".join([*parent, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules and "." in t:
                    t = t.rpartition(".")[0]
                if t in modules and t != name and t.startswith("saliency_core"):
                    graph[name].add(t)
    return graph


def _unresolved() -> list[str]:
    """Relative imports naming a module or package that does not exist."""
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    bad = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
                if base not in modules:
                    bad.append(f"{name}: from {'.' * node.level}{node.module or ''} import ...")
    return bad


def test_every_relative_import_resolves():
    assert not _unresolved(), "\n".join(_unresolved())


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_cycle():
    graph = _graph()
    # the root package only re-exports the engine's public API; leave its edges out of cycles
    # through it (engine modules never import the root: checked below)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_nothing_imports_a_layer_above_it():
    upward = []
    for m, targets in _graph().items():
        here = _layer(m)
        for t in targets:
            there = _layer(t)
            if t == "saliency_core":
                upward.append(f"{m} imports the package root (import from the layer instead)")
            elif here in RANK and there in RANK and RANK[there] > RANK[here]:
                upward.append(f"{m} ({here}) imports {t} ({there})")
    assert not upward, "\n".join(upward)


def test_root_reexports_only_the_engine():
    graph = _graph()
    assert {_layer(t) for t in graph["saliency_core"]} <= {"engine", "_version"}, graph["saliency_core"]


def test_every_module_is_in_a_layer():
    missing = sorted(m for m in _graph() if m != "saliency_core" and _layer(m) not in RANK)
    assert not missing, f"modules outside the layers: {missing}"


def test_no_streamlit_in_the_package():
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(
            isinstance(n, (ast.Import, ast.ImportFrom))
            and any(
                (getattr(n, "module", None) or "").startswith("streamlit") or a.name.startswith("streamlit")
                for a in n.names
            )
            for n in ast.walk(ast.parse(p.read_text()))
        )
    ]
    assert not offenders


def test_the_check_can_fail(tmp_path, monkeypatch):
    """An engine module that imports the CLI is caught."""
    engine = tmp_path / "saliency_core" / "engine"
    engine.mkdir(parents=True)
    (tmp_path / "saliency_core" / "__init__.py").write_text("from .engine import a\n")
    (engine / "__init__.py").write_text("")
    (engine / "a.py").write_text("def f():\n    from ..cli import main\n")
    (tmp_path / "saliency_core" / "cli.py").write_text("from .engine import a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "saliency_core")
    with pytest.raises(AssertionError, match="engine.a \\(engine\\) imports saliency_core.cli"):
        test_nothing_imports_a_layer_above_it()
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycle()


def _private_imports(files) -> list[str]:
    """``from X import _name`` statements: a module taking another module's underscore name."""
    found = []
    for path in files:
        for node in ast.walk(ast.parse(Path(path).read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if names:
                    found.append(
                        f"{path}:{node.lineno}: from {'.' * node.level}{node.module or ''} import {names}"
                    )
    return found


def test_no_module_imports_another_modules_underscore_name():
    """What is shared is public, in a module named for its idea; an underscore name stays in its
    module. Checked over the package, the pages and app.py."""
    root = PACKAGE.parent
    files = [*PACKAGE.rglob("*.py"), *(root / "pages").glob("*.py"), root / "app.py"]
    found = _private_imports(files)
    assert not found, "\n".join(found)


def test_the_private_import_check_can_fail(tmp_path):
    (tmp_path / "a.py").write_text("from .b import _helper, public\nfrom .c import __version__\n")
    assert _private_imports([tmp_path / "a.py"]) == [f"{tmp_path / 'a.py'}:1: from .b import ['_helper']"]


MAX_FUNCTION_LINES = 80
MAX_PAGE_SCRIPT_LINES = 40  # a page's top level: constants and the calls of its section functions


def _long_functions(files) -> list[str]:
    """Functions (methods and nested ones included) longer than MAX_FUNCTION_LINES."""
    found = []
    for path in files:
        for node in ast.walk(ast.parse(Path(path).read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path}:{node.lineno}: {node.name} has {lines} lines")
    return found


def _script_lines(path) -> int:
    """Lines of a module's top-level statements other than imports, definitions and its docstring."""
    skip = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    body = ast.parse(Path(path).read_text(), str(path)).body
    return sum(
        n.end_lineno - n.lineno + 1
        for n in body
        if not isinstance(n, skip) and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
    )


def test_no_function_over_80_lines():
    root = PACKAGE.parent
    files = [*PACKAGE.rglob("*.py"), *(root / "pages").glob("*.py"), root / "app.py"]
    found = _long_functions(files)
    assert not found, "\n".join(found)


def test_each_page_is_a_few_named_sections():
    """A page's script is a short sequence of calls, one named function per section."""
    root = PACKAGE.parent
    long = {
        p.name: n
        for p in [*(root / "pages").glob("*.py"), root / "app.py"]
        if (n := _script_lines(p)) > MAX_PAGE_SCRIPT_LINES
    }
    assert not long, long


def test_the_size_checks_can_fail(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"import os\n\n\ndef f():\n{body}\n")
    assert _long_functions([tmp_path / "long.py"]) == [f"{tmp_path / 'long.py'}:4: f has 81 lines"]
    script = "\n".join(f"print({i})" for i in range(MAX_PAGE_SCRIPT_LINES + 1))
    (tmp_path / "page.py").write_text(f'"""A page."""\nimport os\n\n\ndef f():\n    pass\n\n\n{script}\n')
    assert _script_lines(tmp_path / "page.py") == MAX_PAGE_SCRIPT_LINES + 1
