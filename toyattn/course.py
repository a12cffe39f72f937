"""Course tooling: paired notebooks and exercises generated from solutions.

The rules this module enforces (and ``toyattn build`` applies):

* In ``notebooks/``, ``solutions/`` and ``exercises/`` every notebook is a pair: ``NAME.py``
  (py:percent, the source of truth) and ``NAME.ipynb`` (committed without outputs, for people who
  open it without jupytext). Files starting with ``_`` are helpers, not notebooks.
* ``solutions/`` is the single source of the problem sets. Each answer sits between nbgrader-style
  markers ``### BEGIN SOLUTION`` and ``### END SOLUTION``; ``exercises/NAME.py`` is ``solutions/NAME.py``
  with each marked region replaced by ``# YOUR CODE HERE`` and ``raise NotImplementedError()``
  (same indentation). Nobody edits ``exercises/`` by hand.

Everything here works on a course root passed in, so the tests can build broken copies in a
temporary folder and watch the checks catch them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB_LINES = ("# YOUR CODE HERE", "raise NotImplementedError()")
PAIRED_DIRS = ("notebooks", "solutions", "exercises")
#: A comment (or markdown) line of a solution file that says it is the solved version ...
SOLUTION_BANNER = "solved version"
#: ... is replaced, whole, by this line in the exercise (same indentation and comment prefix): swapping
#: only the words would leave the rest of the sentence, e.g. "students get the exercise version in
#: exercises/", reading wrongly on the exercise itself. In code lines only the words are swapped.
EXERCISE_BANNER = (
    "*This is the exercise version of the problem set: your code goes where a cell says YOUR CODE HERE; "
    "the solved version is in `solutions/`.*"
)
EXERCISE_WORDS = "exercise version"
_COMMENT_PREFIX = re.compile(r"^[ \t]*#[ \t]*")

_MARKER = re.compile(r"^(?P<indent>[ \t]*)(?P<marker>### (BEGIN|END) SOLUTION)\s*$")


class CourseError(ValueError):
    """A solution file whose markers are malformed (unclosed, nested, or stray)."""


def _require_jupytext():
    try:
        import jupytext
    except ImportError as err:  # pragma: no cover - exercised only without the lab extra
        raise ImportError(
            "Paired notebooks need jupytext: install the lab extra (`pip install -e '.[lab]'` or `make install`)."
        ) from err
    return jupytext


def strip_solutions(source: str, *, filename: str = "<solution>") -> str:
    """The exercise text for a solution text: each marked region becomes a stub.

    Raises:
        CourseError: a BEGIN without END, an END without BEGIN, or nested markers; the message
            names the file and line.
    """
    out: list[str] = []
    inside_since: int | None = None
    for lineno, line in enumerate(source.splitlines(keepends=True), start=1):
        m = _MARKER.match(line.rstrip("\n"))
        if m and m.group("marker") == BEGIN:
            if inside_since is not None:
                raise CourseError(f"{filename}:{lineno}: {BEGIN} inside the region opened at line {inside_since}.")
            inside_since = lineno
            indent = m.group("indent")
            out.extend(f"{indent}{stub}\n" for stub in STUB_LINES)
            continue
        if m and m.group("marker") == END:
            if inside_since is None:
                raise CourseError(f"{filename}:{lineno}: {END} without a {BEGIN} before it.")
            inside_since = None
            continue
        if inside_since is None:
            out.append(_exercise_line(line))
    if inside_since is not None:
        raise CourseError(f"{filename}:{inside_since}: {BEGIN} is never closed by {END}.")
    return "".join(out)


def _exercise_line(line: str) -> str:
    """A solution line as it reads in the exercise: the solved-version banner becomes the exercise banner."""
    if SOLUTION_BANNER not in line:
        return line
    comment = _COMMENT_PREFIX.match(line)
    if comment is None:  # code: swap the words only, the code around them must still run
        return line.replace(SOLUTION_BANNER, EXERCISE_WORDS)
    return f"{comment.group(0)}{EXERCISE_BANNER}" + ("\n" if line.endswith("\n") else "")


def count_solution_regions(source: str) -> int:
    return sum(1 for line in source.splitlines() if _MARKER.match(line) and BEGIN in line)


def py_to_ipynb_text(py_text: str) -> str:
    """The ``.ipynb`` JSON text jupytext makes from a py:percent text (no outputs)."""
    jupytext = _require_jupytext()
    nb = jupytext.reads(py_text, fmt="py:percent")
    nb.metadata.setdefault(
        "kernelspec", {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    )
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    # nbformat gives new cells random ids; fixed ones keep `toyattn build` idempotent and diffs small.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
    return jupytext.writes(nb, fmt="ipynb")


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def notebook_names(folder: Path) -> list[str]:
    """Stems of the notebooks in ``folder`` (from either file of each pair)."""
    stems = {p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}
    stems |= {p.stem for p in folder.glob("*.ipynb")}
    return sorted(stems)


@dataclass
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_pairs(root: Path) -> list[Problem]:
    """Problems with the notebook pairs under ``root``: a missing twin, drift, or committed outputs."""
    jupytext = _require_jupytext()
    import nbformat

    problems: list[Problem] = []
    for folder_name in PAIRED_DIRS:
        folder = root / folder_name
        if not folder.is_dir():
            continue
        for stem in notebook_names(folder):
            py, ipynb = folder / f"{stem}.py", folder / f"{stem}.ipynb"
            rel = f"{folder_name}/{stem}"
            if not py.exists():
                problems.append(Problem(f"{rel}.ipynb", "has no py:percent twin (the .py is the source of truth)"))
                continue
            if not ipynb.exists():
                problems.append(Problem(f"{rel}.py", "has no .ipynb twin; run `toyattn build`"))
                continue
            try:
                nb = nbformat.reads(ipynb.read_text(encoding="utf-8"), as_version=4)
            except Exception as err:  # noqa: BLE001 - report any unreadable notebook
                problems.append(Problem(f"{rel}.ipynb", f"is not a readable notebook ({err})"))
                continue
            with_outputs = [
                i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))
            ]
            if with_outputs:
                problems.append(
                    Problem(
                        f"{rel}.ipynb",
                        f"is committed with outputs (cells {with_outputs[:5]}); clear them with `toyattn build`",
                    )
                )
            expected = jupytext.reads(py.read_text(encoding="utf-8"), fmt="py:percent")
            if _cells(expected) != _cells(nb):
                diff = next(
                    (i for i, (a, b) in enumerate(zip(_cells(expected), _cells(nb), strict=False)) if a != b),
                    min(len(expected.cells), len(nb.cells)),
                )
                problems.append(
                    Problem(
                        f"{rel}.ipynb",
                        f"has drifted from {stem}.py (first difference at cell {diff}); "
                        f"edit the .py and run `toyattn build`",
                    )
                )
    return problems


def check_exercises(root: Path) -> list[Problem]:
    """Problems with ``exercises/``: missing, stale (differs from regenerating), or still holding answers."""
    problems: list[Problem] = []
    sol_dir, ex_dir = root / "solutions", root / "exercises"
    if not sol_dir.is_dir():
        return problems
    solutions = {p.stem for p in sol_dir.glob("*.py") if not p.name.startswith("_")}
    for stem in sorted(solutions):
        sol_text = (sol_dir / f"{stem}.py").read_text(encoding="utf-8")
        rel = f"exercises/{stem}.py"
        if count_solution_regions(sol_text) == 0:
            problems.append(Problem(f"solutions/{stem}.py", f"has no `{BEGIN}` region, so its exercise asks nothing"))
        try:
            expected = strip_solutions(sol_text, filename=f"solutions/{stem}.py")
        except CourseError as err:
            problems.append(Problem(f"solutions/{stem}.py", str(err)))
            continue
        ex = ex_dir / f"{stem}.py"
        if not ex.exists():
            problems.append(Problem(rel, "is missing; run `toyattn build`"))
            continue
        text = ex.read_text(encoding="utf-8")
        if BEGIN in text or END in text:
            problems.append(Problem(rel, "still contains solution markers (it must be generated, not copied)"))
        if text != expected:
            problems.append(Problem(rel, f"is stale: it differs from solutions/{stem}.py with answers stripped; run `toyattn build`"))
    if ex_dir.is_dir():
        for p in sorted(ex_dir.glob("*.py")):
            if not p.name.startswith("_") and p.stem not in solutions:
                problems.append(Problem(f"exercises/{p.name}", "has no solution it was generated from"))
    return problems


def build(root: Path) -> list[str]:
    """Regenerate every exercise from its solution and every ``.ipynb`` from its ``.py``.

    Returns:
        The paths written (only files whose content changed).
    """
    written: list[str] = []

    def write(path: Path, text: str) -> None:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(str(path.relative_to(root)))

    sol_dir = root / "solutions"
    if sol_dir.is_dir():
        for sol in sorted(sol_dir.glob("*.py")):
            if sol.name.startswith("_"):
                continue
            write(root / "exercises" / sol.name, strip_solutions(sol.read_text(encoding="utf-8"), filename=str(sol)))
    for folder_name in PAIRED_DIRS:
        folder = root / folder_name
        if not folder.is_dir():
            continue
        for py in sorted(folder.glob("*.py")):
            if py.name.startswith("_"):
                continue
            write(py.with_suffix(".ipynb"), py_to_ipynb_text(py.read_text(encoding="utf-8")))
    return written


def find_root(start: Path | None = None) -> Path:
    """The course root: the nearest folder at or above ``start`` holding ``solutions/`` and ``pyproject.toml``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").exists() and (candidate / "solutions").is_dir():
            return candidate
    raise FileNotFoundError(
        f"No course root (a folder with pyproject.toml and solutions/) at or above {here}; "
        f"run this from inside the toyattn checkout or pass --root."
    )
