"""Every exercise check is verified (stub, wrong answer, solution) by a test, and every check a
solution notebook calls exists."""

from __future__ import annotations

import re
from pathlib import Path

from toyattn import checks

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_check_has_a_verify_check_test():
    test_text = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    missing = [
        name
        for name in checks.REGISTRY
        if not re.search(rf"verify_check\(\s*checks\.{name}\b", test_text)
    ]
    assert not missing, f"checks without a verify_check(...) test: {missing}"


def test_checks_called_in_solutions_exist():
    for sol in sorted((ROOT / "solutions").glob("*.py")):
        called = set(re.findall(r"checks\.(check_\w+)\(", sol.read_text()))
        assert called, f"{sol.name} calls no check"
        unknown = called - set(checks.REGISTRY)
        assert not unknown, f"{sol.name} calls unknown checks {unknown}"


def test_checks_are_exported_from_the_package():
    for name in checks.REGISTRY:
        assert getattr(checks, name) is checks.REGISTRY[name]
        assert name in checks.__all__
