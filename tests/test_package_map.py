"""The package docstring's map stays true: every module is listed, and every file it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import toyattn

PACKAGE = Path(toyattn.__file__).parent


def _modules() -> list[str]:
    """Top-level modules and subpackages of toyattn, e.g. ``symmetry``, ``models``, ``grading``."""
    names = [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    return sorted(names + [p.parent.name for p in PACKAGE.glob("*/__init__.py")])


def test_every_module_is_on_the_map():
    listed = set(re.findall(r":mod:`~toyattn\.(\w+)`", toyattn.__doc__))
    assert set(_modules()) - listed == set(), "add these modules to toyattn/__init__.py's map"
    assert listed - set(_modules()) == set(), "the map names modules that do not exist"


def test_every_file_the_map_names_exists():
    named = re.findall(r"``(toyattn/[\w/]+\.py|[\w/]+\.py)``", toyattn.__doc__)
    assert len(named) >= 10
    for name in named:
        path = PACKAGE.parent / name if name.startswith("toyattn/") else None
        candidates = [path] if path else [PACKAGE / name, *PACKAGE.glob(f"*/{name}")]
        assert any(p is not None and p.is_file() for p in candidates), f"{name} named in the map does not exist"


def test_every_module_states_its_job_in_its_first_docstring_line():
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, f"{path.relative_to(PACKAGE.parent)} has no docstring"
        assert len(doc.splitlines()[0]) > 15, f"{path.relative_to(PACKAGE.parent)}: first line too short to state its job"
