"""The library's shape: only the orchestration package imports dagster, every sub-package says what it owns, and
bucket keys are built in one module."""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "memo_pipelines"
BUCKET_PREFIXES = ("versions/", "registry/", "cache/", "locks/", "sensors/", "evals/", "models/")


def library_modules():
    return sorted(p for p in LIBRARY.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_only_the_orchestration_package_imports_dagster():
    offenders = []
    for path in library_modules():
        if path.relative_to(LIBRARY).parts[0] == "orchestration":
            continue
        dagster = {m for m in imported_modules(ast.parse(path.read_text())) if m.split(".")[0].startswith("dagster")}
        if dagster:
            offenders.append(f"{path.relative_to(LIBRARY)} imports {sorted(dagster)}")
    assert offenders == []


def test_the_check_sees_a_dagster_import():
    assert imported_modules(ast.parse("def f():\n    from dagster import asset\n")) == {"dagster"}
    assert imported_modules(ast.parse("import dagster_aws.s3 as s3")) == {"dagster_aws.s3"}


def test_every_sub_package_says_what_it_owns():
    for init in LIBRARY.glob("*/__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring) > 20, f"{init.parent.name}/ has no docstring saying what it owns"


def test_bucket_keys_are_spelled_only_in_the_layout_module():
    spelled = []
    for path in library_modules():
        if path.relative_to(LIBRARY).as_posix() == "storage/layout.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(BUCKET_PREFIXES):
                spelled.append(f"{path.relative_to(LIBRARY)}:{node.lineno} {node.value!r}")
    assert spelled == []
