"""What gets graded: the exercises of each problem set (from ``solutions/``) and the students' files that answer them.

Where submissions are looked for (``SUBMISSIONS`` is the folder given on the command line):

* ``SUBMISSIONS/<student>/<NN_name>.ipynb`` (or ``.py``), at any depth below the student's folder;
  so nbgrader's exchange layout ``submitted/<student>/<assignment>/<NN_name>.ipynb`` works as is
  (when ``SUBMISSIONS/submitted/`` exists it is used);
* ``SUBMISSIONS/<student>__<NN_name>.ipynb`` (two underscores), for a flat folder of files.

A file name matches problem set ``NN_name`` when its name starts with ``NN_name`` (so
``00_warmup-Copy1.ipynb`` and ``00_warmup (2).ipynb`` count) or, failing that, with the same ``NN_``
number. When a student hands in both twins of a pair, the ``.ipynb`` is graded.

Symbolic links and anything that is not a regular file are never followed or read: such a
submission is kept with a ``rejected`` reason, so the student's report says why it earned nothing.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

NOTEBOOK_SUFFIXES = (".ipynb", ".py")
FLAT_SEPARATOR = "__"
#: A submission larger than this is rejected unread (a notebook without outputs is a few hundred kB).
MAX_SUBMISSION_BYTES = 20 * 2**20

_CHECK_CALL = re.compile(r"\bchecks\.(check_\w+)\s*\(")
_NN_PREFIX = re.compile(r"^(\d+)_")


class GradingError(ValueError):
    """A problem with the grading run itself (no solutions, no submissions, a bad output folder, no sandbox)."""


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: the check that grades it and the heading it sits under in the solution."""

    check: str
    title: str


@dataclass(frozen=True)
class ProblemSet:
    name: str
    exercises: tuple[Exercise, ...]
    solution: str


#: Folders below a student's folder that are searched (nbgrader's layout needs two).
MAX_DEPTH = 16


@dataclass(frozen=True)
class Submission:
    student: str
    problem_set: str
    path: str
    rejected: str | None = None  # why the file is not graded (a symlink, a device, too large)
    root: str | None = None  # the submissions folder: no component of path below it may be a link at read time


def read_notebook_file(path: Path):
    """An nbformat v4 notebook from an ``.ipynb`` or a (py:percent) ``.py`` file."""
    import nbformat

    if Path(path).suffix == ".py":
        import jupytext

        return jupytext.read(path, fmt="py:percent")
    return nbformat.read(path, as_version=4)


def check_calls(source: str) -> list[str]:
    """The check names called as ``checks.check_xxx(`` in one cell's source."""
    return _CHECK_CALL.findall(source)


def problem_set_from_solution(path: Path) -> ProblemSet:
    """The exercises of one problem set: every ``checks.check_xxx(`` call in its solution, in order.

    Each exercise is titled by the nearest markdown heading above its check (e.g. "Exercise 1: ...").
    """
    nb = read_notebook_file(path)
    exercises: dict[str, Exercise] = {}
    title = ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = [ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("#")]
            if headings:
                title = headings[-1]
        elif cell.cell_type == "code":
            for name in check_calls(cell.source):
                exercises.setdefault(name, Exercise(name, title))
    return ProblemSet(Path(path).stem, tuple(exercises.values()), str(path))


def load_problem_sets(root: Path, only: Sequence[str] | None = None) -> dict[str, ProblemSet]:
    """Every problem set in ``root/solutions`` (or those named in ``only``) that has at least one check."""
    sol_dir = Path(root) / "solutions"
    if not sol_dir.is_dir():
        raise GradingError(f"No solutions/ folder in {root}: pass the course checkout with --root.")
    sets = {}
    for py in sorted(sol_dir.glob("*.py")):
        if py.name.startswith("_"):
            continue
        ps = problem_set_from_solution(py)
        if ps.exercises:
            sets[ps.name] = ps
    if only:
        unknown = [name for name in only if name not in sets]
        if unknown:
            raise GradingError(f"Unknown problem set(s) {unknown}; the solutions with checks are {sorted(sets)}.")
        sets = {name: sets[name] for name in only}
    if not sets:
        raise GradingError(f"No solution in {sol_dir} calls a `checks.check_...(` function, so nothing can be graded.")
    return sets


def match_problem_set(stem: str, names: Iterable[str]) -> str | None:
    """The problem set a file stem belongs to: ``00_warmup-Copy1`` -> ``00_warmup``; None if none fits."""
    names = sorted(names, key=len, reverse=True)
    for name in names:
        if stem == name or stem.startswith(name):
            return name
    m = _NN_PREFIX.match(stem)
    if m:
        same_number = [n for n in names if _NN_PREFIX.match(n) and _NN_PREFIX.match(n).group(1) == m.group(1)]
        if len(same_number) == 1:
            return same_number[0]
    return None


def why_not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be a submission (a symlink, not a regular file, too large), or None if it can."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"{path.name} cannot be read ({err.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"{path.name} is a symbolic link, not a file: hand in the notebook itself"
    if not stat.S_ISREG(st.st_mode):
        return f"{path.name} is not a regular file: hand in the notebook itself"
    if st.st_size > MAX_SUBMISSION_BYTES:
        return f"{path.name} is {st.st_size >> 20} MB, over the {MAX_SUBMISSION_BYTES >> 20} MB a notebook may have"
    return None


def _open_below(root: Path, path: Path, flags: int) -> int:
    """``os.open`` of ``path`` walking from ``root`` one folder at a time, following no link on the way (ELOOP)."""
    parts = Path(path).relative_to(root).parts
    if not parts or ".." in parts:
        raise OSError(f"{path} is not below {root}")
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:  # a folder swapped for a link after discovery fails here
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags, dir_fd=fd)
    finally:
        os.close(fd)


def read_submission_bytes(path: Path, root: str | Path | None = None) -> bytes:
    """The submitted file's bytes, refusing symlinks and non-regular files at the moment of reading.

    With ``root`` (the submissions folder) no folder between it and the file may be a link either.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    # O_NOFOLLOW: a symlink swapped in after discovery fails here (ELOOP)
    fd = _open_below(Path(root), Path(path), flags) if root is not None else os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SUBMISSION_BYTES:
            raise OSError(f"{path.name} is not a regular file of at most {MAX_SUBMISSION_BYTES >> 20} MB")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_SUBMISSION_BYTES + 1)[:MAX_SUBMISSION_BYTES]
    finally:
        os.close(fd)


def _walk_files(folder: Path, warnings: list[str] | None = None) -> list[Path]:
    """Every non-hidden entry below ``folder`` whose suffix is a notebook's, at most :data:`MAX_DEPTH` folders deep.

    Iterative (a 1,200-level folder is no RecursionError); links to folders are never entered, and a
    folder that cannot be listed is skipped with a warning.
    """
    found: list[Path] = []
    stack = [(Path(folder), 0)]
    while stack:
        here, depth = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
            subdirs = [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
            files = [Path(e.path) for e in entries if not e.name.startswith(".") and not e.is_dir(follow_symlinks=False)
                     and Path(e.name).suffix in NOTEBOOK_SUFFIXES]
        except OSError as err:
            if warnings is not None:
                warnings.append(f"skipped {here}: it cannot be read ({err.strerror})")
            continue
        found.extend(files)
        if depth >= MAX_DEPTH and subdirs:
            if warnings is not None:
                warnings.append(f"skipped the folders below {here}: more than {MAX_DEPTH} levels deep")
            continue
        stack.extend((d, depth + 1) for d in reversed(subdirs))
    return sorted(found, key=lambda p: p.parts)


def find_submissions(folder: Path, problem_sets: Iterable[str]) -> tuple[list[Submission], list[str]]:
    """The submissions under ``folder`` (layouts in the module docstring) and warnings about skipped files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GradingError(f"{folder} is not a folder; give the folder that holds the students' submissions.")
    names = list(problem_sets)
    base = folder / "submitted" if (folder / "submitted").is_dir() else folder
    candidates: dict[tuple[str, str], list[Path]] = {}
    warnings: list[str] = []

    def add(student: str, path: Path, stem: str) -> None:
        ps = match_problem_set(stem, names)
        if ps is None:
            warnings.append(f"skipped {path}: its name matches no problem set ({', '.join(names)})")
            return
        candidates.setdefault((student, ps), []).append(path)

    for entry in sorted(base.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.suffix in NOTEBOOK_SUFFIXES and (entry.is_symlink() or not entry.is_dir()):
            student, sep, rest = entry.stem.partition(FLAT_SEPARATOR)
            if not sep or not student or not rest:
                warnings.append(
                    f"skipped {entry}: a file directly in the submissions folder must be named "
                    f"<student>{FLAT_SEPARATOR}<NN_name>{entry.suffix}"
                )
                continue
            add(student, entry, rest)  # a symlink or a device is kept, to be rejected with a reason
        elif entry.is_symlink():
            warnings.append(f"skipped {entry}: a symbolic link is not followed; hand in the folder itself")
        elif entry.is_dir():
            try:  # whatever is in one student's folder, the class goes on
                for path in _walk_files(entry, warnings):
                    add(entry.name, path, path.stem)
            except Exception as err:  # noqa: BLE001
                warnings.append(f"skipped {entry}: its files could not be listed ({type(err).__name__})")

    submissions = []
    for (student, ps), paths in sorted(candidates.items()):
        # Regular files first, then the exact name, then the .ipynb of a pair (what JupyterLab shows), then the newest.
        paths.sort(key=lambda p: (why_not_a_file(p) is not None, p.stem != ps, p.suffix != ".ipynb", -_mtime(p), str(p)))
        chosen = paths[0]
        others = [p for p in paths[1:] if not (p.stem == chosen.stem and p.parent == chosen.parent)]
        if others:
            warnings.append(f"{student}: several files for {ps}; graded {chosen}, ignored {', '.join(map(str, others))}")
        submissions.append(Submission(student, ps, str(chosen), why_not_a_file(chosen), str(base)))
    return submissions, warnings


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0
