"""A non-editable install has every subpackage and the data files: the wheel is built the way `pip install .` builds
it, its contents are checked against the source tree, and the code is imported from the unpacked wheel alone."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = ("memo_pipelines", "assets", "resources")
DATA_DIRS = ("memo_pipelines/sample_corpus", "memo_pipelines/sample_corpus_update", "memo_pipelines/evaluation/data")


def source_files(pattern: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for root in PACKAGE_ROOTS for p in (ROOT / root).rglob(pattern)
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the source tree (pip builds in place, and other test runs may share this checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for root in PACKAGE_ROOTS:
        shutil.copytree(ROOT / root, source / root, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("memo_pipelines-*.whl"))


def test_the_wheel_holds_every_module_and_data_file_of_the_source_tree(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = source_files("*.py")
    assert {"memo_pipelines/protocol/stages.py", "memo_pipelines/apps/follow.py", "assets/memory.py", "resources/llm.py"} <= modules
    assert modules - names == set()
    data = {f for d in DATA_DIRS for f in source_files("*") if f.startswith(d + "/")}
    assert {"memo_pipelines/evaluation/data/nq_open_sample.jsonl", "memo_pipelines/sample_corpus/plant_kesby.txt",
            "memo_pipelines/sample_corpus/annual_report_2024.pdf", "memo_pipelines/sample_corpus_update/plant_lorne.txt"} <= data
    assert data - names == set()
    assert not any(name.startswith("tests/") for name in names)


def test_the_unpacked_wheel_imports_and_finds_its_data_without_the_source_tree(wheel, tmp_path):
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    check = f"""
import sys; sys.path.insert(0, {str(installed)!r})
import importlib.resources, memo_pipelines, memo_pipelines.protocol, memo_pipelines.apps.serve, memo_pipelines.apps.follow, memo_pipelines.apps.cli
from memo_pipelines.evaluation.general import GENERAL_SET
assert memo_pipelines.__file__.startswith({str(installed)!r}), memo_pipelines.__file__
assert memo_pipelines.protocol.__file__.startswith({str(installed)!r}) and GENERAL_SET.is_file()
print(sorted(p.name for p in (importlib.resources.files("memo_pipelines") / "sample_corpus").iterdir()))
"""
    run = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "plant_kesby.txt" in run.stdout and "suppliers.json" in run.stdout
