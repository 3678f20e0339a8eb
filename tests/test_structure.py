"""The layout holds: pipeline/ is the runtime, imports form no cycle, no module is over 500 lines.

Everything here reads the source with :mod:`ast` (nothing is imported), so these checks take
well under a second. Imports anywhere in a module count, inside functions too. Those under
``if TYPE_CHECKING:`` never run, so the runtime-boundary checks leave them out, but the cycle
check counts them: two modules that name each other, even for types only, are one idea split in
two. A module that imports by name
(``importlib.import_module``, ``__import__``) is taken to import every project module that one
of its string constants names.
"""
from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 500
SKIP_DIRS = {"artifacts", "cache", "node_modules", "__pycache__"}

SHIMS = {"pipeline.train": "training.train", "pipeline.evaluate": "training.evaluate", "pipeline.bench": "training.bench"}
"""Entry points kept for ``python -m pipeline.X``: each only delegates to ``training.X.main``."""

FAKES = "pipeline.testing"
"""Public test fakes: in the package, but not part of the runtime."""

RUNTIME_ROOTS = ("app", "pages.how_it_works", "script", "pipeline")
"""What users run: the app (and its "How it works" page), the batch scorer and ``from pipeline import Cascade``."""


def _python_files() -> list[Path]:
    """Every ``.py`` of the project (not ``.venv``, hidden folders or build outputs)."""
    files = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if any(p.startswith(".") or p in SKIP_DIRS for p in parts[:-1]):
            continue
        files.append(path)
    return sorted(files)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@lru_cache(maxsize=None)
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in _python_files()}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, *, typing: bool = False):
    """Import statements anywhere in ``tree``; under ``if TYPE_CHECKING:`` only with ``typing``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if not typing and isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body:
                continue
            stack.append(child)


def _imports_dynamically(tree: ast.AST) -> bool:
    """True when the module calls ``importlib.import_module`` or ``__import__``."""
    return any(isinstance(n, ast.Call) and (
        (isinstance(n.func, ast.Attribute) and n.func.attr == "import_module")
        or (isinstance(n.func, ast.Name) and n.func.id in ("import_module", "__import__"))) for n in ast.walk(tree))


def _project_target(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that importing ``name`` runs: its longest prefix that is one, else ``None``."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


@lru_cache(maxsize=None)
def _imports(typing: bool = False) -> dict[str, tuple[tuple[str, int], ...]]:
    """``{module: ((imported project module, line), ...)}`` over the whole project (``typing``: with
    the imports under ``if TYPE_CHECKING:``)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = []
        for node in _import_nodes(tree, typing=typing):
            if isinstance(node, ast.Import):
                targets = [_project_target(a.name, modules) for a in node.names]
            else:
                stem = node.module or ""
                if node.level:  # relative: up level - 1 packages from this module's package
                    parts = package.split(".") if package else []
                    base = parts[: len(parts) - (node.level - 1)]
                    stem = ".".join(base + ([stem] if stem else []))
                targets = []
                for alias in node.names:
                    sub = f"{stem}.{alias.name}" if stem else alias.name
                    targets.append(sub if sub in modules else _project_target(stem, modules))
            edges += [(t, node.lineno) for t in targets if t is not None and t != name]
        if _imports_dynamically(tree):  # importlib.import_module(NAMES[x]): every project module named in a string
            edges += [(n.value, n.lineno) for n in ast.walk(tree) if isinstance(n, ast.Constant)
                      and isinstance(n.value, str) and n.value in modules and n.value != name]
        graph[name] = tuple(sorted(set(edges)))
    return graph


def _is_pipeline(name: str) -> bool:
    return name == "pipeline" or name.startswith("pipeline.")


def _runtime_modules() -> list[str]:
    return [m for m in _modules() if _is_pipeline(m) and m not in SHIMS and m != FAKES]


def _closure(starts) -> dict[str, str | None]:
    """Modules reachable from ``starts``, each with the module it was first reached from."""
    graph = _imports()
    seen: dict[str, str | None] = {s: None for s in starts}
    todo = list(starts)
    while todo:
        here = todo.pop()
        for target, _ in graph.get(here, ()):
            if target not in seen:
                seen[target] = here
                todo.append(target)
    return seen


def _path_to(seen: dict[str, str | None], target: str) -> str:
    chain = [target]
    while seen[chain[-1]] is not None:
        chain.append(seen[chain[-1]])
    return " -> ".join(reversed(chain))


# ----------------------------------------------------------------------------- the runtime


def test_the_graph_sees_the_project():
    modules = _modules()
    for name in ("app", "script", "pipeline", "pipeline.cascade", "training", "studies", "tests.conftest", *SHIMS):
        assert name in modules, name
    assert "pipeline.cascade" in {t for t, _ in _imports()["pipeline"]}  # the lazy import of Cascade counts


def test_pipeline_never_imports_training_studies_or_tests():
    """Only the three entry-point shims reach outside ``pipeline``; the rest imports ``pipeline`` only."""
    graph = _imports()
    bad = [f"{m} imports {t} (line {line})" for m in _modules() if _is_pipeline(m) and m not in SHIMS
           for t, line in graph[m] if not _is_pipeline(t)]
    assert not bad, "pipeline/ is the runtime and must not import training, study or test code:\n" + "\n".join(bad)


def test_app_and_script_use_the_runtime_only():
    seen = _closure(RUNTIME_ROOTS)
    outside = [_path_to(seen, m) for m in seen if m not in RUNTIME_ROOTS and not _is_pipeline(m)]
    assert not outside, "app.py, script.py and pipeline reach code outside the runtime:\n" + "\n".join(outside)


def test_the_runtime_never_reaches_the_shims_or_the_fakes():
    seen = _closure(RUNTIME_ROOTS)
    reached = [_path_to(seen, m) for m in (*SHIMS, FAKES) if m in seen]
    assert not reached, "the runtime imports an entry-point shim or pipeline.testing:\n" + "\n".join(reached)


def test_every_pipeline_module_is_runtime():
    """``pipeline/`` holds what app.py, script.py and ``Cascade`` need, and nothing else."""
    seen = _closure(RUNTIME_ROOTS)
    unused = sorted(m for m in _runtime_modules() if m not in seen)
    assert not unused, (
        "pipeline modules that neither app.py, script.py nor the Cascade import (move them to training/ or "
        f"studies/): {unused}")


@pytest.mark.parametrize("shim, target", sorted(SHIMS.items()))
def test_entry_point_shim_only_delegates(shim, target):
    """``pipeline/<x>.py``: a docstring, ``from training.<x> import main``, and the ``__main__`` guard."""
    tree = ast.parse(_modules()[shim].read_text(encoding="utf-8"))
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    rest = [n for n in body if n not in imports]
    assert len(imports) == 1 and isinstance(imports[0], ast.ImportFrom), ast.dump(tree)
    assert imports[0].module == target and [a.name for a in imports[0].names] == ["main"], ast.unparse(imports[0])
    assert len(rest) == 1 and isinstance(rest[0], ast.If), [ast.unparse(n) for n in rest]
    assert ast.unparse(rest[0].test) in ("__name__ == '__main__'", '__name__ == "__main__"'), ast.unparse(rest[0])
    assert ast.unparse(rest[0]).endswith("raise SystemExit(main())"), ast.unparse(rest[0])


# ----------------------------------------------------------------------------- the whole project


def _cycles(graph: dict[str, tuple[tuple[str, int], ...]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 1000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # breadth-first from start back to start, inside the component: a shortest cycle through it
        parents: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w, _ in graph[v]:
                    if w == start:
                        found = v
                        break
                    if w in members and w not in parents and w != start:
                        parents[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        chain = [start]
        v = found
        while v is not None and v != start:
            chain.append(v)
            v = parents.get(v)
        cycles.append([start, *reversed(chain[1:]), start] + ([f"(component: {', '.join(component)})"]
                                                              if len(component) > len(chain) else []))
    return cycles


def test_no_import_cycles():
    graph = _imports(typing=True)
    lines = {(m, t): line for m, edges in graph.items() for t, line in edges}
    found = _cycles(graph)

    def show(cycle: list[str]) -> str:
        hops = [c for c in cycle if not c.startswith("(")]
        steps = " -> ".join(f"{a} (line {lines[a, b]})" for a, b in zip(hops, hops[1:])) + f" -> {hops[-1]}"
        return steps + "".join(f" {c}" for c in cycle if c.startswith("("))

    assert not found, "import cycles:\n" + "\n".join(show(c) for c in found)


def test_cycle_finder_known_answer():
    graph = {"a": (("b", 1),), "b": (("c", 2),), "c": (("a", 3), ("d", 4)), "d": (), "e": (("d", 5),)}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": (("b", 1),), "b": ()}) == []


def test_no_module_over_500_lines():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in _python_files()}
    over = {p: n for p, n in sorted(sizes.items()) if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them): {over}"


def test_nothing_imports_a_test_module():
    """Shared fakes live in :mod:`pipeline.testing` / :mod:`training.testing`, not in tests/ (conftest included)."""
    bad = [f"{m} imports {t} (line {line})" for m, edges in _imports().items() for t, line in edges
           if t == "tests" or t.startswith("tests.")]
    assert not bad, "import test fakes from pipeline.testing or training.testing:\n" + "\n".join(bad)


# ----------------------------------------------------------------------------- test configuration


def _conftest_tables() -> dict[str, object]:
    tree = ast.parse((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    tables = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                tables[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return tables


def test_marker_tables_name_existing_tests():
    """Every ``file::function`` in conftest's SLOW_TESTS / DATA_TESTS exists (a rename would drop its marker)."""
    tables = _conftest_tables()
    missing = []
    for table in ("SLOW_TESTS", "DATA_TESTS"):
        for key in tables[table]:
            file, _, function = key.partition("::")
            path = ROOT / "tests" / file
            names = set()
            if path.is_file():
                names = {n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                         if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            if function not in names:
                missing.append(f"{table}: {key}")
    assert not missing, "conftest marks tests that do not exist:\n" + "\n".join(missing)


def test_pytest_configuration_lives_in_pyproject():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert {m.split(":")[0] for m in config["markers"]} == {"slow", "data", "browser", "full_profile"}
    assert "--strict-markers" in config["addopts"]
    assert not [n for n in ("pytest.ini", "setup.cfg", "tox.ini", "tests/pytest.ini") if (ROOT / n).exists()]
