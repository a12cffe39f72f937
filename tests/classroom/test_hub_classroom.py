"""A class on a real JupyterHub: the site's launch link, nbgitpuller's clone and merge, collecting and grading.

One test, in the order a term goes: two students and an instructor have Linux accounts; the hub
(configurable-http-proxy, DummyAuthenticator) spawns each student's server as that student, with the
course's virtual environment as the single-user environment. In headless Chromium each student logs
in through the lesson's launch link exactly as the website makes it; nbgitpuller clones the course
from git's smart HTTP server on loopback and JupyterLab opens the lesson, whose device cell runs in
the course's Python. Ada solves the warm-up in JupyterLab and saves it; the instructor pushes a
change; Ada opens the link again and nbgitpuller merges: her answers stay, the new content arrives.
Then ``toyattn collect`` copies the problem sets out of the home folders and ``toyattn grade``
grades them sandboxed: Ada passes, Bob's untouched stub is "not implemented".
"""

from __future__ import annotations

import csv
import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from classroom_parts import (
    ARTIFACTS,
    CHP,
    ROOT,
    check_runs_as,
    course_repository,
    free_port,
    git,
    git_http_server,
    hub_config,
    jupyterhub,
    need_commands,
    need_modules,
    need_root,
    others_can_enter,
    scratch_dir,
    site_launch_link,
    system_accounts,
)

pytestmark = pytest.mark.classroom
LESSON = "notebooks/00_start_here"
PROBLEM_SET = "exercises/00_warmup.ipynb"
UPDATE = "Week 2 update from your instructor"
DEVICE_CELL = 3  # lesson 0's `print(format_description(describe()))`

_READY_JS = """(path) => { const a = window.jupyterapp; const w = a && a.shell.currentWidget;
  return !!(w && w.context && w.context.isReady && w.context.path === path && w.sessionContext
            && w.sessionContext.session && w.sessionContext.session.kernel
            && w.sessionContext.session.kernel.status === 'idle'); }"""


def _check_parts():
    need_root()
    need_commands("git", install="apt-get install git")
    need_commands(str(CHP), install="`make classroom-deps` (npm install configurable-http-proxy into .venv/classroom-node)")
    need_commands("node", install="apt-get install nodejs npm (configurable-http-proxy runs on Node.js)")
    need_modules("jupyterhub", "nbgitpuller", "yaml", "jupyter_book",
                 install="`make classroom-deps` (pip install -e '.[classroom,site]')")


def _open_launch_link(page, link: str, user: str, password: str, lab_path: str, hub_log: Path) -> None:
    """Follow the launch link as a student who is not logged in: hub login, spawn, nbgitpuller, JupyterLab."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        page.goto(link)
        if "/hub/login" in page.url:
            page.fill("#username_input", user)
            page.fill("#password_input", password)
            page.click("#login_submit")
        deadline = time.monotonic() + 240
        while f"/user/{user}/lab/" not in page.url:
            failed = [ln for ln in hub_log.read_text(errors="replace").splitlines() if "Error starting server" in ln]
            if failed or time.monotonic() > deadline:
                raise PlaywrightError(failed[0] if failed else "no JupyterLab after 240 s")
            page.wait_for_timeout(500)
        page.wait_for_function(_READY_JS, arg=lab_path, timeout=180_000)
    except PlaywrightError as err:
        shot = ARTIFACTS / f"hub_failed_{user}.png"
        page.screenshot(path=str(shot))
        text = page.inner_text("body")[-1500:] if page.url.startswith("http") else ""
        raise AssertionError(f"{user}: the launch link did not end in JupyterLab ({err.message.splitlines()[0]}); "
                             f"page {page.url}, screenshot {shot}\npage text: {text}\n"
                             f"hub log:\n{hub_log.read_text(errors='replace')[-4000:]}") from None


def _run_cell(page, index: int) -> str:
    page.evaluate("""async (i) => { const app = window.jupyterapp; const w = app.shell.currentWidget;
                      w.content.activeCellIndex = i; await app.commands.execute('notebook:run-cell'); }""", index)
    handle = page.wait_for_function(
        """(i) => { const m = window.jupyterapp.shell.currentWidget.content.widgets[i].model;
                    return m.executionCount !== null && m.outputs.length > 0 && JSON.stringify(m.outputs.toJSON()); }""",
        arg=index, timeout=180_000)
    return handle.json_value()


def _solve_and_save(page, solution: dict, exercise: dict) -> list[int]:
    """Type the solution's answer into each exercise cell through JupyterLab's model, then save (Ctrl+S's command)."""
    answers = {i: "".join(s["source"]) for i, (s, e) in enumerate(zip(solution["cells"], exercise["cells"], strict=True))
               if "NotImplementedError" in "".join(e["source"])}
    assert answers, "the warm-up exercise has no stub to fill in"
    page.evaluate("""async (answers) => { const app = window.jupyterapp; const w = app.shell.currentWidget;
                       for (const [i, src] of Object.entries(answers)) w.content.widgets[+i].model.sharedModel.setSource(src);
                       await app.commands.execute('docmanager:save'); }""", {str(k): v for k, v in answers.items()})
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=60_000)
    return sorted(answers)


def _instructor_pushes_an_update(work: Path) -> None:
    import jupytext
    import nbformat

    path = work / f"{LESSON}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"**{UPDATE}:** lesson 1 moves to Thursday."))
    nbformat.write(nb, path)
    jupytext.write(nb, work / f"{LESSON}.py", fmt="py:percent")
    git("commit", "--quiet", "-am", "week 2 update", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)


def _toyattn(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("toyattn")), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_students_launch_merge_and_get_graded(chromium, artifacts_dir):
    _check_parts()
    scratch = scratch_dir("hub")
    times: list[tuple[str, float]] = [("", time.monotonic())]

    def phase(name: str) -> None:  # seconds per step, kept beside the screenshots
        times.append((name, time.monotonic()))
        (artifacts_dir / "hub_timings.txt").write_text(
            "".join(f"{b[1] - a[1]:6.1f} s  {b[0]}\n" for a, b in zip(times, times[1:], strict=False)))

    try:
        homes, state, served = scratch / "home", scratch / "hub", scratch / "git"
        for folder in (homes, served):
            folder.mkdir(mode=0o755)
        state.mkdir(mode=0o700)
        suffix = secrets.token_hex(2)
        ada, bob, prof = f"ada{suffix}", f"bob{suffix}", f"prof{suffix}"
        password = secrets.token_urlsafe(12)
        port, hub_port, proxy_api = free_port(), free_port(), free_port()
        hub_url = f"http://127.0.0.1:{port}"
        with system_accounts([ada, bob, prof], homes), others_can_enter(sys.executable, ROOT), \
                git_http_server(served) as git_url:
            check_runs_as(ada, "import toyattn, jupyterhub, nbgitpuller")
            work = course_repository(served, scratch / "instructor")
            git("remote", "add", "origin", str(served / "toyattn"), cwd=work)
            phase("start")
            link = site_launch_link(hub_url, f"{git_url}/toyattn", LESSON, scratch / "site")
            assert link.startswith(f"{hub_url}/hub/user-redirect/git-pull?repo=")
            lesson_path = f"toyattn/{LESSON}.ipynb"
            config = hub_config(port=port, hub_port=hub_port, proxy_api_port=proxy_api, state=state,
                                users=[ada, bob, prof], admin=prof, password=password)
            phase("site link")
            with jupyterhub(state, config, port) as hub_log:
                contexts = []
                try:
                    # Ada: launch link -> login -> her own server -> clone -> the lesson, run its device cell.
                    contexts.append(chromium.new_context(viewport={"width": 1400, "height": 1000}))
                    page = contexts[-1].new_page()
                    _open_launch_link(page, link, ada, password, lesson_path, hub_log)
                    phase("ada launch")
                    output = _run_cell(page, DEVICE_CELL)
                    assert sys.executable in output, f"the lesson did not run in the course's Python: {output[:800]}"
                    assert "error" not in json.loads(output)[0].get("output_type", "")
                    page.evaluate("(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].node"
                                  ".scrollIntoView({block: 'center'})", DEVICE_CELL)
                    page.screenshot(path=str(artifacts_dir / "hub_student_after_launch.png"))
                    home_course = homes / ada / "toyattn"
                    assert (home_course / ".git").is_dir() and home_course.stat().st_uid == (homes / ada).stat().st_uid

                    # Ada solves the warm-up in JupyterLab and saves it.
                    phase("device cell")
                    page.goto(f"{hub_url}/user/{ada}/lab/tree/toyattn/{PROBLEM_SET}")
                    page.wait_for_function(_READY_JS, arg=f"toyattn/{PROBLEM_SET}", timeout=180_000)
                    solution = json.loads((ROOT / "solutions" / "00_warmup.ipynb").read_text())
                    exercise = json.loads((ROOT / PROBLEM_SET).read_text())
                    solved = _solve_and_save(page, solution, exercise)
                    saved = json.loads((home_course / PROBLEM_SET).read_text())
                    for i in solved:
                        assert "".join(saved["cells"][i]["source"]) == "".join(solution["cells"][i]["source"])

                    phase("ada solves")
                    # Bob opens the same link and leaves the problem set as it came.
                    contexts.append(chromium.new_context(viewport={"width": 1400, "height": 1000}))
                    _open_launch_link(contexts[-1].new_page(), link, bob, password, lesson_path, hub_log)

                    # The instructor pushes; Ada opens the link again: nbgitpuller merges.
                    phase("bob launch")
                    _instructor_pushes_an_update(work)
                    page.goto(link)
                    page.wait_for_url(f"**/user/{ada}/lab/**", timeout=180_000)
                    page.wait_for_function(_READY_JS, arg=lesson_path, timeout=180_000)
                    page.locator(".jp-RenderedMarkdown", has_text=UPDATE).first.wait_for(timeout=60_000)
                    page.screenshot(path=str(artifacts_dir / "hub_student_after_merge.png"))
                    phase("merge")
                    merged = json.loads((home_course / PROBLEM_SET).read_text())
                    for i in solved:
                        assert "".join(merged["cells"][i]["source"]) == "".join(solution["cells"][i]["source"]), \
                            "nbgitpuller's merge lost the student's answer"
                    assert UPDATE in (home_course / f"{LESSON}.ipynb").read_text()
                    log = git("-c", f"safe.directory={home_course}", "log", "--format=%s", cwd=home_course)
                    assert "week 2 update" in log, log
                finally:
                    for context in contexts:
                        context.close()
                assert "Traceback" not in hub_log.read_text(errors="replace"), hub_log.read_text()[-3000:]

            # The instructor collects from the home folders and grades, sandboxed, through the CLI.
            phase("hub stop")
            submissions, grading = scratch / "submissions", scratch / "grading"
            collected = _toyattn("collect", str(homes), "--out", str(submissions))
            assert collected.returncode == 0, collected.stdout + collected.stderr
            files = len(list((work / "exercises").glob("[0-9]*_*.ipynb"))) * 2  # each pair's .ipynb and .py
            for student in (ada, bob):  # what docs/instructors.md shows
                assert f"{student}: {files} file(s) (00_warmup.ipynb, 00_warmup.py, 01_" in collected.stdout, collected.stdout
            assert f"{prof}: 0 file(s)" in collected.stdout and "never opened the course" in collected.stdout
            (artifacts_dir / "hub_collect.txt").write_text(collected.stdout)
            assert (submissions / ada / "00_warmup.ipynb").is_file() and (submissions / bob / "00_warmup.ipynb").is_file()
            phase("collect")
            graded = _toyattn("grade", str(submissions), "--out", str(grading), "--problem-set", "00_warmup", "--jobs", "2")
            assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
            assert "Not sandboxed" not in graded.stdout
            phase("grade")
            rows = list(csv.DictReader(open(grading / "grades.csv", encoding="utf-8")))
            by_student = {}
            for row in rows:
                by_student.setdefault(row["student"], set()).add(row["status"])
            assert by_student == {ada: {"passed"}, bob: {"not implemented"}}, rows
            shutil.copy(grading / "grades.csv", artifacts_dir / "hub_grades.csv")
            phase("checks")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
