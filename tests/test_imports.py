"""The import graph of the project's modules (jaxdet, train, configs) has no cycle, and ``import jaxdet`` stays light.

The graph is read from the source with :mod:`ast`, so it sees every import, including those inside functions (a
cycle hidden in a function still makes the two modules depend on each other). A module ``a.b.c`` has an edge to
every project module it imports: ``import a.b.c`` and ``from a.b import c`` (``c`` a module) give ``a.b.c``,
``from a.b import name`` (``name`` not a module) gives ``a.b``; relative imports are resolved against the module's
package. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``, so the edge implies edges to them too. Edges
from a module to its own parent packages are left out (they are running already when the module is imported).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("jaxdet", "train", "configs")
#: packages ``import jaxdet`` must not load: the core install has none of them.
HEAVY = ("torch", "cv2", "grain", "matplotlib")


def _modules() -> dict[str, str]:
    """Module name -> file path of every ``.py`` under :data:`PACKAGES`."""
    modules = {}
    for package in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, package)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
            for filename in sorted(filenames):
                if not filename.endswith(".py"):
                    continue
                parts = os.path.relpath(os.path.join(dirpath, filename), ROOT)[: -len(".py")].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = os.path.join(dirpath, filename)
    return modules


def _parents(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(module: str, path: str, modules: dict[str, str]) -> Iterator[str]:
    """The project modules ``module`` (at ``path``) imports anywhere in its file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                yield sub if sub in modules else source


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it depends on at import (see the module doc)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        own = {module, *_parents(module)}
        edges = set()
        for target in _imported(module, path, modules):
            while target and target not in modules:  # ``import a.b.c`` of a non-project tail: its project prefix
                target = target.rpartition(".")[0]
            if target:
                edges.update(t for t in (*_parents(target), target) if t in modules and t not in own)
        graph[module] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:  # back at the start: walk the path back from v
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")  # Tarjan's components are cyclic


def test_the_graph_sees_the_project():
    graph = import_graph()
    assert {"jaxdet", "jaxdet.models.registry", "train.loop", "configs.yolov8n_shapes"} <= set(graph)
    assert "jaxdet.models.yolov8_head" in graph["jaxdet.models.registry"]
    assert "jaxdet.tal" in graph["jaxdet.losses.yolov8"]
    assert "jaxdet.losses" not in graph["jaxdet.losses.yolov8"]  # its own package: left out
    assert "jaxdet.losses" in graph["jaxdet.models.yolov8_head"]  # the package runs before jaxdet.losses.yolov8
    assert "configs.yolov1_shapes" in graph["configs.yolov8n_shapes"]  # ``from configs import yolov1_shapes``


def test_find_cycles_names_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_import_jaxdet_loads_no_optional_dependency():
    code = (
        "import sys, jaxdet\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import jaxdet loaded {out.stdout.strip()}"


@pytest.mark.parametrize("module", ["jaxdet.models", "jaxdet.losses", "jaxdet.tal"])
def test_library_modules_load_no_optional_dependency(module):
    """The models (whose weight import takes torch as an option) and the losses load without torch either."""
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import {module} loaded {out.stdout.strip()}"
