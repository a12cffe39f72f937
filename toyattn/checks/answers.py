"""What leaves a student's kernel in grading: each check's answers as plain arrays, written and validated.

In class a check judges the student's function right away. In grading (``toyattn grade``) the
student's kernel is untrusted, so it only runs the student's function on the check's cases and
writes what came back here: one ``<check>.json`` (status, seed, what each returned value was) and
one ``<check>.npz`` (the numbers) per check, in the folder named by ``TOYATTN_ANSWERS_DIR``. The
grader reads them back with :func:`read_answers` (sizes, types and names validated; no pickles),
rebuilds the same cases from the same seed and judges them in its own process
(:meth:`toyattn.checks.core.Check.judge_answers`). Nothing in these files can say "passed".
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toyattn.arrays import to_numpy

#: Set by the grader in the student's kernel: where answers go, and the seed of this run's cases.
ANSWERS_DIR_ENV = "TOYATTN_ANSWERS_DIR"
SEED_ENV = "TOYATTN_GRADING_SEED"

#: What the kernel may report per check. "answered" means: judge my arrays. The others can only
#: lower the student's own grade, so the grader takes them at their word.
KERNEL_STATUSES = ("answered", "not implemented", "failed", "error", "timeout")

MAX_ARRAY_ELEMENTS = 4_000_000  # one returned value
MAX_TOTAL_BYTES = 64 * 2**20  # one check's answers, all cases together
MAX_MESSAGE_CHARS = 2_000
MAX_CASES = 64
MAX_ITEMS = 8  # values returned by one call (a tuple)
_NUMERIC_KINDS = "biuf"  # bool, int, unsigned, float: no objects, strings or complex numbers
_CHECK_NAME = re.compile(r"^check_[a-z0-9_]{1,60}$")


class AnswersInvalid(ValueError):
    """An answers file that is not what a check writes: the grader reports a grader error for it."""


@dataclass(frozen=True)
class Returned:
    """What the student's function returned for one case, as plain data: all a judge ever sees.

    ``arrays`` holds one array per returned value (a function that returns a tuple gives several),
    ``kinds`` says what each value was (``"torch.Tensor:torch.float32"``, ``"numpy.ndarray:int64"``,
    ``"int"``, ``"float"``, ``"list"`` ...), so a judge can insist on a tensor or a dtype.
    """

    arrays: tuple[np.ndarray, ...]
    kinds: tuple[str, ...]
    is_tuple: bool = False

    @property
    def value(self) -> np.ndarray:
        """The single returned value (a judge of a function that returns one thing uses this)."""
        return self.arrays[0]

    @property
    def kind(self) -> str:
        return self.kinds[0]

    def is_tensor(self, i: int = 0) -> bool:
        return self.kinds[i].startswith("torch.Tensor")

    def torch_dtype(self, i: int = 0) -> str | None:
        """``"torch.bool"``, ``"torch.float32"`` ... for a returned tensor, else None."""
        return self.kinds[i].split(":", 1)[1] if self.is_tensor(i) else None


class NotPlainData(TypeError):
    """The student's function returned something that is not numbers (a dict, a string, a model ...)."""


def _plain_item(x: Any) -> tuple[np.ndarray, str]:
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise NotPlainData(f"a complex tensor ({x.dtype})")
        arr = to_numpy(x)  # bfloat16 arrives as float32; half precision is widened the same way
        return arr.astype(np.float32) if arr.dtype == np.float16 else arr.copy(), f"torch.Tensor:{x.dtype}"
    if isinstance(x, bool | int | float | np.generic | np.ndarray | list):
        kind = f"numpy.ndarray:{x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as err:
            raise NotPlainData(f"a {type(x).__name__} that is not a rectangular array of numbers ({err})") from None
        if arr.dtype.kind not in _NUMERIC_KINDS:
            raise NotPlainData(f"a {type(x).__name__} of {arr.dtype} values, not real numbers")
        return arr.copy(), kind
    raise NotPlainData(f"a {type(x).__name__}")


def to_returned(output: Any) -> Returned:
    """Turn what the student's function returned into :class:`Returned`, or raise :class:`NotPlainData`.

    A top-level ``tuple`` is several values; anything else (a tensor, an array, a number, a list of
    numbers) is one value.
    """
    if isinstance(output, tuple):
        if not 1 <= len(output) <= MAX_ITEMS:
            raise NotPlainData(f"a tuple of {len(output)} values")
        items = [_plain_item(x) for x in output]
        return Returned(tuple(a for a, _ in items), tuple(k for _, k in items), is_tuple=True)
    arr, kind = _plain_item(output)
    return Returned((arr,), (kind,))


# --------------------------------------------------------------------------------------------------
# The kernel's side: write
# --------------------------------------------------------------------------------------------------


def grading_seed() -> int | None:
    """This grading run's seed, or None in class (no grader around)."""
    if not os.environ.get(ANSWERS_DIR_ENV):
        return None
    try:
        return int(os.environ.get(SEED_ENV, "0"))
    except ValueError:
        return 0


def write_answers(check: str, seed: int, status: str, returned: list[Returned], message: str = "") -> Path:
    """Write one check's answers into ``$TOYATTN_ANSWERS_DIR`` (the last call of a check wins)."""
    folder = Path(os.environ[ANSWERS_DIR_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"c{i}_{j}": a for i, r in enumerate(returned) for j, a in enumerate(r.arrays)}
    meta = {
        "check": check,
        "seed": int(seed),
        "status": status,
        "message": message[:MAX_MESSAGE_CHARS],
        "cases": [{"kinds": list(r.kinds), "is_tuple": r.is_tuple} for r in returned],
    }
    np.savez(folder / f"{check}.npz", **arrays)
    (folder / f"{check}.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder / f"{check}.json"


# --------------------------------------------------------------------------------------------------
# The grader's side: read and validate (the files are untrusted)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answers:
    """One check's answers as read back by the grader."""

    check: str
    seed: int
    status: str
    message: str
    returned: tuple[Returned, ...]


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise AnswersInvalid(what)


def _read_meta(path: Path) -> dict[str, Any]:
    _require(path.is_file() and not path.is_symlink(), f"{path.name} is not a regular file")
    _require(path.stat().st_size <= 1_000_000, f"{path.name} is larger than 1 MB")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # bad text or JSON, a 5,000-digit number, a 200k-deep list
        raise AnswersInvalid(f"{path.name} is not JSON a check writes ({type(err).__name__}: {str(err)[:120]})") from None
    _require(isinstance(meta, dict), f"{path.name} does not hold a JSON object")
    _require(meta.get("status") in KERNEL_STATUSES, f"{path.name}: unknown status {str(meta.get('status'))[:40]!r}")
    _require(isinstance(meta.get("seed"), int) and not isinstance(meta.get("seed"), bool), f"{path.name}: seed is not an integer")
    _require(isinstance(meta.get("message", ""), str), f"{path.name}: message is not text")
    cases = meta.get("cases", [])
    _require(isinstance(cases, list) and len(cases) <= MAX_CASES, f"{path.name}: cases is not a short list")
    for c in cases:
        _require(isinstance(c, dict), f"{path.name}: a case is not an object")
        kinds = c.get("kinds")
        _require(
            isinstance(kinds, list) and 1 <= len(kinds) <= MAX_ITEMS
            and all(isinstance(k, str) and len(k) <= 80 for k in kinds),
            f"{path.name}: a case's kinds are not a short list of names",
        )
        _require(isinstance(c.get("is_tuple", False), bool), f"{path.name}: is_tuple is not true/false")
    return meta


def _check_npz_directory(path: Path, expected: set[str]) -> None:
    """Names, sizes, dtypes and shapes from the zip directory and each ``.npy`` header, nothing decompressed beyond.

    Refuses an archive whose arrays would take more than :data:`MAX_TOTAL_BYTES` (or one array more
    than :data:`MAX_ARRAY_ELEMENTS`) once read, whatever its size on disk.
    """
    import zipfile

    from numpy.lib import format as npy

    _require(zipfile.is_zipfile(path), f"{path.name} is not a zip archive (.npz)")
    total = 0
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        _require(len(infos) == len(expected), f"{path.name} holds {len(infos)} members where its JSON describes {len(expected)}")
        for info in infos:
            name = info.filename.removesuffix(".npy")
            _require(name in expected, f"{path.name} holds an unexpected member {info.filename[:60]!r}")
            _require(info.file_size <= MAX_TOTAL_BYTES + 65536, f"{path.name}: {name} unpacks to {info.file_size} bytes")
            with zf.open(info) as f:  # only the header's few bytes are decompressed here
                version = npy.read_magic(f)
                read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shape, _, dtype = read(f)
            _require(dtype.kind in _NUMERIC_KINDS and not dtype.hasobject, f"{path.name}: {name} holds {dtype}, not real numbers")
            count = int(np.prod(shape, dtype=object)) if shape else 1
            _require(count <= MAX_ARRAY_ELEMENTS, f"{path.name}: {name} has {count} elements")
            total += count * dtype.itemsize
            _require(total <= MAX_TOTAL_BYTES, f"{path.name} unpacks to more than {MAX_TOTAL_BYTES >> 20} MB")


def _read_arrays(path: Path, meta: dict[str, Any]) -> tuple[Returned, ...]:
    expected = {f"c{i}_{j}" for i, c in enumerate(meta["cases"]) for j in range(len(c["kinds"]))}
    if not expected:
        return ()
    _require(path.is_file() and not path.is_symlink(), f"{path.name} is missing or not a regular file")
    _require(path.stat().st_size <= MAX_TOTAL_BYTES + 1_000_000, f"{path.name} is larger than {MAX_TOTAL_BYTES >> 20} MB")
    try:
        _check_npz_directory(path, expected)  # before anything is decompressed: a zip bomb stops here
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            _require(names == expected, f"{path.name} holds {len(names)} arrays where its JSON describes {len(expected)}")
            arrays = {}
            for name in sorted(expected):
                a = npz[name]
                _require(a.dtype.kind in _NUMERIC_KINDS, f"{path.name}: {name} holds {a.dtype}, not real numbers")
                _require(a.size <= MAX_ARRAY_ELEMENTS, f"{path.name}: {name} has {a.size} elements")
                arrays[name] = a
    except AnswersInvalid:
        raise
    except Exception as err:  # a damaged or hand-made npz: zipfile, pickle and format errors alike
        raise AnswersInvalid(f"{path.name} is not a readable .npz ({type(err).__name__}: {str(err)[:200]})") from None
    return tuple(
        Returned(
            tuple(arrays[f"c{i}_{j}"] for j in range(len(c["kinds"]))),
            tuple(c["kinds"]),
            bool(c.get("is_tuple", False)),
        )
        for i, c in enumerate(meta["cases"])
    )


def read_answers(folder: str | os.PathLike[str], check: str) -> Answers | None:
    """One check's answers from ``folder``, validated; None when the kernel wrote none for it.

    Raises :class:`AnswersInvalid` for anything a check does not write (wrong names, object or
    string arrays, oversized arrays, unknown statuses, a symlink instead of a file).
    """
    _require(bool(_CHECK_NAME.match(check)), f"{check!r} is not a check's name")
    folder = Path(folder)
    meta_path = folder / f"{check}.json"
    if not meta_path.exists() and not meta_path.is_symlink():
        return None
    meta = _read_meta(meta_path)
    _require(meta.get("check") == check, f"{meta_path.name} names another check")
    returned = _read_arrays(folder / f"{check}.npz", meta) if meta["status"] == "answered" else ()
    return Answers(check, meta["seed"], meta["status"], meta.get("message", "")[:MAX_MESSAGE_CHARS], returned)
