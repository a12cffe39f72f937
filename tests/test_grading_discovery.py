"""toyattn.grading.discovery: problem sets from the solutions, submissions found by name and layout, and
odd files (links, devices, names that are not UTF-8, deep folders) rejected without stopping the class."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from grading_helpers import PS, ROOT, _grade_unsandboxed, to_ipynb, variant

from toyattn import grading
from toyattn.checks.core import REGISTRY


def test_expected_checks_come_from_the_solution():
    ps = grading.problem_set_from_solution(ROOT / "solutions" / f"{PS}.py")
    assert [e.check for e in ps.exercises] == ["check_softmax", "check_one_hot"]
    assert ps.exercises[1].title.startswith("Exercise 2")


@pytest.mark.parametrize(
    ("stem", "expected"),
    [("00_warmup", "00_warmup"), ("00_warmup-Copy1", "00_warmup"), ("00_warmup (2)", "00_warmup"),
     ("00_warm_up", "00_warmup"), ("01_attention_toy", None), ("warmup", None)],
)
def test_file_names_map_to_problem_sets(stem, expected):
    assert grading.match_problem_set(stem, ["00_warmup", "02_other"]) == expected


def test_layouts_pairs_and_stray_files(tmp_path):
    nb = to_ipynb(variant({0, 1}))
    (tmp_path / "submitted" / "ann" / PS / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "submitted" / "ann" / PS / f"{PS}.ipynb").write_text(nb)
    (tmp_path / "submitted" / "ann" / PS / f"{PS}.py").write_text(variant({0, 1}))  # its jupytext twin
    (tmp_path / "submitted" / "ann" / PS / ".ipynb_checkpoints" / f"{PS}-checkpoint.ipynb").write_text(nb)
    (tmp_path / "submitted" / "ben__00_warmup.ipynb").write_text(nb)
    (tmp_path / "submitted" / "notes.ipynb").write_text(nb)
    subs, warnings = grading.find_submissions(tmp_path, [PS])
    assert [(s.student, Path(s.path).name) for s in subs] == [("ann", f"{PS}.ipynb"), ("ben", f"ben__{PS}.ipynb")]
    assert len(warnings) == 1 and "notes.ipynb" in warnings[0] and "__" in warnings[0]


@pytest.mark.parametrize("solution", sorted((ROOT / "solutions").glob("[0-9]*.py")), ids=lambda p: p.stem)
def test_every_problem_set_is_gradable(solution):
    """Each solution's exercises are registered checks, so `toyattn grade` can record them (new lessons included)."""

    ps = grading.problem_set_from_solution(solution)
    assert ps.exercises, f"{solution.name} calls no checks.check_...(, so it has nothing to grade"
    unknown = [e.check for e in ps.exercises if e.check not in REGISTRY]
    assert not unknown, f"{solution.name} calls checks that are not registered with @exercise_check: {unknown}"
    exercise = ROOT / "exercises" / solution.name
    assert {e.check for e in grading.problem_set_from_solution(exercise).exercises} == {e.check for e in ps.exercises}


def test_file_names_that_are_not_utf8_become_that_students_line(tmp_path, capsys):
    subs = tmp_path / "subs"
    (subs / "ann").mkdir(parents=True)
    (subs / "ann" / f"{PS}.ipynb").write_text("not a notebook")  # unreadable: graded without a kernel
    folder = os.path.join(os.fsencode(subs), b"j\xfcrgen")
    os.mkdir(folder)
    with open(os.path.join(folder, b"00_warmup-\xdcbung.ipynb"), "w") as f:
        f.write("{ broken")
    assert _grade_unsandboxed(subs, tmp_path / "out") == 0
    with open(tmp_path / "out" / "grades.csv", encoding="utf-8") as f:
        students = {r["student"] for r in csv.DictReader(f)}
    assert students == {"ann", "j\\xfcrgen"}
    assert "j\\\\xfcrgen" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    capsys.readouterr()


def test_a_deep_folder_is_skipped_and_the_class_graded(tmp_path, capsys):
    subs = tmp_path / "subs"
    (subs / "ann").mkdir(parents=True)
    (subs / "ann" / f"{PS}.ipynb").write_text("not a notebook")
    fd = os.open(subs, os.O_RDONLY)
    os.mkdir("deep", dir_fd=fd)
    for _ in range(1200):  # one level at a time through folder fds: no path grows past PATH_MAX
        nxt = os.open("deep" if _ == 0 else "d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
        os.mkdir("d", dir_fd=fd)
    os.close(fd)
    try:
        assert _grade_unsandboxed(subs, tmp_path / "out") == 0
        assert "ann" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    finally:
        subprocess.run(["rm", "-rf", str(subs / "deep")], check=False)
    capsys.readouterr()


def test_a_parent_folder_swapped_for_a_link_after_discovery_is_not_followed(tmp_path):
    subs = tmp_path / "subs"
    (subs / "eve" / "hw").mkdir(parents=True)
    (subs / "eve" / "hw" / f"{PS}.ipynb").write_text(to_ipynb(variant(set())), encoding="utf-8")
    sets = grading.load_problem_sets(ROOT, [PS])
    [sub], _ = grading.find_submissions(subs, sets)
    stolen = tmp_path / "stolen"
    stolen.mkdir()
    (stolen / f"{PS}.ipynb").write_text(to_ipynb(variant({0, 1})), encoding="utf-8")  # "the solution"
    (subs / "eve" / "hw").rename(tmp_path / "old-hw")
    (subs / "eve" / "hw").symlink_to(stolen)
    result = grading.grade_submission(sub, sets[PS], grading.GradeOptions(sandbox=False, timeout=60))
    assert result.n_passed == 0 and result.outcome == "unreadable", result


def test_symlinks_and_devices_are_rejected_with_a_message(tmp_path):
    nb = to_ipynb(variant({0, 1}))
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / f"{PS}.ipynb").symlink_to(ROOT / "solutions" / f"{PS}.ipynb")
    (tmp_path / f"pw__{PS}.ipynb").symlink_to("/etc/passwd")
    os.mkfifo(tmp_path / f"fifo__{PS}.ipynb")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / f"{PS}.ipynb").write_text(nb)
    (tmp_path / "linkdir").symlink_to(tmp_path / "real")  # a symlinked student folder is not entered
    subs, warnings = grading.find_submissions(tmp_path, [PS])
    by = {s.student: s for s in subs}
    assert set(by) == {"ann", "pw", "fifo", "real"}
    assert "symbolic link" in by["ann"].rejected and "symbolic link" in by["pw"].rejected
    assert "not a regular file" in by["fifo"].rejected and by["real"].rejected is None
    assert any("linkdir" in w for w in warnings)
    result = grading.grade_submission(by["pw"], grading.load_problem_sets(ROOT, [PS])[PS])
    assert result.outcome == "rejected" and result.n_passed == 0 and "root:" not in json.dumps(result.__dict__, default=str)
