"""The package docstring's map stays true: every module is listed under its folder, every file it names
exists, the root stays small, and every module states its one job and stays short."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import toyattn

PACKAGE = Path(toyattn.__file__).parent


def _modules() -> list[str]:
    """Every module of toyattn as a dotted name below it, e.g. ``symmetry.scores``, ``hooks`` (no ``__init__``)."""
    return sorted(".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py") if p.stem != "__init__")


def test_every_module_is_on_the_map():
    listed = set(re.findall(r":mod:`~toyattn\.([\w.]+)`", toyattn.__doc__))
    assert set(_modules()) - listed == set(), "add these modules to toyattn/__init__.py's map"
    assert listed - set(_modules()) == set(), "the map names modules that do not exist"


def test_every_file_the_map_names_exists():
    named = re.findall(r"``(toyattn/[\w/]+\.py|[\w/]+\.py)``", toyattn.__doc__)
    assert len(named) >= 10
    for name in named:
        path = PACKAGE.parent / name if name.startswith("toyattn/") else None
        candidates = [path] if path else [PACKAGE / name, *PACKAGE.glob(f"*/{name}")]
        assert any(p is not None and p.is_file() for p in candidates), f"{name} named in the map does not exist"


def test_the_root_holds_at_most_ten_modules_and_the_rest_sit_in_topic_folders():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 10, root
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert {"models", "weights", "heads", "symmetry", "circuits", "checks", "grading"} <= folders


def test_every_module_states_its_job_in_its_first_docstring_line_and_stays_short():
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent)
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, f"{where} has no docstring"
        assert len(doc.splitlines()[0]) > 15, f"{where}: first line too short to state its job"
        assert len(path.read_text().splitlines()) <= 450, f"{where} is over 450 lines: split it by job"


def test_imports_inside_the_package_are_absolute():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: relative import; write from toyattn....")
