"""toyattn.grading.reports: report cells neutralised, clipped and escaped; file names kept apart; totals."""

from __future__ import annotations

import csv

import pytest
from grading_helpers import PS, ROOT, _grade_unsandboxed

from toyattn import grading
from toyattn.grading import reports


def test_reports_carry_no_control_characters(tmp_path):
    ps = grading.load_problem_sets(ROOT, [PS])
    name = "eve\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\x9b31m\x85"
    result = grading.NotebookResult(name, PS, f"/subs/{name}/x.ipynb", "errors", 1.0,
                                    ["error: ValueError\x1b[31m in cell 3: \x07bell"],
                                    [grading.ExerciseResult(e.check, e.title, "error", "Boom\x1b]0;title\x07\x9d")
                                     for e in ps[PS].exercises])
    text = reports.write_reports([result], ps, tmp_path)
    written = [p.read_text(encoding="utf-8") for p in tmp_path.rglob("*") if p.is_file()] + [text]
    for content in written:
        assert not any(ch in content for ch in "\x1b\x07\x9b\x9d\x85"), content[:300]
    assert "eve\\x1b" in (tmp_path / "notebooks.csv").read_text(encoding="utf-8")


def test_totals_count_only_the_classs_problem_sets(tmp_path, capsys):
    sets = grading.load_problem_sets(ROOT)
    if len(sets) < 2:
        pytest.skip("one problem set only")
    subs = tmp_path / "subs"
    for student in ("ann", "ben", "eve"):
        (subs / student).mkdir(parents=True)
        (subs / student / f"{PS}.ipynb").write_text("not a notebook")
    for other in (n for n in sets if n != PS):
        (subs / "eve" / f"{other}.ipynb").write_text("not a notebook")  # stubs of every other problem set
    assert _grade_unsandboxed(subs, tmp_path / "out") == 0
    with open(tmp_path / "out" / "scores.csv", encoding="utf-8") as f:
        totals = {r["student"]: r["exercises"] for r in csv.DictReader(f)}
    n = len(sets[PS].exercises)
    assert totals == {"ann": str(n), "ben": str(n), "eve": str(n)}
    assert "not graded: handed in by only 1 of 3 students" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    capsys.readouterr()


def test_report_cells_are_neutralised_clipped_and_escaped():
    assert reports.csv_cell('=HYPERLINK("x")') == "'=HYPERLINK(\"x\")"
    assert [reports.csv_cell(v) for v in ("+1", "-1", "@a", "ok", 3)] == ["'+1", "'-1", "'@a", "ok", 3]
    assert len(reports.clip("x" * 5_000_000)) < 600
    assert reports.md("a|b *c* <script>\nnext") == r"a\|b \*c\* \<script\> next"


def test_names_that_sanitise_alike_get_their_own_files():
    names = reports.unique_names(["ann lee", "ann_lee", "Bob", "bob", "../etc", ".hidden"])
    assert len(set(n.casefold() for n in names.values())) == 6  # distinct on case-insensitive disks too
    assert names["ann_lee"] == "ann_lee"  # a name that is already a safe file name keeps it
    assert all("/" not in n and not n.startswith(".") for n in names.values())


def test_an_unknown_status_does_not_break_the_reports(tmp_path):
    ps = grading.load_problem_sets(ROOT, [PS])
    weird = grading.NotebookResult("eve", PS, "x", "strange", 1.0, ["p" * 10_000],
                                   [grading.ExerciseResult(e.check, e.title, "exploded", "m" * 10_000)
                                    for e in ps[PS].exercises])
    text = reports.write_reports([weird], ps, tmp_path, isolation="Each notebook ran in its own sandbox.")
    assert "exploded" in text and "Each notebook ran in its own sandbox." in text
    with open(tmp_path / "grades.csv", encoding="utf-8") as f:
        assert all(len(r["message"]) < 600 for r in csv.DictReader(f))
    assert (tmp_path / "feedback" / "eve.md").exists()
