"""The course's prose points only at things that exist: every "section N" names a real section, no link leaves the repo.

A student's clone is the repository and nothing else, so a path outside it (``../shared/...``) is a broken link
for every student. A "section N" reference is checked against the numbered headers (``## N. title``) of the
lesson it names: "lesson 4, section 8" or "lesson 2's section 7" name lesson 4 and 2; a bare "section N" in a
lecture or problem set names that lesson's lecture; in a guide (docs/) its own numbered sections. A module of
the package must say which lesson it means. Whether the section holds what the sentence promises is for a
reviewer to read; that the number exists is checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


LECTURES = {int(p.name[:2]): p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py")}


# "section 4", "sections 4 and 9", "sections 4, 5, 7, 12 and 13", "sections 1-4", "Section 8".
# A reference may wrap onto the next comment line of a notebook ("section\n# 8", "6 and\n# 7").
_WRAP = r"(?:\s*\n#)?"


SECTION_REF = re.compile(rf"\b[Ss]ections?{_WRAP}\s+(\d+[a-z]?(?:\s*(?:,|and|or|-|–|to){_WRAP}\s*\d+[a-z]?)*)\b")


# The lesson a reference names, in the text just before it: "lesson 4, ", "lesson 2's ", "notebooks/02_head...".
LESSON_NAMED = re.compile(r"(?:[Ll]esson (\d+)|notebooks/(\d\d)_\w+)")


def _sections(path: Path) -> set[str]:
    """The numbers of a file's numbered headers: ``# ## 3. Title`` (or ``5b.``) in a notebook, ``## 3. Title`` in a guide."""
    return set(re.findall(r"^(?:# )?##+ (\d+[a-z]?)\.", path.read_text(encoding="utf-8"), flags=re.M))


def _numbers(listed: str) -> list[str]:
    """'4, 5 and 7' -> ['4', '5', '7']; '1-4' -> ['1', '2', '3', '4']; '5b' -> ['5b']."""
    out: list[str] = []
    listed = re.sub(r"\s*\n#\s*", " ", listed)
    for part in re.split(r"\s*(?:,|and|or)\s*", listed):
        ends = [x for x in re.split(r"\s*(?:-|–|to)\s*", part) if x]
        if len(ends) == 2 and all(e.isdigit() for e in ends):
            out += [str(n) for n in range(int(ends[0]), int(ends[1]) + 1)]
        else:
            out += ends
    return out


def _sentence_before(text: str, at: int) -> str:
    """The text of the sentence (or clause) that ends at ``at``: back to the last full stop, semicolon, blank line or cell marker."""
    start = max(text.rfind(mark, 0, at) for mark in (". ", ".\n", "; ", ";\n", "\n#\n", "\n\n", "# %%"))
    return text[start + 1:at]


def _prose_files() -> list[Path]:
    files = sorted((ROOT / "notebooks").glob("*.py")) + sorted((ROOT / "solutions").glob("*.py"))
    files += sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "toyattn").rglob("*.py")) + [ROOT / "README.md"]
    return files


def _references(path: Path):
    """(line number, lesson or None, section numbers, the target file) for every section reference in ``path``."""
    text = path.read_text(encoding="utf-8")
    own = int(path.name[:2]) if path.parent.name in ("notebooks", "solutions") and path.name[:2].isdigit() else None
    for m in SECTION_REF.finditer(text):
        named = LESSON_NAMED.findall(_sentence_before(text, m.start()))
        lesson = next((int(a or b) for a, b in reversed(named)), own)
        if lesson is not None:
            target = LECTURES.get(lesson)
        elif path.parent.name == "docs":
            target = path
        else:
            target = None
        yield text.count("\n", 0, m.start()) + 1, lesson, _numbers(m.group(1)), target


@pytest.mark.parametrize("path", _prose_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_section_reference_names_a_section_that_exists(path):
    for line, _lesson, numbers, target in _references(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        assert target is not None, f"{where}: 'section {numbers}' without saying which lesson (write 'lesson N, section M')"
        missing = sorted(set(numbers) - _sections(target))
        assert not missing, f"{where}: section(s) {missing} do not exist in {target.relative_to(ROOT)}"


def test_the_reference_reader_resolves_lessons_and_lists():
    """The checker itself: a list, a range and a named lesson are read as a reader would."""
    assert _numbers("4, 5, 7, 12 and 13") == ["4", "5", "7", "12", "13"]
    assert _numbers("1-4") == ["1", "2", "3", "4"]
    assert _numbers("5b") == ["5b"]
    assert [_numbers(m.group(1)) for m in SECTION_REF.finditer("# see section\n# 8 and sections 6 and\n# 7, or 9")] == [
        ["8"], ["6", "7"]]
    text = "As in lesson 4, section 8 showed. Then section 2 here."
    assert LESSON_NAMED.findall(_sentence_before(text, text.index("section 8"))) == [("4", "")]
    assert LESSON_NAMED.findall(_sentence_before(text, text.index("section 2"))) == []


def test_a_wrong_section_number_is_caught(tmp_path):
    """A lecture that cites a section it does not have fails the check (so the check above can fail)."""
    lesson = tmp_path / "notebooks" / "07_demo.py"
    lesson.parent.mkdir()
    lesson.write_text("# ## 1. One\n# as section 2 shows\n# ## 2. Two\n# and section 3 too\n", encoding="utf-8")
    refs = list(_references(lesson))
    assert [r[2] for r in refs] == [["2"], ["3"]]
    assert [n for n in ("2", "3") if n not in _sections(lesson)] == ["3"]


OUTSIDE = re.compile(r"\.\./shared\b|(?<![\w.])shared/(?:references|seeds)\b")


@pytest.mark.parametrize("folder", ["notebooks", "exercises", "solutions", "toyattn", "docs", "site", "README.md"])
def test_nothing_links_outside_the_repository(folder):
    """The research notes the course grew from are not in a student's clone: the course cites docs/references.md."""
    base = ROOT / folder
    files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file() and "_build" not in p.parts
                                            and p.suffix in (".py", ".md", ".ipynb", ".yml", ".html", ".txt")]
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in files
           for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert not bad, f"links to a folder that is not in the repository (cite docs/references.md instead): {bad}"


def test_the_references_page_ships_and_is_on_the_site():
    assert (ROOT / "docs" / "references.md").is_file()
    assert "docs/references" in (ROOT / "site" / "_toc.yml").read_text(encoding="utf-8")


_TEST_FILE = re.compile(r"tests/(?:[\w/]+/)?test_\w+\.py")


def _texts_that_name_test_files() -> list[Path]:
    folders = ("notebooks", "solutions", "docs", "toyattn", "benchmarks")
    return [ROOT / "README.md", *(p for f in folders for p in (ROOT / f).rglob("*") if p.suffix in (".py", ".md"))]


def test_every_test_file_the_course_names_exists():
    """The lessons say which test backs a claim ("`tests/test_circuits_ablation.py` checks ..."): the file must exist."""
    missing = [f"{path.relative_to(ROOT)}: {name}" for path in _texts_that_name_test_files()
               for name in sorted(set(_TEST_FILE.findall(path.read_text(encoding="utf-8")))) if not (ROOT / name).is_file()]
    assert not missing, "rename these references to the test files that now hold the tests:\n" + "\n".join(missing)


def test_a_stale_test_file_name_is_caught():
    assert _TEST_FILE.findall("as `tests/test_head_ablation.py` checks") == ["tests/test_head_ablation.py"]
    assert not (ROOT / "tests/test_head_ablation.py").is_file()
