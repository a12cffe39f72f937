"""``toyattn collect``: problem sets out of students' home folders, never following what a student links."""

from __future__ import annotations

import os

import pytest

from toyattn.cli import main
from toyattn.grading import collect as collect_module
from toyattn.grading.collect import CollectError, collect


def _home(homes, student, files: dict[str, str]):
    ex = homes / student / "toyattn" / "exercises"
    ex.mkdir(parents=True)
    for name, text in files.items():
        (ex / name).write_text(text)
    return ex


def test_copies_each_students_problem_sets_into_the_layout_grade_reads(tmp_path):
    homes = tmp_path / "home"
    _home(homes, "ada", {"00_warmup.ipynb": "{}", "00_warmup.py": "# py", "notes.txt": "x", "00_warmup-Copy1.ipynb": "{}"})
    _home(homes, "bob", {"00_warmup.ipynb": "{}"})
    (homes / "prof").mkdir()
    results = collect(homes, tmp_path / "submissions")
    assert {r.student: r.files for r in results} == {
        "ada": ["00_warmup-Copy1.ipynb", "00_warmup.ipynb", "00_warmup.py"], "bob": ["00_warmup.ipynb"], "prof": []}
    assert "never opened the course" in results[2].skipped[0][1]
    assert (tmp_path / "submissions" / "ada" / "00_warmup.py").read_text() == "# py"
    assert not (tmp_path / "submissions" / "ada" / "notes.txt").exists()


def test_never_follows_a_link_a_student_made(tmp_path):
    homes = tmp_path / "home"
    _home(homes, "ada", {"00_warmup.ipynb": "ada's answers"})
    secret = tmp_path / "secret.txt"
    secret.write_text("root's secret")
    ex = _home(homes, "eve", {})
    (ex / "00_warmup.ipynb").symlink_to(secret)  # an exercise linked to a file eve cannot read
    (homes / "mal").mkdir()
    (homes / "mal" / "toyattn").symlink_to(homes / "ada" / "toyattn")  # the course linked to ada's
    os.mkfifo(ex / "01_attention_toy.ipynb")  # a reader would hang on it
    results = {r.student: r for r in collect(homes, tmp_path / "out")}
    assert results["eve"].files == [] and results["mal"].files == []
    reasons = dict(results["eve"].skipped)
    assert reasons["eve/toyattn/exercises/00_warmup.ipynb"] == "a symbolic link (not followed)"
    assert reasons["eve/toyattn/exercises/01_attention_toy.ipynb"] == "not a regular file"
    assert "a symbolic link (not followed)" in results["mal"].skipped[0][1]
    assert not (tmp_path / "out" / "eve").exists() and not (tmp_path / "out" / "mal").exists()
    assert results["ada"].files == ["00_warmup.ipynb"]


def test_a_file_over_the_size_limit_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(collect_module, "MAX_SUBMISSION_BYTES", 10)
    homes = tmp_path / "home"
    _home(homes, "ada", {"00_warmup.ipynb": "x" * 11})
    (result,) = collect(homes, tmp_path / "out")
    assert result.files == [] and "larger than" in result.skipped[0][1]


@pytest.mark.parametrize(("out", "options", "message"), [
    ("home/sub", {}, "inside"), ("full", {}, "not empty"),
    ("a", {"students": ["../ada"]}, "not a folder name"), ("b", {"course": ".."}, "not a folder name")])
def test_refuses_a_bad_output_folder_or_a_name_that_is_not_one_folder(tmp_path, out, options, message):
    _home(tmp_path / "home", "ada", {"00_warmup.ipynb": "{}"})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old").write_text("")
    with pytest.raises(CollectError, match=message):
        collect(tmp_path / "home", tmp_path / out, **options)


def test_command_line_reports_and_fails_when_nothing_was_collected(tmp_path, capsys):
    _home(tmp_path / "home", "ada", {"00_warmup.ipynb": "{}"})
    assert main(["collect", str(tmp_path / "home"), "--out", str(tmp_path / "a")]) == 0
    assert "ada: 1 file(s) (00_warmup.ipynb)" in capsys.readouterr().out
    assert main(["collect", str(tmp_path / "home"), "--out", str(tmp_path / "b"), "--course", "other"]) == 1
    assert main(["collect", str(tmp_path / "nohomes"), "--out", str(tmp_path / "c")]) == 1
    assert "is not a folder" in capsys.readouterr().err
