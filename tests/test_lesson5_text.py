"""Lesson 5's text: every "section N" it names exists, and it links nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

LESSON = Path(__file__).resolve().parents[1] / "notebooks" / "05_induction_circuits.py"


def test_every_section_reference_names_a_section_of_the_lesson():
    text = LESSON.read_text()
    headers = {int(n) for n in re.findall(r"^# ## (\d+)\.", text, flags=re.M)}
    # References into other lessons ("lesson 4, section 8") are about those lessons: skip them.
    own = re.sub(r"lesson \d+, sections? [\d, and-]+", "", text.replace("\n# ", " "))
    cited = {int(n) for group in re.findall(r"sections? ((?:\d+(?:, | and |-)?)+)", own)
             for n in re.findall(r"\d+", group)}
    assert cited, "the pattern found no references at all"
    assert cited <= headers, f"references to missing sections: {sorted(cited - headers)}"


def test_nothing_links_outside_the_repository():
    assert "shared/" not in LESSON.read_text()
