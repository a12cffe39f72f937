"""toyattn.grading.cli: the `toyattn grade` and `toyattn run` command lines, their checks and messages."""

from __future__ import annotations

import csv
import json

from grading_helpers import PS, ROOT

from toyattn import grading
from toyattn.cli import main


def test_bad_command_lines_fail_with_a_message(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nowhere"), "--root", str(ROOT)]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "subs").mkdir()
    assert main(["grade", str(tmp_path / "subs"), "--root", str(ROOT), "--out", str(tmp_path / "out")]) == 2
    assert "No submissions found" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "subs"), "--root", str(ROOT), "--out", str(tmp_path / "subs" / "g")]) == 2
    assert "inside the submissions folder" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "subs"), "--root", str(ROOT), "--problem-set", "99_nope"]) == 2
    assert "Unknown problem set" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "subs"), "--root", str(ROOT), "--kernel", "no-such-kernel", "--no-sandbox"]) == 2
    assert "No Jupyter kernel named 'no-such-kernel'" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "subs"), "--root", str(ROOT), "--kernel", "python3"]) == 2
    assert "--kernel works only with --no-sandbox" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "subs"), "--root", str(ROOT), "--memory", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.ipynb")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_run_executes_a_notebook_headless(tmp_path):
    src = tmp_path / "lesson.py"
    src.write_text("# %%\nx = 6 * 7\nprint('answer', x)\n")
    out = tmp_path / "executed.ipynb"
    assert main(["run", str(src), "--out", str(out)]) == 0
    cells = json.loads(out.read_text())["cells"]
    assert "answer 42" in "".join(cells[0]["outputs"][0]["text"])
    src.write_text("# %%\nraise ValueError('boom')\n")
    assert main(["run", str(src), "--out", str(out)]) == 1


def test_only_handed_in_problem_sets_are_graded_and_gaps_are_not_submitted(tmp_path, capsys):
    # Unreadable files grade instantly (no kernel), which is all this test needs.
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    (tmp_path / "subs" / "ann" / f"{PS}.ipynb").write_text("not a notebook")
    (tmp_path / "subs" / "ben").mkdir()
    (tmp_path / "subs" / "ben" / "notes.txt").write_text("no notebook here")
    (tmp_path / "subs" / "ben__00_warmup.ipynb").write_text("{ broken json")
    assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--root", str(ROOT), "--jobs", "1",
                 "--no-sandbox"]) == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "problem sets: 00_warmup;" in summary  # lessons nobody handed in are left out
    assert "**Not sandboxed** (`--no-sandbox`)" in summary  # said where an instructor reads first
    sets = grading.load_problem_sets(ROOT)
    if len(sets) > 1:  # naming another problem set makes everyone "not submitted" for it
        other = next(name for name in sets if name != PS)
        main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out2"), "--root", str(ROOT),
              "--problem-set", PS, "--problem-set", other, "--no-executed", "--jobs", "1", "--no-sandbox"])
        with open(tmp_path / "out2" / "grades.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["problem_set"] == other]
        assert rows and {r["status"] for r in rows} == {"not submitted"} and {r["student"] for r in rows} == {"ann", "ben"}
    capsys.readouterr()
