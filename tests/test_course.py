"""Paired notebooks and generated exercises stay honest: the real repo is clean, and each way of
breaking it (stale exercise, drifted pair, committed outputs, missing twin, bad markers) is caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest

from toyattn import course

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_pair_is_in_sync_and_without_outputs():
    problems = course.check_pairs(ROOT)
    assert not problems, "\n".join(map(str, problems)) + "\nFix: edit the .py files, then run `toyattn build`."


def test_exercises_are_freshly_generated_from_solutions():
    problems = course.check_exercises(ROOT)
    assert not problems, "\n".join(map(str, problems)) + "\nFix: run `toyattn build`."


@pytest.mark.parametrize("stem", course.notebook_names(ROOT / "solutions"))
def test_exercise_structure_matches_its_solution(stem):
    sol = (ROOT / "solutions" / f"{stem}.py").read_text()
    ex = (ROOT / "exercises" / f"{stem}.py").read_text()
    n = course.count_solution_regions(sol)
    assert n >= 1
    assert ex.count("# YOUR CODE HERE") == sol.count("# YOUR CODE HERE") + n
    assert ex.count("raise NotImplementedError()") == sol.count("raise NotImplementedError()") + n
    # the exercise must still be valid Python: a student can run every cell
    compile(ex, f"exercises/{stem}.py", "exec")
    # same cells, same order: only code inside the marked regions differs
    sol_nb = jupytext.reads(sol, fmt="py:percent")
    ex_nb = jupytext.reads(ex, fmt="py:percent")
    assert [c.cell_type for c in sol_nb.cells] == [c.cell_type for c in ex_nb.cells]


@pytest.mark.parametrize("folder", ["notebooks", "solutions"])
def test_lessons_state_goals_and_next_steps(folder):
    for stem in course.notebook_names(ROOT / folder):
        text = (ROOT / folder / f"{stem}.py").read_text().lower()
        assert "learning goals" in text, f"{folder}/{stem}.py: state the learning goals at the top"
        assert "next" in text.split("\n# %%")[-1], f"{folder}/{stem}.py: end with what to try next"


def test_strip_keeps_indentation_and_everything_outside_markers():
    src = (
        "def f(x):\n"
        "    y = 1\n"
        "    ### BEGIN SOLUTION\n"
        "    return x + y\n"
        "    ### END SOLUTION\n"
        "print('this is the solved version')\n"
    )
    assert course.strip_solutions(src) == (
        "def f(x):\n"
        "    y = 1\n"
        "    # YOUR CODE HERE\n"
        "    raise NotImplementedError()\n"
        "print('this is the exercise version')\n"
    )


def test_the_solved_version_banner_reads_right_on_the_exercise():
    # The whole banner line is replaced: swapping only "solved" for "exercise" left "This is the exercise
    # version ...; students get the exercise version in exercises/" on the exercise itself.
    src = "# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*\n"
    out = course.strip_solutions(src)
    assert out == f"# {course.EXERCISE_BANNER}\n"
    assert "students get" not in out and "solved version is in `solutions/`" in out
    for path in sorted((ROOT / "exercises").glob("*.py")):  # every real exercise carries the banner once
        text = path.read_text(encoding="utf-8")
        assert text.count(course.EXERCISE_BANNER) == 1 and "students get the exercise version" not in text, path.name


@pytest.mark.parametrize(
    "src, problem",
    [
        ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("x = 1\n### END SOLUTION\n", "without a"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside the region"),
    ],
)
def test_malformed_markers_name_file_and_line(src, problem):
    with pytest.raises(course.CourseError, match=problem) as info:
        course.strip_solutions(src, filename="solutions/99_x.py")
    assert str(info.value).startswith("solutions/99_x.py:")


@pytest.fixture
def course_copy(tmp_path: Path) -> Path:
    for name in ("solutions", "exercises", "notebooks"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (tmp_path / "pyproject.toml").write_text("")
    assert course.check_pairs(tmp_path) == [] and course.check_exercises(tmp_path) == []
    return tmp_path


def test_stale_exercise_is_caught(course_copy):
    ex = course_copy / "exercises" / "00_warmup.py"
    ex.write_text(ex.read_text().replace("# YOUR CODE HERE", "# YOUR CODE HERE (edited by hand)", 1))
    problems = [str(p) for p in course.check_exercises(course_copy)]
    assert any("00_warmup.py: is stale" in p for p in problems), problems


def test_exercise_with_answers_left_in_is_caught(course_copy):
    shutil.copy(course_copy / "solutions" / "00_warmup.py", course_copy / "exercises" / "00_warmup.py")
    problems = [str(p) for p in course.check_exercises(course_copy)]
    assert any("still contains solution markers" in p for p in problems), problems


def test_missing_exercise_and_orphan_exercise_are_caught(course_copy):
    (course_copy / "exercises" / "00_warmup.py").unlink()
    (course_copy / "exercises" / "07_orphan.py").write_text("# %%\nx = 1\n")
    problems = [str(p) for p in course.check_exercises(course_copy)]
    assert any("00_warmup.py: is missing" in p for p in problems)
    assert any("07_orphan.py: has no solution" in p for p in problems)


def test_drifted_pair_is_caught(course_copy):
    py = course_copy / "notebooks" / "00_start_here.py"
    py.write_text(py.read_text() + "\n# %%\nprint('added only to the .py')\n")
    problems = [str(p) for p in course.check_pairs(course_copy)]
    assert any("notebooks/00_start_here.ipynb: has drifted" in p for p in problems), problems


def test_drift_inside_the_ipynb_is_caught(course_copy):
    path = course_copy / "notebooks" / "00_start_here.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source += "\nedited only in JupyterLab without jupytext"
    nbformat.write(nb, path)
    assert any("has drifted" in str(p) for p in course.check_pairs(course_copy))


def test_committed_outputs_are_caught(course_copy):
    path = course_copy / "solutions" / "00_warmup.ipynb"
    nb = json.loads(path.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hello\n"]}]
    code["execution_count"] = 1
    path.write_text(json.dumps(nb))
    problems = [str(p) for p in course.check_pairs(course_copy)]
    assert any("committed with outputs" in p for p in problems), problems


def test_missing_twin_is_caught(course_copy):
    (course_copy / "notebooks" / "00_start_here.ipynb").unlink()
    (course_copy / "notebooks" / "09_lonely.ipynb").write_text(
        (course_copy / "solutions" / "00_warmup.ipynb").read_text()
    )
    problems = [str(p) for p in course.check_pairs(course_copy)]
    assert any("00_start_here.py: has no .ipynb twin" in p for p in problems)
    assert any("09_lonely.ipynb: has no py:percent twin" in p for p in problems)


def test_build_repairs_what_the_checks_report(course_copy):
    (course_copy / "exercises" / "00_warmup.py").write_text("stale")
    (course_copy / "notebooks" / "00_start_here.ipynb").unlink()
    written = course.build(course_copy)
    assert "exercises/00_warmup.py" in written and "notebooks/00_start_here.ipynb" in written
    assert course.check_pairs(course_copy) == [] and course.check_exercises(course_copy) == []
    assert course.build(course_copy) == []  # idempotent
