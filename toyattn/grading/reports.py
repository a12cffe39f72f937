"""The class's reports: grades.csv, scores.csv, notebooks.csv, summary.md, results.json and a feedback page per student.

Everything in them that a student controls (folder names, messages from their run) is treated as
text to show, never to interpret: messages are cut to :data:`MAX_MESSAGE_CHARS`, CSV cells that a
spreadsheet would take for a formula are neutralised, Markdown is escaped, and each student gets
a file name of their own even when two names sanitise alike (``ann lee`` and ``ann_lee``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from toyattn.grading.discovery import ProblemSet
from toyattn.grading.status import STATUSES, NotebookResult

MAX_MESSAGE_CHARS = 500
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!])")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def shown(text: object) -> str:
    """``text`` safe to show on a terminal or write as UTF-8: C0/C1 controls (ESC, BEL, CSI, OSC ...) and the
    undecodable bytes of a file name that is not UTF-8 become visible escapes (``\\x1b``, ``\\xdc``)."""
    return _CONTROL.sub(lambda m: _escape(m.group()), str(text))


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte Python could not decode (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut (controls escaped, see :func:`shown`)."""
    text = shown(text)
    return text if len(text) <= limit else f"{text[:limit]} [... {len(text) - limit} more characters cut]"


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a leading ``= + - @`` (a formula) gets a ``'`` in front."""
    if not isinstance(value, str):
        return value
    value = clip(value)  # the student's name and path too: controls escaped, not-UTF-8 bytes as \xNN
    return "'" + value if value.startswith(_FORMULA_START) else value


def md(text: object) -> str:
    """``text`` for one line of Markdown: special characters escaped, line breaks as spaces."""
    return _MD_SPECIAL.sub(r"\\\1", clip(str(text)).replace("\r", " ").replace("\n", " "))


def safe_name(name: str) -> str:
    return re.sub(r"[^\w.@+-]", "_", name).lstrip(".")[:80] or "_"


def unique_names(students: Iterable[str]) -> dict[str, str]:
    """A file name per student, distinct even when names sanitise alike or differ only in case."""
    names, taken = {}, set()
    for s in sorted(set(students), key=lambda s: (safe_name(s) != s, s)):  # a name already safe keeps it
        name = safe_name(s)
        if name.casefold() in taken:
            name = f"{name}-{hashlib.sha256(s.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
        taken.add(name.casefold())
        names[s] = name
    return names


def _writerows(path: Path, header: list[str], rows: Iterable[list[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow([csv_cell(v) for v in row])


def write_reports(
    results: Sequence[NotebookResult],
    problem_sets: Mapping[str, ProblemSet],
    out: Path,
    *,
    warnings: Sequence[str] = (),
    seconds: float | None = None,
    isolation: str = "",
) -> str:
    """Write grades.csv, scores.csv, notebooks.csv, summary.md, results.json and feedback/ into ``out``.

    ``isolation`` is one sentence on how the notebooks ran (sandboxed or not). Returns the summary text.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = unique_names(r.student for r in results)
    _writerows(out / "grades.csv", ["student", "problem_set", "exercise", "title", "status", "message", "file"],
               ([r.student, r.problem_set, e.check, e.title, e.status, e.message, r.path]
                for r in results for e in r.exercises))
    _writerows(out / "notebooks.csv",
               ["student", "problem_set", "outcome", "passed", "exercises", "seconds", "problems", "file", "feedback"],
               ([r.student, r.problem_set, r.outcome, r.n_passed, len(r.exercises), r.seconds,
                 " | ".join(clip(p) for p in r.problems), r.path, f"feedback/{files[r.student]}.md"] for r in results))
    students = sorted({r.student for r in results})
    by_key = {(r.student, r.problem_set): r for r in results}
    names = list(problem_sets)
    total = sum(len(problem_sets[n].exercises) for n in names)

    def score_row(s: str) -> list[object]:
        row = [by_key[(s, n)].n_passed if (s, n) in by_key else 0 for n in names]
        return [s, *row, sum(row), total]

    _writerows(out / "scores.csv", ["student", *names, "passed", "exercises"], (score_row(s) for s in students))
    text = format_summary(results, problem_sets, warnings=warnings, seconds=seconds, isolation=isolation)
    (out / "summary.md").write_text(text, encoding="utf-8")
    feedback = out / "feedback"
    feedback.mkdir(exist_ok=True)
    for s in students:
        (feedback / f"{files[s]}.md").write_text(format_feedback(s, [r for r in results if r.student == s]),
                                                 encoding="utf-8")
    clipped = [dict(asdict(r), student=shown(r.student), path=shown(r.path), problems=[clip(p) for p in r.problems],
                    exercises=[dict(asdict(e), message=clip(e.message)) for e in r.exercises]) for r in results]
    (out / "results.json").write_text(json.dumps(clipped, indent=1), encoding="utf-8")
    return text


def _status_order(status: str) -> int:
    return STATUSES.index(status) if status in STATUSES else len(STATUSES)


def _cell_text(r: NotebookResult | None) -> str:
    if r is None:
        return "-"
    if r.outcome == "not submitted":
        return "not submitted"
    counts = Counter(e.status for e in r.exercises if e.status != "passed")
    text = f"{r.n_passed}/{len(r.exercises)}"
    if counts:
        text += " (" + ", ".join(f"{n} {md(s)}" for s, n in sorted(counts.items(), key=lambda kv: _status_order(kv[0]))) + ")"
    return text


def format_feedback(student: str, results: Sequence[NotebookResult]) -> str:
    """A short report for one student: each exercise's status and the check's own explanation."""
    lines = [f"# Feedback for {md(student)}", ""]
    for r in results:
        lines += [f"## {md(r.problem_set)}: {r.n_passed} of {len(r.exercises)} exercises pass", ""]
        if r.outcome == "not submitted":
            lines += ["Not handed in.", ""]
            continue
        for e in r.exercises:
            mark = "✅" if e.status == "passed" else "❌"
            lines.append(f"- {mark} **{md(e.title or e.check)}** (`{e.check}`): {md(e.status)}"
                         + (f". {md(e.message)}" if e.message else ""))
        if r.problems:
            lines += ["", "Problems with the notebook as a whole:"] + [f"- {md(p)}" for p in r.problems]
        lines.append("")
    return "\n".join(lines)


def format_summary(
    results: Sequence[NotebookResult],
    problem_sets: Mapping[str, ProblemSet],
    *,
    warnings: Sequence[str] = (),
    seconds: float | None = None,
    isolation: str = "",
) -> str:
    """The readable report: per student, per exercise, and every notebook-level problem."""
    students = sorted({r.student for r in results})
    by_key = {(r.student, r.problem_set): r for r in results}
    names = list(problem_sets)
    n_exercises = sum(len(ps.exercises) for ps in problem_sets.values())
    graded = [r for r in results if r.outcome != "not submitted"]
    lines = [
        "# Grading summary",
        "",
        f"{len(students)} students, {len(graded)} notebooks graded, problem sets: {', '.join(names)}"
        + (f"; {seconds:.0f} s in all" if seconds is not None else "")
        + ".",
        "",
    ]
    if isolation:
        lines += [isolation, ""]
    lines += [
        "## Per student",
        "",
        "| student | " + " | ".join(names) + " | passed | notebook problems |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- | --- |",
    ]
    for s in students:
        rs = [by_key.get((s, n)) for n in names]
        passed = sum(r.n_passed for r in rs if r)
        outcomes = sorted({md(r.outcome) for r in rs if r and r.outcome not in ("ok", "not submitted")})
        lines.append(
            f"| {md(s)} | " + " | ".join(_cell_text(r) for r in rs) + f" | {passed}/{n_exercises} | {', '.join(outcomes) or '-'} |"
        )
    lines += [
        "",
        "## Per exercise",
        "",
        "| problem set | exercise | title | " + " | ".join(STATUSES) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in STATUSES) + " |",
    ]
    for name, ps in problem_sets.items():
        for ex in ps.exercises:
            counts = Counter(
                e.status for r in results if r.problem_set == name for e in r.exercises if e.check == ex.check
            )
            lines.append(f"| {name} | {ex.check} | {md(ex.title)} | " + " | ".join(str(counts.get(st, 0)) for st in STATUSES) + " |")
    problem_lines = [
        f"- **{md(r.student)} / {r.problem_set}** ({md(r.outcome)}): " + "; ".join(md(p) for p in r.problems)
        for r in results
        if r.problems
    ]
    lines += ["", "## Notebook problems", ""] + (problem_lines or ["None."])
    failures = [
        f"- {md(r.student)} / {r.problem_set} / {e.check}: {md(e.status)}: {md(e.message)}"
        for r in results
        for e in r.exercises
        if e.status not in ("passed", "not submitted") and e.message
    ]
    if failures:
        lines += ["", "## Why each exercise did not pass", ""] + failures
    if warnings:
        lines += ["", "## Files not graded", ""] + [f"- {md(w)}" for w in warnings]
    return "\n".join(lines) + "\n"
