"""Shared by the grading tests: warm-up submissions made from the solution, and the sandbox skip (a failure in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from toyattn import course
from toyattn.cli import main
from toyattn.grading import sandbox_problem

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = (ROOT / "solutions" / "00_warmup.py").read_text(encoding="utf-8")
PS = "00_warmup"


def sandbox_or_skip() -> None:
    """Skip the calling test where bwrap or user namespaces are missing; fail instead under TOYATTN_REQUIRE_SANDBOX=1."""
    why = sandbox_problem()
    if why is None:
        return
    if os.environ.get("TOYATTN_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"TOYATTN_REQUIRE_SANDBOX=1, but notebooks cannot be sandboxed here: {why}")
    pytest.skip(f"notebooks cannot be sandboxed here ({why}); `make test` installs bubblewrap")


def variant(solved: set[int], replace: dict[int, str] | None = None) -> str:
    """The warm-up as a py:percent text with answer region i kept (i in ``solved``), stubbed, or replaced."""
    replace = replace or {}
    out, region, inside = [], -1, False
    for line in SOLUTION.splitlines(keepends=True):
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped == course.BEGIN:
            region, inside = region + 1, True
            if region in replace:
                out.extend(f"{indent}{code}\n" for code in replace[region].splitlines())
            elif region not in solved:
                out.extend(f"{indent}{stub}\n" for stub in course.STUB_LINES)
            continue
        if stripped == course.END:
            inside = False
            continue
        if inside and (region in replace or region not in solved):
            continue
        out.append(line)
    assert region >= 1, "the warm-up is expected to have (at least) two answer regions"
    return "".join(out)


def to_ipynb(py_text: str) -> str:
    return course.py_to_ipynb_text(py_text)


def drop_cell_calling(py_text: str, check: str) -> str:
    """Delete the whole cell that calls ``checks.<check>(`` (a student who removed the exercise cell)."""
    cells = py_text.split("\n# %%")
    kept = [c for c in cells if f"checks.{check}(" not in c]
    assert len(kept) == len(cells) - 1
    return "\n# %%".join(kept)


def _grade_unsandboxed(subs: Path, out: Path, *extra: str) -> int:
    return main(["grade", str(subs), "--out", str(out), "--root", str(ROOT), "--jobs", "1", "--no-sandbox",
                 "--no-executed", *extra])
