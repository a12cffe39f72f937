"""Collecting problem sets from the students' home folders on a hub, into a folder `toyattn grade` reads.

``toyattn collect HOMES --out submissions/`` copies, for every student folder ``HOMES/<student>``,
the problem sets in ``<student>/<course>/exercises/`` (``NN_name.ipynb`` and ``NN_name.py``, as
nbgitpuller left them and the student saved them) to ``submissions/<student>/``: the one-folder-per-
student layout of :mod:`toyattn.grading.discovery`. Then ``toyattn grade submissions/`` grades them.

Collection usually runs as root and reads folders the students control, so it never follows a
symbolic link (a student's ``toyattn`` folder linked to another student's, or an exercise linked to
``/etc/shadow``): every step is opened relative to the one before with ``O_NOFOLLOW``, only regular
files are read, and files over the grader's size limit are left. Each skipped item is reported with
its reason; the students' files are only read, never changed.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from toyattn.grading.discovery import MAX_SUBMISSION_BYTES

DEFAULT_COURSE = "toyattn"
DEFAULT_FOLDER = "exercises"
_PROBLEM_SET_FILE = re.compile(r"^\d+_[^/]*\.(ipynb|py)$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class CollectError(ValueError):
    """A problem with the collection itself (no homes folder, an output folder that is not empty)."""


@dataclass
class Collected:
    """What was copied for one student, and what was left with why."""

    student: str
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path under HOMES, reason)


def _why_not_opened(name: str, dir_fd: int | None, err: OSError) -> str:
    """Say "a symbolic link" for a link (O_NOFOLLOW refuses it with ELOOP, or ENOTDIR for a folder)."""
    try:
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return "a symbolic link (not followed)"
    except OSError:
        pass
    return err.strerror or str(err)


def _open_dir(name: str, dir_fd: int | None) -> int:
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _read_regular_file(name: str, dir_fd: int) -> bytes | str:
    """The file's bytes, or the reason it is not read (a link, not a regular file, too large)."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as err:
        return _why_not_opened(name, dir_fd, err)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size > MAX_SUBMISSION_BYTES:
            return f"larger than {MAX_SUBMISSION_BYTES // 2**20} MB"
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_SUBMISSION_BYTES:
                return f"larger than {MAX_SUBMISSION_BYTES // 2**20} MB"
        return b"".join(chunks)
    finally:
        os.close(fd)


def _collect_student(homes_fd: int, student: str, course: str, folder: str, out: Path) -> Collected:
    result = Collected(student)
    fds: list[int] = []
    where = f"{student}/{course}/{folder}"
    try:
        fd = homes_fd
        for part in (student, course, folder):
            try:
                fd = _open_dir(part, fd)
            except FileNotFoundError:
                result.skipped.append((where, "no such folder (the student never opened the course)"))
                return result
            except OSError as err:
                result.skipped.append((where, f"{part}: {_why_not_opened(part, fd, err)}"))
                return result
            fds.append(fd)
        for name in sorted(os.listdir(fd)):
            if not _PROBLEM_SET_FILE.match(name):
                continue
            content = _read_regular_file(name, fd)
            if isinstance(content, str):
                result.skipped.append((f"{where}/{name}", content))
                continue
            target = out / student / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            result.files.append(name)
    finally:
        for opened in fds:
            os.close(opened)
    return result


def collect(homes: Path, out: Path, *, course: str = DEFAULT_COURSE, folder: str = DEFAULT_FOLDER,
            students: list[str] | None = None) -> list[Collected]:
    """Copy every student's problem sets from ``homes/<student>/<course>/<folder>/`` to ``out/<student>/``."""
    homes, out = Path(homes).resolve(), Path(out).resolve()
    if not homes.is_dir():
        raise CollectError(f"{homes} is not a folder: give the folder that holds the students' homes, e.g. /home.")
    if out == homes or homes in out.parents:
        raise CollectError(f"--out {out} is inside {homes}, where students could write: choose a folder outside it.")
    if out.exists() and any(out.iterdir()):
        raise CollectError(f"--out {out} is not empty: move it away (it holds an earlier collection) or give a new folder.")
    for part in (course, folder, *(students or [])):
        if not part or "/" in part or part in (".", ".."):
            raise CollectError(f"{part!r} is not a folder name: --course, --folder and --student name one folder each.")
    out.mkdir(parents=True, exist_ok=True)
    homes_fd = _open_dir(str(homes), None)
    try:
        names = students if students else sorted(n for n in os.listdir(homes_fd) if not n.startswith("."))
        return [_collect_student(homes_fd, name, course, folder, out) for name in names]
    finally:
        os.close(homes_fd)


def register_command(sub) -> None:
    """Add ``toyattn collect`` to the command line's subcommands."""
    p = sub.add_parser("collect", help="copy the students' problem sets from their hub home folders for `toyattn grade`")
    p.add_argument("homes", help="the folder holding one home folder per student (e.g. /home)")
    p.add_argument("--out", default="submissions", help="where the copies go, one folder per student (default: ./submissions)")
    p.add_argument("--course", default=DEFAULT_COURSE,
                   help=f"the course's folder in each home, as nbgitpuller cloned it (default: {DEFAULT_COURSE})")
    p.add_argument("--folder", default=DEFAULT_FOLDER, help=f"the problem sets' folder in the course (default: {DEFAULT_FOLDER})")
    p.add_argument("--student", action="append", default=None,
                   help="collect only this student's home (repeatable; default: every folder in HOMES)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import sys

    try:
        results = collect(Path(args.homes), Path(args.out), course=args.course, folder=args.folder,
                          students=args.student)
    except (CollectError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for r in results:
        print(f"{r.student}: {len(r.files)} file(s)" + (f" ({', '.join(r.files)})" if r.files else ""))
        for path, reason in r.skipped:
            print(f"  skipped {path}: {reason}")
    total = sum(len(r.files) for r in results)
    print(f"collected {total} file(s) from {len(results)} home folder(s) into {Path(args.out)}; "
          f"next: toyattn grade {args.out}")
    return 0 if total else 1
