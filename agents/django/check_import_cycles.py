"""Fail when the agent's modules import each other in a cycle.

    python check_import_cycles.py [package directory]   (default: src/headcount_django)

Every import counts, also those inside functions: a cycle that a function-level import
hides still ties the modules together (neither can be understood, tested or changed
without the other) and only fails later, at the first call. Imports under
``if TYPE_CHECKING:`` never run and do not count. Only imports between the package's
own modules are edges; Django, Lino and the standard library are not followed.

ruff has no rule for this (pylint's ``cyclic-import`` is not implemented there), hence
this script; ``run-tests`` runs it before pytest. Standard library only.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by their ``__init__``)."""
    root = package_dir.parent
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """The dotted names one module imports (absolute, relative ones resolved), anywhere but under TYPE_CHECKING."""

    def __init__(self, module: str, is_package: bool):
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, int]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            origin = ".".join([*base, node.module] if node.module else base)
        else:
            origin = node.module or ""
        self.found.append((origin, node.lineno))
        for alias in node.names:
            # ``from . import x`` imports the module x when there is one
            self.found.append((f"{origin}.{alias.name}", node.lineno))


def import_graph(package_dir: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module of the package: line of the first such import}."""
    modules = module_names(package_dir)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges: dict[str, int] = {}
        for target, line in visitor.found:
            # a module's own packages are set up before it runs: importing them closes no cycle
            if target in modules and target != name and not name.startswith(target + "."):
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The groups of modules that import each other (strongly connected), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; the agent has a few dozen modules, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(sorted(group) for group in groups)


def shortest_cycle(graph: dict[str, dict[str, int]], group: list[str], start: str) -> list[str]:
    """A shortest cycle from ``start`` back to it, staying inside the group."""
    members = set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node]):
            if target == start:
                return [*paths[node], start]
            if target in members and target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    return group  # unreachable for a strongly connected group


def main(argv: list[str]) -> int:
    package_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "src" / "headcount_django"
    graph = import_graph(package_dir)
    found = cycles(graph)
    if not found:
        print(f"check_import_cycles: no import cycles among the {len(graph)} modules of {package_dir.name}")
        return 0
    for group in found:
        print(f"check_import_cycles: these modules import each other: {', '.join(group)}", file=sys.stderr)
        # one cycle through each member, so that every import to cut is named
        shown = set()
        for start in group:
            path = shortest_cycle(graph, group, start)
            steps = tuple(zip(path, path[1:], strict=False))
            if frozenset(steps) in shown:
                continue
            shown.add(frozenset(steps))
            text = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in steps)
            print(f"  {text} -> {path[-1]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
