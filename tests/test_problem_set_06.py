"""Lesson 6's problem set points at the lecture correctly: the sections it leans on hold what it says they hold."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = (ROOT / "solutions" / "06_real_model_induction.py").read_text()
LECTURE = (ROOT / "notebooks" / "06_real_model_induction.py").read_text()


def lecture_sections() -> dict[int, str]:
    return {int(n): title for n, title in re.findall(r"^# ## (\d+)\. (.+)$", LECTURE, flags=re.M)}


def test_the_sections_the_problem_set_leans_on_hold_what_it_says():
    sections = lecture_sections()
    promised = {1: "weights", 2: "forward pass", 7: "direct logit attribution", 8: "patching"}
    for n, words in promised.items():
        assert f"section {n}" in PROBLEMS.lower(), f"the problem set no longer names section {n}: update this test"
        assert words in sections[n].lower(), f"section {n} is {sections[n]!r}, not about {words!r}"


def test_the_lesson_and_its_test_state_the_same_tolerance():
    from test_real_model import TOLERANCE

    stated = re.search(r"^TOLERANCE = ([0-9.e-]+)", LECTURE, flags=re.M)
    assert stated, "the lecture no longer states TOLERANCE = ...: update this test"
    assert float(stated.group(1)) == TOLERANCE
