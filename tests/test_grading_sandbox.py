"""toyattn.grading.sandbox: the bwrap command shows what the notebook needs and nothing else, and its limits hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from grading_helpers import PS, ROOT, sandbox_or_skip

from toyattn import grading
from toyattn.grading import sandbox


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
