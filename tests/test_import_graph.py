"""The package graph has no cycles: every import of memo_pipelines/, assets/ and resources/ (those inside functions
too) read from the source, so an import placed in a function to dodge a loop is still seen."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("memo_pipelines", "assets", "resources")
CODE_LOCATION = "memo_pipelines.orchestration"  # assembles assets and resources into the Definitions


def unit(module: str) -> str | None:
    """The node a module belongs to: a sub-package or top-level module of memo_pipelines, or assets, or resources."""
    parts = module.split(".")
    if parts[0] == "memo_pipelines" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0] if parts[0] in ("assets", "resources") else None


def imported_modules(path: Path, package: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def import_graph() -> dict[str, dict[str, set[str]]]:
    """{unit: {imported unit: the files that import it}}."""
    graph: dict[str, dict[str, set[str]]] = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            package = ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts[:-1])
            source = unit(".".join(parts if parts[-1] != "__init__" else parts[:-1]))
            if source is None:
                continue
            for name in imported_modules(path, package):
                target = unit(name)
                if target and target != source:
                    graph.setdefault(source, {}).setdefault(target, set()).add(str(path.relative_to(ROOT)))
    return graph


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def describe(cycle: list[str], graph) -> str:
    return "\n".join(f"  {a} -> {b}  ({', '.join(sorted(graph[a][b]))})" for a, b in zip(cycle, cycle[1:]))


def test_the_package_graph_has_no_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle {' -> '.join(cycle)}:\n{describe(cycle, graph)}"


def test_the_library_imports_assets_and_resources_only_in_the_code_location():
    graph = import_graph()
    leaks = {f"{source} -> {target}: {', '.join(sorted(files))}" for source, targets in graph.items() for target, files in targets.items()
             if source.startswith("memo_pipelines.") and source != CODE_LOCATION and target in ("assets", "resources")}
    assert not leaks, "the library imports the Dagster layer:\n" + "\n".join(sorted(leaks))


def test_the_shared_leaf_imports_no_other_package():
    assert "memo_pipelines.qa" in {t for targets in import_graph().values() for t in targets}
    assert not import_graph().get("memo_pipelines.qa"), "memo_pipelines/qa.py must stay a leaf"


def test_a_cycle_is_found_and_named():
    graph = {"assets": {"memo_pipelines.orchestration": {"assets/corpus.py"}},
             "memo_pipelines.orchestration": {"assets": {"memo_pipelines/orchestration/definitions.py"}}}
    cycle = find_cycle(graph)
    assert cycle == ["assets", "memo_pipelines.orchestration", "assets"]
    assert "assets/corpus.py" in describe(cycle, graph)
