"""Lesson 5's problem set points at the lecture correctly: each "section N" it names is a section of
``notebooks/05_induction_circuits`` (a ``## N.`` header), and the sections it leans on hold what it
says they hold."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


PROBLEMS = (ROOT / "solutions" / "05_induction_circuits.py").read_text()


LECTURE = (ROOT / "notebooks" / "05_induction_circuits.py").read_text()


def lecture_sections() -> dict[int, str]:
    """``{N: title}`` of the lecture's ``## N. title`` headers."""
    return {int(n): title for n, title in re.findall(r"^# ## (\d+)\. (.+)$", LECTURE, flags=re.M)}


def referenced_sections(text: str) -> set[int]:
    found = set()
    for match in re.finditer(r"[Ss]ections? ((?:\d+(?:, | and | to |-))*\d+)", text):
        found.update(int(n) for n in re.findall(r"\d+", match.group(1)))
    return found


def test_every_section_reference_exists_in_the_lecture():
    referenced, sections = referenced_sections(PROBLEMS), lecture_sections()
    assert referenced, "the problem set names no lecture section; the regex may be broken"
    assert not referenced - set(sections), f"sections {sorted(referenced - set(sections))} are not in the lecture"


def test_the_sections_the_problem_set_leans_on_hold_what_it_says():
    sections = lecture_sections()
    promised = {3: "patching", 4: "subspace", 6: "folding the layer norm", 11: "real model", 13: "random head pairs",
                14: "causal test in the real model"}
    for n, words in promised.items():
        assert f"section {n}" in PROBLEMS.lower(), f"the problem set no longer names section {n}: update this test"
        assert words in sections[n].lower(), f"section {n} is {sections[n]!r}, not about {words!r}"


def test_the_reference_regex_reads_lists_and_ranges():
    assert referenced_sections("see sections 4 and 9, section 12, Sections 2-5") == {2, 4, 5, 9, 12}
