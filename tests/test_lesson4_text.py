"""Lesson 4's text points where it says: every "section N" names a section the lesson has.

Only checks that the numbers exist (not that the section holds what the sentence promises, which a
reader checks); written for lesson 4 and its problem set (issue 22)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "04_qk_ov_matching.py"


def _section_numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"^# ## (\d+)\.", text, flags=re.MULTILINE)}


def _referenced(text: str) -> set[int]:
    # Markdown lines are comments; "section 6", "sections 6 and 7", "section\n# 8" (wrapped) all count.
    flat = re.sub(r"\n#\s*", " ", text)
    refs = set()
    for match in re.finditer(r"[Ss]ections? ((?:\d+(?:, | and | or )?)+)", flat):
        refs |= {int(n) for n in re.findall(r"\d+", match.group(1))}
    return refs


def test_the_helpers_see_wrapped_and_plural_references():
    assert _referenced("# see section\n# 8 and sections 6 and 7, section 10.") == {6, 7, 8, 10}
    assert _section_numbers("# ## 1. One\n# ## 12. Twelve\n# ### 3. not a section") == {1, 12}


@pytest.mark.parametrize("path", [LESSON, ROOT / "solutions" / "04_qk_ov_matching.py"])
def test_every_section_reference_in_lesson_4_exists(path):
    sections = _section_numbers(LESSON.read_text())
    assert sections == set(range(1, max(sections) + 1))  # numbered 1..n without gaps
    missing = _referenced(path.read_text()) - sections
    assert not missing, f"{path.name} refers to sections {sorted(missing)}, which lesson 4 does not have"
