"""The nbgrader recipe of docs/instructors.md, run for real: generate, release, fetch, submit, collect, toyattn grade.

The instructor (root here) keeps an nbgrader course folder outside the checkout and releases the
warm-up solution as it is (``--ClearSolutions.enforce_metadata=False``); two student accounts fetch
it through nbgrader's exchange on this machine, Ada answers it and both submit; ``nbgrader collect``
fills ``submitted/`` and ``toyattn grade`` grades that layout sandboxed: Ada passes, Bob's stub is
"not implemented".
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from classroom_parts import (
    ROOT,
    check_runs_as,
    need_modules,
    need_root,
    others_can_enter,
    scratch_dir,
    system_accounts,
)

pytestmark = pytest.mark.classroom
BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path, user: str | None = None, home: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "TOYATTN_"))}
    # As with `source .venv/bin/activate`: nbgrader runs `alembic` (its database migrations) from PATH.
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
        env.update(USER=user, LOGNAME=user, HOME=str(home))
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _answer(path: Path) -> None:
    """What Ada does in JupyterLab: each stub replaced by the solution's answer, the rest left as it came."""
    solution = json.loads((ROOT / "solutions" / "00_warmup.ipynb").read_text())
    nb = json.loads(path.read_text())
    assert len(nb["cells"]) == len(solution["cells"])
    for cell, solved in zip(nb["cells"], solution["cells"], strict=True):
        if "NotImplementedError" in "".join(cell["source"]):
            cell["source"] = solved["source"]
    with open(path, "r+", encoding="utf-8") as f:  # rewritten in place, so it keeps its owner
        f.truncate(0)
        f.write(json.dumps(nb))


def test_nbgrader_release_collect_then_toyattn_grade(artifacts_dir):
    need_root()
    need_modules("nbgrader", install="`make classroom-deps` (pip install -e '.[classroom]')")
    scratch = scratch_dir("nbgrader")
    try:
        homes, exchange, course_dir = scratch / "home", scratch / "exchange", scratch / "nbgrader_course"
        homes.mkdir(mode=0o755)
        exchange.mkdir()
        exchange.chmod(0o777)  # nbgrader's exchange is writable by every student, as its docs set it up
        suffix = secrets.token_hex(2)
        ada, bob = f"ada{suffix}", f"bob{suffix}"
        exchange_opts = [f"--Exchange.root={exchange}", "--course=toyattn"]
        with system_accounts([ada, bob], homes), others_can_enter(sys.executable, ROOT):
            check_runs_as(ada, "import nbgrader")
            # The instructor: the recipe's commands, in a course folder of their own.
            (course_dir / "source" / "00_warmup").mkdir(parents=True)
            shutil.copy(ROOT / "solutions" / "00_warmup.ipynb", course_dir / "source" / "00_warmup")
            (course_dir / "nbgrader_config.py").write_text(
                f'c = get_config()  # noqa\nc.CourseDirectory.course_id = "toyattn"\nc.Exchange.root = "{exchange}"\n')
            _run([str(BIN / "nbgrader"), "generate_assignment", "00_warmup",
                  "--ClearSolutions.enforce_metadata=False"], cwd=course_dir)
            released = json.loads((course_dir / "release" / "00_warmup" / "00_warmup.ipynb").read_text())
            assert any("raise NotImplementedError()" in "".join(c["source"]) for c in released["cells"])
            _run([str(BIN / "nbgrader"), "release_assignment", "00_warmup"], cwd=course_dir)

            # The students: fetch, (Ada) answer, submit, each as themselves.
            for student in (ada, bob):
                home = homes / student
                _run([str(BIN / "nbgrader"), "fetch_assignment", "00_warmup", *exchange_opts], cwd=home,
                     user=student, home=home)
                fetched = home / "00_warmup" / "00_warmup.ipynb"
                assert fetched.is_file()
                if student == ada:
                    _answer(fetched)  # the file stays Ada's: same owner and mode
                _run([str(BIN / "nbgrader"), "submit", "00_warmup", *exchange_opts], cwd=home, user=student, home=home)

            # The instructor collects, then grades nbgrader's layout with toyattn grade.
            _run([str(BIN / "nbgrader"), "collect", "00_warmup"], cwd=course_dir)
            for student in (ada, bob):
                assert (course_dir / "submitted" / student / "00_warmup" / "00_warmup.ipynb").is_file()
            _run([str(BIN / "toyattn"), "grade", ".", "--out", "../grading", "--problem-set", "00_warmup",
                  "--root", str(ROOT)], cwd=course_dir)
            rows = list(csv.DictReader(open(scratch / "grading" / "grades.csv", encoding="utf-8")))
            by_student: dict[str, set] = {}
            for row in rows:
                by_student.setdefault(row["student"], set()).add(row["status"])
            assert by_student == {ada: {"passed"}, bob: {"not implemented"}}, rows
            shutil.copy(scratch / "grading" / "grades.csv", artifacts_dir / "nbgrader_grades.csv")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
