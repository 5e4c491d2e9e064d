"""The house's imports point one way: leaf types at the bottom, ``db`` and ``prompts`` on them
only, no cycle between sqlwright's parts (subpackages and top-level modules).

Every import counts, including those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sqlwright

SRC = Path(sqlwright.__file__).parent
# Leaves: import nothing of sqlwright but each other (the shared records, the error type,
# the file helpers). ``db`` and ``prompts`` stand on the leaves alone.
LEAVES = {"types", "errors", "files"}
ON_LEAVES_ONLY = {"db", "prompts"}


def _part(module: str) -> str | None:
    """``sqlwright.db.pool`` -> ``db``; the package root itself -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "sqlwright" and len(parts) > 1 else None


def import_graph() -> dict[str, dict[str, list[str]]]:
    """part -> {imported part: [file:line, ...]}."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        mine = rel.parts[0].removesuffix(".py")
        if mine == "__init__":
            continue
        edges = graph.setdefault(mine, {})
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] if node.module != "sqlwright" else [f"sqlwright.{a.name}" for a in node.names]
            for name in names:
                other = _part(name)
                if other and other != mine and other != "__version__":
                    edges.setdefault(other, []).append(f"{rel}:{node.lineno}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, {})):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_cycle_between_parts():
    graph = import_graph()
    cycle = find_cycle(graph)
    where = [f"{a} -> {b} ({graph[a][b][0]})" for a, b in zip(cycle, cycle[1:], strict=False)] if cycle else []
    assert cycle is None, "import cycle: " + "; ".join(where)


def test_leaves_and_their_users_import_nothing_above_them():
    graph = import_graph()
    bad = []
    for part in LEAVES | ON_LEAVES_ONLY:
        for other, places in graph.get(part, {}).items():
            if other not in LEAVES:
                bad.append(f"{part} imports {other} at {places[0]}")
    assert not bad, "; ".join(bad)


def test_the_checker_sees_a_cycle_and_a_leaf_import():
    """The two checks above fail on what they are meant to catch."""
    assert find_cycle({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ["x"]}, "b": {}}) is None
    graph = import_graph()
    assert "types" in graph and "judge" in graph["eval"]  # the walk finds real edges
    assert graph["db"].keys() <= LEAVES
