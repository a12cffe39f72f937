"""Lesson 3's text points at sections that exist: every "section N" in the lecture and its problem set names
a "## N." header of the lecture (issue 22: a reference must name the section that holds what it promises;
what each section holds was checked by hand, this keeps the numbers from going stale)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURE = ROOT / "notebooks" / "03_symmetry_scores.py"


def headers(text: str) -> set[str]:
    """The section numbers of a lecture's "## N." / "## Nb." headers."""
    return set(re.findall(r"^# ## (\d+[a-z]?)\.", text, flags=re.MULTILINE))


def references(text: str) -> set[str]:
    """Every section named in "section N", "sections N-M" and "sections N and M" (ranges expanded)."""
    found = set()
    for first, joint, last in re.findall(r"\bsections? (\d+[a-z]?)(?:\s*(-|–|and|to)\s*(\d+[a-z]?))?", text, flags=re.IGNORECASE):
        if joint in ("-", "–", "to") and first.isdigit() and last.isdigit():
            found |= {str(n) for n in range(int(first), int(last) + 1)}
        else:
            found |= {first} | ({last} if last else set())
    return found


def test_the_helpers_find_headers_and_references():
    assert headers("# ## 5. A\n# ## 5b. B\n# ### 6. not a section\n") == {"5", "5b"}
    assert references("see section 5b, sections 6-8 and sections 1 and 3") == {"5b", "6", "7", "8", "1", "3"}
    assert references("section 9") - headers("# ## 8. Last\n") == {"9"}  # a stale number is caught


@pytest.mark.parametrize("path", ["notebooks/03_symmetry_scores.py", "solutions/03_symmetry_scores.py"])
def test_every_section_reference_names_a_section_of_the_lecture(path):
    lecture = headers(LECTURE.read_text())
    assert {"1", "5", "5b", "8"} <= lecture
    missing = references((ROOT / path).read_text()) - lecture
    assert not missing, f"{path} refers to sections {sorted(missing)}, which the lecture does not have"
