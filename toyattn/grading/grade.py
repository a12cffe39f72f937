"""Grading one submission (a scratch copy run in its sandbox, then judged here) and a whole class in parallel.

For each notebook: the submission is read (never followed through a symlink), its saved outputs
are cleared, and a clean copy goes into a fresh scratch folder. The runner executes it in the
sandbox (:mod:`toyattn.grading.sandbox`) with a fresh random seed for the checks' cases; an outer
wall-clock limit kills the whole sandbox. Afterwards this process judges the answers left in the
scratch folder (:mod:`toyattn.grading.judging`) and keeps a size-capped executed copy for display.
Where the machine allows it, the scratch folder is a size-capped tmpfs (a root grader) and the
sandbox runs in a cgroup of its own (memory and processes for all of it together).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from toyattn.grading.confine import Cgroup, fresh_uid, mount_tmpfs, unmount, userns_filter
from toyattn.grading.discovery import ProblemSet, Submission, read_submission_bytes
from toyattn.grading.execute import (
    DEFAULT_CELL_TIMEOUT,
    DEFAULT_TIMEOUT,
    Execution,
    clear_outputs,
    execution_from_json,
)
from toyattn.grading.executed import MAX_DATA_CHARS, MAX_OUTPUT_CHARS, _cap_outputs, _save_executed  # noqa: F401 - their old home
from toyattn.grading.judging import GRADER_ERROR, judge_exercise
from toyattn.grading.reports import unique_names
from toyattn.grading.sandbox import (
    Limits,
    bwrap_command,
    find_bwrap,
    root_mode_available,
    sandbox_env,
    sandbox_python,
)
from toyattn.grading.status import NotebookResult, exercise_statuses, notebook_problems, whole_notebook

#: Seconds the sandbox may run beyond the notebook's own limit (start-up, saving) before it is killed.
WALL_MARGIN = 60.0


@dataclass(frozen=True)
class GradeOptions:
    timeout: float = DEFAULT_TIMEOUT
    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    kernel_name: str | None = None  # a named kernel: unsandboxed grading only
    executed_dir: str | None = None  # where to save each executed notebook (None: don't)
    sandbox: bool = True
    limits: Limits = field(default_factory=Limits)
    hidden: tuple[str, ...] = ()  # folders the sandbox must never show (submissions, solutions, --out)


def _parse_submission(path: Path, data: bytes):
    import nbformat

    text = data.decode("utf-8")
    if path.suffix == ".py":
        import jupytext

        return jupytext.reads(text, fmt="py:percent")
    return nbformat.reads(text, as_version=4)


def _run_contained(cmd: list[str], env: dict[str, str], cwd: Path, log: Path, wall: float, *,
                   pass_fds: tuple[int, ...] = (), cgroup: Cgroup | None = None) -> tuple[int | None, bool]:
    """Run ``cmd`` in its own session; kill the whole group after ``wall`` seconds. ``(exit code, killed)``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, pass_fds=pass_fds, preexec_fn=cgroup.join if cgroup else None)
        killed = False
        try:
            rc = proc.wait(timeout=wall)
        except subprocess.TimeoutExpired:
            killed, rc = True, None
        finally:
            try:  # the sandbox ends every process in its PID namespace; unsandboxed, at least this group
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    return rc, killed


def _tail(path: Path, n: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - n))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _read_record(path: Path, rc: int | None, killed: bool, wall: float, log: Path) -> Execution:
    """The runner's record of the run (untrusted, validated), or what the grader itself knows."""
    import json

    if killed:
        return Execution(stop_reason="time limit", notes=[f"the sandbox ran over {wall:.0f} s and was ended"])
    try:
        return execution_from_json(json.loads(read_submission_bytes(path).decode("utf-8")))
    except FileNotFoundError:
        why = f"the notebook's run ended without a record (exit code {rc})"
        tail = _tail(log)
        return Execution(stop_reason="kernel error", notes=[why + (f": {tail[-300:]}" if tail else "")])
    except (OSError, ValueError, RecursionError) as err:
        return Execution(stop_reason="kernel error", notes=[f"the run's record is unreadable ({str(err)[:200]})"])


def _run_sandboxed(argv: list[str], env: dict[str, str], scratch: Path, work: Path, log: Path, wall: float,
                   options: GradeOptions) -> tuple[int | None, bool]:
    """The runner in its bwrap sandbox, in a cgroup where one can be made; as root, as a fresh unprivileged uid."""
    limits, hidden = options.limits, [Path(h) for h in options.hidden]
    group = Cgroup.create(limits.memory_bytes, limits.processes)
    try:
        if not root_mode_available():  # an ordinary user (or root without CAP_SYS_ADMIN): a user namespace
            cmd = bwrap_command(find_bwrap(), scratch, work, argv, hidden=hidden, tmp_bytes=limits.scratch_bytes)
            return _run_contained(cmd, env, work, log, wall, cgroup=group)
        uid = fresh_uid()
        for d in [scratch, *scratch.rglob("*")]:  # the grader's tmp/ around it stays 0700
            os.chown(d, uid, uid, follow_symlinks=False)
        os.chmod(scratch, 0o755)  # bwrap (root without capabilities) enters it before the runner leaves root
        program = userns_filter()  # not None: root_mode_available() says so
        r, w = os.pipe()
        try:
            os.write(w, program)
            os.close(w)
            cmd = bwrap_command(find_bwrap(), scratch, work, [*argv, f"--drop-to={uid}"], hidden=hidden,
                                as_root_fd=r, tmp_bytes=limits.scratch_bytes)
            return _run_contained(cmd, env, work, log, wall, pass_fds=(r,), cgroup=group)
        finally:
            os.close(r)
    finally:
        if group:
            group.remove()


def grade_submission(sub: Submission, ps: ProblemSet, options: GradeOptions | None = None,
                     executed_path: str | None = None) -> NotebookResult:
    """Run one student's notebook in a sandboxed scratch copy and judge each exercise of ``ps`` here.

    Never raises for anything the student did: every problem ends up in the result.
    """
    options = options or GradeOptions()
    if sub.rejected:
        return whole_notebook(sub.student, ps, sub.path, "rejected", "error", f"rejected: {sub.rejected}")
    start = time.monotonic()
    try:
        nb = _parse_submission(Path(sub.path), read_submission_bytes(Path(sub.path), sub.root))
        clear_outputs(nb)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the student's problem, reported
        msg = f"unreadable notebook: {type(err).__name__}: {str(err)[:200]}"
        return whole_notebook(sub.student, ps, sub.path, "unreadable", "error", msg)
    with tempfile.TemporaryDirectory(prefix="toyattn-grade-", ignore_cleanup_errors=True) as tmp:
        scratch = Path(tmp) / "sandbox"  # the only folder the notebook sees; tmp/ itself stays the grader's
        scratch.mkdir()
        capped = options.sandbox and mount_tmpfs(scratch, options.limits.scratch_bytes)
        try:
            return _grade_in(scratch, tmp, sub, ps, nb, options, executed_path, start)
        finally:
            if capped:
                unmount(scratch)


def _grade_in(scratch: Path, tmp: str, sub: Submission, ps: ProblemSet, nb, options: GradeOptions,
              executed_path: str | None, start: float) -> NotebookResult:
    """:func:`grade_submission` once the notebook is read: its copy run in ``scratch``, then judged here."""
    import nbformat

    work, answers, home = scratch / "work", scratch / "answers", scratch / "home"
    for d in (work, answers, home):
        d.mkdir(parents=True)
    copy = work / f"{ps.name}.ipynb"
    nbformat.write(nb, copy)
    seed = secrets.randbits(62)  # fresh cases for every notebook: answers cannot be hard-coded or shared
    from toyattn.checks.answers import (  # imports torch: only once a notebook is graded
        ANSWERS_DIR_ENV,
        SEED_ENV,
    )

    env = sandbox_env(home, {ANSWERS_DIR_ENV: str(answers), SEED_ENV: str(seed)})
    python = sandbox_python() if options.sandbox else sys.executable
    argv = [python, "-m", "toyattn.grading.runner", str(copy), "--executed", str(scratch / "executed.ipynb"),
            "--record", str(scratch / "run.json"), f"--timeout={options.timeout}",
            f"--cell-timeout={options.cell_timeout}", *options.limits.as_args()]
    wall = options.timeout + WALL_MARGIN
    if options.sandbox:
        rc, killed = _run_sandboxed(argv, env, scratch, work, Path(tmp) / "runner.log", wall, options)
    else:
        cmd = argv + ["--no-process-limit"] + (["--kernel", options.kernel_name] if options.kernel_name else [])
        rc, killed = _run_contained(cmd, env, work, Path(tmp) / "runner.log", wall)
    run = _read_record(scratch / "run.json", rc, killed, wall, Path(tmp) / "runner.log")
    judged = {ex.check: judge_exercise(answers, ex.check, seed) for ex in ps.exercises}
    if executed_path:
        problem = _save_executed(scratch / "executed.ipynb", Path(executed_path))
        if problem:
            run.notes.append(problem)
    exercises, missing = exercise_statuses(ps, nb, judged, run)
    outcome, problems = notebook_problems(run)
    return NotebookResult(sub.student, sub.problem_set, sub.path, outcome, round(time.monotonic() - start, 2),
                          problems + missing, exercises)


def _grade_or_report(sub: Submission, ps: ProblemSet, options: GradeOptions, executed_path: str | None) -> NotebookResult:
    """:func:`grade_submission`, turning a failure of the grader itself into that notebook's result."""
    try:
        return grade_submission(sub, ps, options, executed_path)
    except Exception as err:  # noqa: BLE001 - one notebook's grader failure must not stop the class
        return whole_notebook(sub.student, ps, sub.path, GRADER_ERROR, GRADER_ERROR,
                              f"grader error: {type(err).__name__}: {str(err)[:300]}")


def grade_all(
    submissions: Sequence[Submission],
    problem_sets: Mapping[str, ProblemSet],
    options: GradeOptions | None = None,
    *,
    jobs: int = 1,
    on_result: Callable[[NotebookResult], None] | None = None,
) -> list[NotebookResult]:
    """Grade every submission (``jobs`` sandboxes at a time), adding "not submitted" rows for the gaps.

    ``on_result(result)`` is called as each notebook finishes (the command prints progress with it).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}.")
    options = options or GradeOptions()
    folders = unique_names(sorted({s.student for s in submissions}))

    def executed(sub: Submission) -> str | None:
        if not options.executed_dir:
            return None
        return str(Path(options.executed_dir) / folders[sub.student] / f"{sub.problem_set}.ipynb")

    results: list[NotebookResult] = []
    todo = [(s, problem_sets[s.problem_set]) for s in submissions if s.problem_set in problem_sets]
    if jobs == 1 or len(todo) <= 1:
        for sub, ps in todo:
            results.append(_grade_or_report(sub, ps, options, executed(sub)))
            if on_result:
                on_result(results[-1])
    else:
        # Separate processes: each drives its own sandbox; "spawn" keeps no state from this process.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_grade_or_report, sub, ps, options, executed(sub)): (sub, ps) for sub, ps in todo}
            for fut in as_completed(futures):
                sub, ps = futures[fut]
                try:
                    res = fut.result()
                except Exception as err:  # noqa: BLE001 - e.g. a worker process killed by the OS
                    res = whole_notebook(sub.student, ps, sub.path, GRADER_ERROR, GRADER_ERROR,
                                         f"grader error: {type(err).__name__}: {str(err)[:300]}")
                results.append(res)
                if on_result:
                    on_result(res)
    done = {(r.student, r.problem_set) for r in results}
    for student in sorted({s.student for s in submissions}):
        for name, ps in problem_sets.items():
            if (student, name) not in done:
                results.append(whole_notebook(student, ps, "", "not submitted", "not submitted", ""))
    results.sort(key=lambda r: (r.student, r.problem_set))
    return results
