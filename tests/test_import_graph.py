"""The import graph of ``bobench`` has no circle.

A rule's inputs are its script's import closure (:mod:`bobench.imports`); modules that import each other
sit in each other's closure, so editing any of them reruns every rule that reaches one. The graph here
has the explicit imports only: every ``import`` statement, at module level or in a function, giving for
each name it loads the longest prefix that is a project module. The implicit edge "a submodule's package
runs first" is left out: it goes one way, from a module to its packages.
"""

from __future__ import annotations

from pathlib import Path

from bobench.imports import PACKAGE, _imported_names, module_file

ROOT = Path(__file__).resolve().parents[1]


def project_modules(root: Path) -> list[str]:
    """The dotted name of every module under ``root/bobench`` (a package by its own name)."""
    names = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def explicit_imports(root: Path, module: str) -> set[str]:
    """The project modules that ``module``'s import statements name (not their parent packages)."""
    out = set()
    for name in _imported_names(module_file(root, module), module):
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            parts = name.split(".")
            for k in range(len(parts), 0, -1):
                if module_file(root, ".".join(parts[:k])):
                    out.add(".".join(parts[:k]))
                    break
    return out - {module}


def import_graph(root: Path) -> dict[str, set[str]]:
    return {module: explicit_imports(root, module) for module in project_modules(root)}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan), as a path that
    starts and ends at the component's first module: ``[a, b, a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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
    return [_circle_through(graph, component) for component in sorted(components)]


def _circle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """The shortest path from the component's first module back to itself, inside the component."""
    start, inside = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & inside):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if succ not in previous:
                    previous[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no circle through {start} in {component}")  # pragma: no cover


def test_circles_are_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e", "a"}}
    assert circles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph(ROOT)
    assert "bobench.datasets.kinds" in graph and "bobench.errors" in graph
    # config imports the table of dataset kinds inside a function; the table imports the three kinds.
    assert "bobench.datasets.kinds" in graph["bobench.config"]
    assert {"bobench.datasets.sources", "bobench.detection.sources", "bobench.retrieval.sources"} <= graph["bobench.datasets.kinds"]


def test_bobench_imports_form_no_circle() -> None:
    found = circles(import_graph(ROOT))
    assert not found, "the import graph of bobench has circles:\n" + "\n".join(" → ".join(c) for c in found)
