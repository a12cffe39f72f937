"""The grader's parts that need no kernel: discovery of odd files, judging untrusted answers, the bwrap command, reports."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from grading_helpers import PS, ROOT, sandbox_or_skip, to_ipynb, variant

from toyattn import grading
from toyattn.checks import answers as answers_mod
from toyattn.checks.core import REGISTRY
from toyattn.grading import judging, reports, sandbox
from toyattn.grading.execute import execution_from_json


def good_softmax(x):
    e = (x - x.max(dim=-1, keepdim=True).values).exp()
    return e / e.sum(dim=-1, keepdim=True)


# ---------------------------------------------------------------- judging answers in the grader


def record(tmp_path, monkeypatch, check: str, fn, seed: int) -> Path:
    """What the student's kernel writes for ``fn`` in grading (run here, as the kernel would)."""
    folder = tmp_path / "answers"
    monkeypatch.setenv(answers_mod.ANSWERS_DIR_ENV, str(folder))
    monkeypatch.setenv(answers_mod.SEED_ENV, str(seed))
    try:
        REGISTRY[check](fn)
    except AssertionError:
        pass
    monkeypatch.delenv(answers_mod.ANSWERS_DIR_ENV)
    return folder


def test_right_answers_pass_only_for_their_own_seed(tmp_path, monkeypatch, capsys):
    folder = record(tmp_path, monkeypatch, "check_softmax", good_softmax, seed=1234)
    assert judging.judge_exercise(folder, "check_softmax", 1234) == ("passed", "")
    status, message = judging.judge_exercise(folder, "check_softmax", 99)  # answers computed for other inputs
    assert status == "failed" and "other inputs" in message
    assert judging.judge_exercise(folder, "check_one_hot", 1234) is None  # no answers: the status logic decides
    capsys.readouterr()


@pytest.mark.parametrize(
    ("json_text", "why"),
    [("{{{ not json", "not JSON"),
     ('{"check": "check_softmax", "seed": 1, "status": "passed", "cases": []}', "unknown status"),
     ('{"check": "check_one_hot", "seed": 1, "status": "answered", "cases": []}', "names another check"),
     ('["a", "list"]', "JSON object")],
)
def test_garbage_answers_are_a_grader_error(tmp_path, json_text, why):
    (tmp_path / "check_softmax.json").write_text(json_text)
    status, message = judging.judge_exercise(tmp_path, "check_softmax", 1)
    assert status == grading.GRADER_ERROR and why in message


def test_a_symlinked_answers_folder_or_file_is_a_grader_error(tmp_path, monkeypatch, capsys):
    real = record(tmp_path, monkeypatch, "check_softmax", good_softmax, seed=5)
    linked = tmp_path / "linked"
    linked.symlink_to(real)
    assert judging.judge_exercise(linked, "check_softmax", 5)[0] == grading.GRADER_ERROR
    other = tmp_path / "other"
    other.mkdir()
    (other / "check_softmax.json").symlink_to(real / "check_softmax.json")
    assert judging.judge_exercise(other, "check_softmax", 5)[0] == grading.GRADER_ERROR
    capsys.readouterr()


def test_made_up_numbers_of_the_right_shape_fail(tmp_path):
    seed = 7
    cases = REGISTRY["check_softmax"].cases(seed)
    np.savez(tmp_path / "check_softmax.npz",
             **{f"c{i}_0": np.full(tuple(c.args[0].shape), 0.5, np.float32) for i, c in enumerate(cases)})
    meta = {"check": "check_softmax", "seed": seed, "status": "answered", "message": "",
            "cases": [{"kinds": ["torch.Tensor:torch.float32"], "is_tuple": False} for _ in cases]}
    (tmp_path / "check_softmax.json").write_text(json.dumps(meta))
    assert judging.judge_exercise(tmp_path, "check_softmax", seed)[0] == "failed"


def test_a_check_that_cannot_be_judged_outside_is_a_grader_error(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "check_legacy_thing", lambda fn: None)
    status, message = judging.judge_exercise(tmp_path, "check_legacy_thing", 1)
    assert status == grading.GRADER_ERROR and "not gradable" in message


def test_the_runs_record_is_validated():
    run = execution_from_json({"seconds": 2, "errors": [{"cell": 3, "ename": "E", "evalue": "x" * 10_000,
                                                         "first_line": "f()"}], "stop_reason": "kernel died"})
    assert run.stop_reason == "kernel died" and len(run.errors[0].evalue) == 500
    for bad in ([], {"stop_reason": "passed"}, {"errors": [{"cell": "3"}]}, {"seconds": "fast"}, {"notes": [1]}):
        with pytest.raises(ValueError):
            execution_from_json(bad)


# ---------------------------------------------------------------- discovery of odd files


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


# ---------------------------------------------------------------- the bwrap command


def test_the_sandbox_shows_python_and_the_package_but_nothing_to_hide(tmp_path):
    scratch = tmp_path / "sandbox"
    (scratch / "work").mkdir(parents=True)
    cmd = sandbox.bwrap_command("bwrap", scratch, scratch / "work", ["python", "-V"], hidden=[tmp_path / "subs"])
    shown = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--ro-bind"]
    assert str(Path(sys.prefix).resolve()) in shown or any(sys.prefix.startswith(s) for s in shown)
    assert not any(s in ("/", "/home", "/root", str(ROOT)) for s in shown)
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--die-with-parent", "--new-session"):
        assert flag in cmd
    assert cmd[cmd.index("--") + 1:] == ["python", "-V"]
    with pytest.raises(grading.GradingError, match="would show"):
        sandbox.check_nothing_exposed([ROOT], [ROOT / "solutions"])


def test_without_bwrap_grading_refuses_and_says_why(tmp_path, monkeypatch, capsys):
    from toyattn.cli import main

    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    sandbox.sandbox_problem.cache_clear()
    try:
        (tmp_path / "subs" / "ann").mkdir(parents=True)
        (tmp_path / "subs" / "ann" / f"{PS}.ipynb").write_text("{}")
        assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--root", str(ROOT)]) == 2
        err = capsys.readouterr().err
        assert "bubblewrap (bwrap) is not installed" in err and "--no-sandbox" in err
    finally:
        sandbox.sandbox_problem.cache_clear()


def test_limits_hold_inside_the_sandbox_and_cannot_be_raised(tmp_path):

    sandbox_or_skip()
    code = (
        "import resource\n"
        "from toyattn.grading.sandbox import Limits, apply_limits\n"
        "apply_limits(Limits(memory_bytes=2**31, processes=64, file_bytes=2**20, cpu_seconds=100))\n"
        "try:\n    resource.setrlimit(resource.RLIMIT_AS, (2**32, 2**32)); print('raised')\n"
        "except (ValueError, OSError):\n    print('kept', resource.getrlimit(resource.RLIMIT_AS)[1])\n"
        "try:\n    b = bytearray(3 * 2**30); print('allocated')\n"
        "except MemoryError:\n    print('refused')\n"
        "try:\n    open('big', 'wb').write(bytes(2**21)); print('wrote')\n"
        "except OSError:\n    print('file too large')\n"
    )
    scratch = tmp_path / "sandbox"
    (scratch / "work").mkdir(parents=True)
    cmd = sandbox.bwrap_command(sandbox.find_bwrap(), scratch, scratch / "work", [sys.executable, "-c", code], hidden=[])
    env = sandbox.sandbox_env(scratch, {})
    # SIGXFSZ is ignored as the runner does, so the oversized write fails instead of killing the process
    out = subprocess.run(["python3", "-c", "import os, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                          "os.execvpe(sys.argv[1], sys.argv[1:], os.environ)", *cmd],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["kept", str(2**31), "refused", "file", "too", "large"], out.stderr[-2000:]


def test_python_and_course_under_the_hosts_tmp_stay_visible(tmp_path, monkeypatch):
    # A checkout in /tmp (as CI's clone may be) puts the venv and the package under the host's /tmp, which
    # the sandbox replaces with the student's own: they must be mounted on top of it, not hidden by it.
    sandbox_or_skip()
    course = tmp_path / "checkout" / ".venv"
    course.mkdir(parents=True)
    (course / "marker.txt").write_text("venv visible")
    (tmp_path / "checkout" / "solutions").mkdir()
    (tmp_path / "checkout" / "solutions" / "answer.txt").write_text("secret")
    shown = sandbox._python_dirs()
    monkeypatch.setattr(sandbox, "_python_dirs", lambda: [*shown, course])
    scratch = tmp_path / "sandbox"
    (scratch / "work").mkdir(parents=True)
    code = (f"import os; print(open({str(course / 'marker.txt')!r}).read()); "
            f"print(os.path.exists({str(tmp_path / 'checkout' / 'solutions')!r}))")
    cmd = sandbox.bwrap_command(sandbox.find_bwrap(), scratch, scratch / "work", [sys.executable, "-c", code],
                                hidden=[tmp_path / "checkout" / "solutions"])
    out = subprocess.run(cmd, env=sandbox.sandbox_env(scratch, {}), capture_output=True, text=True, timeout=120)
    assert out.stdout.split("\n")[:2] == ["venv visible", "False"], out.stderr[-2000:]


# ---------------------------------------------------------------- reports


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
