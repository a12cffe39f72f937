"""`toyattn grade` (toyattn.grading.grade): generated submissions of every kind (correct, stubs, mixed, wrong,
broken) graded in real kernels.

The submissions are made from ``solutions/00_warmup.py`` (answers kept or stubbed region by region)
and ``exercises/00_warmup``, so they follow the problem set as it is. One class of seven notebooks is
graded once per module; the 30-submission timing run is marked ``slow``."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import pytest
from grading_helpers import PS, ROOT, drop_cell_calling, sandbox_or_skip, to_ipynb, variant

from toyattn import grading
from toyattn.cli import main
from toyattn.grading import sandbox

NAIVE_SOFTMAX = "e = x.exp()\nreturn e / e.sum(dim=-1, keepdim=True)"  # overflows on large scores


ENDLESS = "while True:\n    pass"


CRASH = "import os\nos._exit(1)"


BAD_SYNTAX = "return x.exp( / 2"


# Tries to damage files around it: its own file, the instructor's solutions, a file next to it.
TAMPER = (
    "from pathlib import Path\n"
    "for target in [Path('00_warmup.ipynb'), Path('../../solutions/00_warmup.py'), Path('pwned.txt')]:\n"
    "    try:\n"
    "        target.write_text('overwritten by a student')\n"
    "    except OSError:\n"
    "        pass\n"
    "e = (x - x.max(dim=-1, keepdim=True).values).exp()\n"
    "return e / e.sum(dim=-1, keepdim=True)"
)


def make_class(folder: Path) -> dict[str, Path]:
    """Seven students in the three layouts the grader reads; returns student -> submitted file.

    Kinds are paired up inside notebooks to keep the kernel count (and the test's time) down.
    """
    files: dict[str, Path] = {}

    def put(student: str, rel: str, text: str) -> None:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files[student] = path

    # nbgrader's layout: all correct (its softmax also tries to overwrite files around it).
    put("ada", f"ada/{PS}/{PS}.ipynb", to_ipynb(variant({1}, {0: TAMPER})))
    # a flat file: the untouched exercise, all stubs, saved with outputs of an old run that claim a
    # pass and show an error (the grader must judge only its own run).
    stubs = json.loads((ROOT / "exercises" / f"{PS}.ipynb").read_text(encoding="utf-8"))
    code = [c for c in stubs["cells"] if c["cell_type"] == "code"]
    code[1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["✅ PASSED check_softmax: faked\n"]}]
    # An empty cell is never executed, so its old error output would survive a run that did not clear it.
    stubs["cells"].append({"cell_type": "code", "id": "stale", "metadata": {}, "execution_count": 9, "source": "",
                           "outputs": [{"output_type": "error", "ename": "NameError", "evalue": "stale", "traceback": []}]})
    put("bo", f"bo__{PS}.ipynb", json.dumps(stubs))
    # mixed, as a py:percent file: softmax done, one-hot still a stub.
    put("cy", f"cy/{PS}.py", variant({0}))
    # a wrong softmax, and the one-hot exercise cell deleted; a "-Copy1" name.
    put("di", f"di/{PS}-Copy1.ipynb", to_ipynb(drop_cell_calling(variant(set(), {0: NAIVE_SOFTMAX}), "check_one_hot")))
    # a syntax error in exercise 1, then a kernel crash in exercise 2.
    put("ed", f"ed/{PS}.ipynb", to_ipynb(variant(set(), {0: BAD_SYNTAX, 1: CRASH})))
    # an endless loop in exercise 1, exercise 2 right.
    put("fay", f"fay/{PS}.ipynb", to_ipynb(variant({1}, {0: ENDLESS})))
    # not a notebook at all.
    put("ivy", f"ivy/{PS}.ipynb", '{"cells": [ this is not json')
    return files


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    sandbox_or_skip()
    base = tmp_path_factory.mktemp("class")
    subs, out = base / "submissions", base / "grading"
    files = make_class(subs)
    before = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}
    start = time.perf_counter()
    rc = main(["grade", str(subs), "--out", str(out), "--jobs", "2", "--timeout", "60", "--cell-timeout", "15",
               "--root", str(ROOT), "--problem-set", PS])
    seconds = time.perf_counter() - start
    with open(out / "grades.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    status = {(r["student"], r["exercise"]): r for r in rows}
    with open(out / "notebooks.csv", encoding="utf-8") as f:
        notebooks = {r["student"]: r for r in csv.DictReader(f)}
    return {
        "rc": rc, "out": out, "subs": subs, "files": files, "before": before, "seconds": seconds,
        "status": status, "notebooks": notebooks,
    }


def st(graded, student: str, check: str) -> str:
    return graded["status"][(student, check)]["status"]


def test_the_run_finishes_and_reports_every_student(graded):
    assert graded["rc"] == 0
    assert set(graded["notebooks"]) == set(graded["files"])
    print(f"graded {len(graded['files'])} notebooks in {graded['seconds']:.1f} s (2 jobs)")


def test_all_correct_and_all_stubs(graded):
    assert st(graded, "ada", "check_softmax") == st(graded, "ada", "check_one_hot") == "passed"
    assert graded["notebooks"]["ada"]["outcome"] == "ok"
    assert st(graded, "bo", "check_softmax") == st(graded, "bo", "check_one_hot") == "not implemented"
    assert "not implemented yet" in graded["status"][("bo", "check_softmax")]["message"]
    assert graded["notebooks"]["bo"]["outcome"] == "ok"  # the notebook ran; its exercises are stubs
    assert "stale" not in graded["notebooks"]["bo"]["problems"]  # old outputs were cleared, not judged


def test_mixed_and_wrong_answers_are_told_apart(graded):
    assert (st(graded, "cy", "check_softmax"), st(graded, "cy", "check_one_hot")) == ("passed", "not implemented")
    assert st(graded, "di", "check_softmax") == "failed"
    assert "NaN" in graded["status"][("di", "check_softmax")]["message"]  # the check's own explanation


def test_missing_cell(graded):
    assert st(graded, "di", "check_one_hot") == "missing"
    assert "missing cell" in graded["notebooks"]["di"]["problems"]


def test_syntax_error_then_crash(graded):
    assert st(graded, "ed", "check_softmax") == "error"
    assert "SyntaxError" in graded["status"][("ed", "check_softmax")]["message"]
    # The syntax error did not stop the notebook: exercise 2 ran, and killed its kernel.
    assert st(graded, "ed", "check_one_hot") == "error"
    assert "kernel died" in graded["status"][("ed", "check_one_hot")]["message"]
    nb = graded["notebooks"]["ed"]
    assert nb["outcome"] == "kernel died" and "syntax error" in nb["problems"]


def test_endless_loop_is_interrupted_and_the_rest_still_runs(graded):
    assert st(graded, "fay", "check_softmax") == "timeout"
    assert st(graded, "fay", "check_one_hot") == "passed"
    nb = graded["notebooks"]["fay"]
    assert nb["outcome"] == "timeout" and "interrupted" in nb["problems"]
    assert float(nb["seconds"]) < 50  # the 15 s cell limit held, below the 60 s notebook limit (imports take a while on a busy machine)


def test_unreadable_file(graded):
    assert graded["notebooks"]["ivy"]["outcome"] == "unreadable"
    assert st(graded, "ivy", "check_softmax") == st(graded, "ivy", "check_one_hot") == "error"


def test_students_cannot_touch_the_instructors_files(graded):
    assert st(graded, "ada", "check_softmax") == "passed"  # the tampering code ran
    after = {p: p.read_bytes() for p in graded["subs"].rglob("*") if p.is_file()}
    assert after == graded["before"], "a submission file changed or appeared while grading"
    assert b"overwritten by a student" not in (ROOT / "solutions" / f"{PS}.py").read_bytes()
    assert not (ROOT / "pwned.txt").exists() and not (Path.cwd() / "pwned.txt").exists()


def test_reports_summary_scores_and_executed_copies(graded):
    out = graded["out"]
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| ada | 2/2 |" in summary and "| cy | 1/2 (1 not implemented) |" in summary
    assert "| bo | 0/2 (2 not implemented) |" in summary
    assert "Exercise 1: a softmax that does not overflow" in summary  # exercise titles from the solution
    assert "Each notebook ran in its own sandbox" in summary and "Not sandboxed" not in summary
    with open(out / "scores.csv", encoding="utf-8") as f:
        scores = {r["student"]: int(r["passed"]) for r in csv.DictReader(f)}
    assert scores["ada"] == 2 and scores["bo"] == 0 and scores["cy"] == 1
    executed = json.loads((out / "executed" / "ada" / f"{PS}.ipynb").read_text(encoding="utf-8"))
    texts = "".join(
        "".join(o.get("text", "")) for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]
    )
    assert texts.count(recorded_prefix()) == 2  # in grading the kernel only records; the grader judges
    assert "_toyattn_grading_setup" not in json.dumps(executed)  # the hidden grader cell is removed
    feedback = (out / "feedback" / "di.md").read_text(encoding="utf-8")
    assert "0 of 2 exercises pass" in feedback and "contains NaN" in feedback and "missing" in feedback


def recorded_prefix() -> str:
    from toyattn.checks.core import RECORDED_PREFIX

    return RECORDED_PREFIX


@pytest.mark.slow
def test_thirty_submissions_finish_within_a_few_minutes(tmp_path):
    sandbox_or_skip()
    kinds = (
        [("ok", variant({0, 1}))] * 12 + [("half", variant({0}))] * 6 + [("stub", variant(set()))] * 4
        + [("wrong", variant({1}, {0: NAIVE_SOFTMAX}))] * 3 + [("syntax", variant({1}, {0: BAD_SYNTAX}))] * 2
        + [("loop", variant({1}, {0: ENDLESS}))] + [("crash", variant({0}, {1: CRASH}))]
        + [("missing", drop_cell_calling(variant({0, 1}), "check_one_hot"))]
    )
    assert len(kinds) == 30
    for i, (kind, text) in enumerate(kinds):
        (tmp_path / "subs" / f"s{i:02d}_{kind}").mkdir(parents=True)
        (tmp_path / "subs" / f"s{i:02d}_{kind}" / f"{PS}.ipynb").write_text(to_ipynb(text))
    start = time.perf_counter()
    rc = main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--cell-timeout", "10",
               "--no-executed", "--root", str(ROOT), "--problem-set", PS])
    seconds = time.perf_counter() - start
    print(f"30 submissions graded in {seconds:.1f} s with {grading.default_jobs()} jobs")
    assert rc == 0
    with open(tmp_path / "out" / "scores.csv") as f:
        scores = {r["student"]: int(r["passed"]) for r in csv.DictReader(f)}
    expected = {"ok": 2, "half": 1, "stub": 0, "wrong": 1, "syntax": 1, "loop": 1, "crash": 1, "missing": 1}
    assert {s: scores[s] for s in scores} == {s: expected[s.split("_", 1)[1]] for s in scores}
    assert seconds < 300, f"30 submissions took {seconds:.0f} s, more than 5 minutes"


def test_a_sandbox_over_its_wall_clock_is_killed_with_everything_in_it(tmp_path):
    import time

    from toyattn.grading.grade import _run_contained

    sandbox_or_skip()
    scratch = tmp_path / "sandbox"
    (scratch / "work").mkdir(parents=True)
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
            "time.sleep(60)\n")
    cmd = sandbox.bwrap_command(sandbox.find_bwrap(), scratch, scratch / "work", [sys.executable, "-c", code], hidden=[])
    start = time.monotonic()
    rc, killed = _run_contained(cmd, sandbox.sandbox_env(scratch, {}), scratch / "work", tmp_path / "log", wall=3)
    assert killed and rc is None and time.monotonic() - start < 20
    time.sleep(0.5)
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"time.sleep(60)" in Path(f"/proc/{pid}/cmdline").read_bytes():
                leftovers.append(pid)
        except OSError:
            continue
    assert not leftovers, "a process of the killed sandbox survived"
