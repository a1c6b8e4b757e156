"""The arrows point one way: the web app (app/) never imports the worker (worker/), the
composition roots (rankloop/: the command line, the in-process loop) sit on top of both, and no
modules of app/, worker/ or rankloop/ import each other in a cycle.

The imports are read with `ast`, not by importing: every `import` and `from ... import`
statement counts, at module level or inside a function (an import a function makes at run time
is a dependency all the same), under `if TYPE_CHECKING:` too. `from pkg import name` imports
the module `pkg.name` when there is one, else `pkg`; importing `a.b.c` runs the packages `a`
and `a.b` as well, so they count as imported too (an `__init__.py` that imports nothing can
never close a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "worker", "rankloop")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported_names(path: Path, name: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """(module, line) for each import in the file, resolved to a module of `known` where there
    is one; other imports (the standard library, third-party packages) are left out."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _with_parents(alias.name, node.lineno, known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, `level` steps up
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                yield from _with_parents(target, node.lineno, known)


def _with_parents(target: str, line: int, known: set[str]) -> Iterator[tuple[str, int]]:
    parts = target.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in known:
            yield prefix, line


def import_graph() -> dict[str, dict[str, int]]:
    """module → {imported module: first line importing it}."""
    found = modules()
    known = set(found)
    graph: dict[str, dict[str, int]] = {}
    for name, path in found.items():
        edges: dict[str, int] = {}
        for target, line in imported_names(path, name, known):
            if target != name and not name.startswith(f"{target}."):  # a module's own packages
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iterative (no recursion limit)
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_shortest_cycle(graph, component) for component in components]


def _shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside it."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target not in members:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in {component}")  # a component of 2+ always has one


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:], strict=False)]
    return "\n    ".join(steps)


def imports_of(graph: dict[str, dict[str, int]], importers: str, package: str) -> list[str]:
    """`module:line imports target` for each import of `package` by a module of `importers`
    (the module imported, not again each package above it)."""
    found = []
    for name, edges in sorted(graph.items()):
        if name.split(".")[0] != importers:
            continue
        targets = [t for t in edges if t.split(".")[0] == package]
        found += [
            f"{name}:{edges[t]} imports {t}"
            for t in sorted(targets)
            if not any(other.startswith(f"{t}.") for other in targets)
        ]
    return found


def test_the_web_app_never_imports_the_worker() -> None:
    found = imports_of(import_graph(), "app", "worker")
    assert not found, "app/ sends work by task name (app/jobs.py):\n" + "\n".join(found)


def test_only_the_composition_roots_import_rankloop() -> None:
    graph = import_graph()
    found = imports_of(graph, "app", "rankloop") + imports_of(graph, "worker", "rankloop")
    assert not found, "\n".join(found)


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n  " + "\n  ".join(describe(graph, cycle) for cycle in found)


def test_the_walk_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    """The reader itself: an import inside a function, `from pkg import module` and a relative
    import are all edges; a cycle is found and named."""
    source = tmp_path / "demo_pkg"
    source.mkdir()
    (source / "__init__.py").write_text("")
    (source / "a.py").write_text("def f():\n    from demo_pkg import b\n")
    (source / "b.py").write_text("from . import c\n")
    (source / "c.py").write_text("import demo_pkg.a\n")
    known = {"demo_pkg", "demo_pkg.a", "demo_pkg.b", "demo_pkg.c"}
    graph = {
        name: {
            target: line
            for target, line in imported_names(source / f"{name.split('.')[-1]}.py", name, known)
            if target != "demo_pkg"
        }
        for name in ("demo_pkg.a", "demo_pkg.b", "demo_pkg.c")
    }

    assert graph == {
        "demo_pkg.a": {"demo_pkg.b": 2},
        "demo_pkg.b": {"demo_pkg.c": 1},
        "demo_pkg.c": {"demo_pkg.a": 1},
    }
    assert cycles(graph) == [["demo_pkg.a", "demo_pkg.b", "demo_pkg.c", "demo_pkg.a"]]
