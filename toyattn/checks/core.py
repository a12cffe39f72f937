"""The machinery behind every exercise check (ARENA-style: a check sits right below the exercise cell).

A check is three small pieces, so that the verdict never has to come from the student's process:

* ``cases(rng)`` builds the inputs (from a seed: fixed in class, fresh for every grading run);
* the student's function runs on each case, and what it returns becomes plain arrays
  (:class:`~toyattn.checks.answers.Returned`);
* the *judge* (the decorated function) compares one case's arrays with the reference and raises
  :class:`CheckFailed` with a message that names the case, what was expected and what came back.

In class, ``checks.check_softmax(softmax)`` does all three at once and prints one pass line
(``✅ PASSED check_softmax: 5 cases match the reference.``) or raises :class:`CheckFailed`. A function
whose body still raises ``NotImplementedError`` gets a friendly "not implemented yet" message.

In grading (``toyattn grade``), the student's kernel only runs the student's function and writes
the arrays (see :mod:`toyattn.checks.answers`); the grader rebuilds the cases from its own seed and
runs the judges in its own process (:meth:`Check.judge_answers`). A printed pass line, a patched
check or a hand-written answers file gains nothing: only right answers to that run's cases pass.

Writing a new check::

    def _cases(rng):
        g = torch_generator(rng)
        return [Case("a [3, 4] matrix", (torch.randn(3, 4, generator=g),))]

    @exercise_check(cases=_cases, during=[forbid_torch("softmax")])
    def check_softmax(case, got):
        assert_close(got.value, reference_softmax(*case.args), what=f"softmax of {case.name}")
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from toyattn.arrays import try_numpy
from toyattn.checks.answers import Answers, NotPlainData, Returned, grading_seed, to_returned, write_answers

PASS_PREFIX = "✅ PASSED"
RECORDED_PREFIX = "📝 RECORDED"
#: The seed of every check's cases in class (grading uses a fresh one per run).
CLASS_SEED = 0
#: Every check defined with :func:`exercise_check`, by name (``toyattn grade`` and the tests use it).
REGISTRY: dict[str, Check] = {}


class CheckFailed(AssertionError):
    """The student's answer disagrees with the reference; the message says where."""


class NotImplementedYet(CheckFailed):
    """The student's function still raises ``NotImplementedError``."""


@dataclass(frozen=True)
class Case:
    """One input for the student's function: ``fn(*args, **kwargs)``; ``expect`` is for the judge only."""

    name: str
    args: tuple = ()
    expect: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A torch generator seeded from ``rng``, so a case's tensors depend on the check's seed alone."""
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


Judge = Callable[[Case, Returned], None]
#: A guard around one student call; it gets the case with the copies of the arguments the student gets.
During = Callable[[Case], contextlib.AbstractContextManager[Any]]


class Check:
    """One registered exercise check: its cases, what runs around the student's call, and its judge."""

    def __init__(self, judge: Judge, cases: Callable[[np.random.Generator], Sequence[Case]], during: Iterable[During] = ()):
        functools.update_wrapper(self, judge)
        self.name: str = judge.__name__
        self._judge = judge
        self._cases = cases
        self._during = tuple(during)

    def __repr__(self) -> str:
        return f"<exercise check {self.name}>"

    def cases(self, seed: int) -> list[Case]:
        """The cases for ``seed``: the same list every time it is asked for (kernel and grader alike)."""
        return list(self._cases(np.random.default_rng(seed)))

    # -- the student's side: run their function ---------------------------------------------------

    def run_case(self, fn: Callable[..., Any], case: Case) -> Returned:
        """Call the student's function on (a copy of) one case and turn the result into plain arrays."""
        # The guards get the very copies the student's function gets, so one can look at what the
        # function did to them (e.g. hooks left attached to a model).
        given = dataclasses.replace(case, args=copy.deepcopy(case.args), kwargs=copy.deepcopy(case.kwargs))
        with contextlib.ExitStack() as stack:
            for make in self._during:
                stack.enter_context(make(given))
            output = call_student(fn, *given.args, case=case.name, **given.kwargs)
        try:
            return to_returned(output)
        except NotPlainData as err:
            raise CheckFailed(
                f"{case.name}: expected a tensor, an array or a number (or a tuple of them), got {err}."
            ) from None

    def __call__(self, fn: Callable[..., Any]) -> None:
        """Check the student's function: judged here in class, recorded for the grader in grading."""
        seed = grading_seed()
        try:
            if seed is None:
                n = self._check_here(fn)
            else:
                n = self._record_for_grader(fn, seed)
        except NotImplementedYet:
            raise
        except AssertionError as err:
            raise CheckFailed(self._named(str(err))) from None
        if seed is None:
            print(f"{PASS_PREFIX} {self.name}: {n} case{'s' if n != 1 else ''} match the reference.")
        else:
            print(f"{RECORDED_PREFIX} {self.name}: {n} answers recorded; the grader judges them.")

    def _check_here(self, fn: Callable[..., Any]) -> int:
        cases = self.cases(CLASS_SEED)
        for case in cases:
            self._judge(case, self.run_case(fn, case))
        return len(cases)

    def _record_for_grader(self, fn: Callable[..., Any], seed: int) -> int:
        cases, returned = self.cases(seed), []
        try:
            for case in cases:
                returned.append(self.run_case(fn, case))
        except NotImplementedYet as err:
            write_answers(self.name, seed, "not implemented", [], str(err))
            raise
        except AssertionError as err:
            write_answers(self.name, seed, "failed", [], self._named(str(err)))
            raise
        except KeyboardInterrupt:
            write_answers(self.name, seed, "timeout", [], "interrupted: it ran over the time limit")
            raise
        except BaseException as err:
            write_answers(self.name, seed, "error", [], f"{type(err).__name__}: {err}")
            raise
        write_answers(self.name, seed, "answered", returned)
        return len(cases)

    # -- the grader's side: judge plain arrays ---------------------------------------------------

    def judge_answers(self, answers: Answers, seed: int) -> tuple[str, str]:
        """``(status, message)`` for answers read back from a kernel that was given ``seed``.

        Runs in the grader's process. Only "answered" arrays that match every case can pass; any
        other status the kernel reported is taken as it is (it can only lower the student's grade).
        """
        if answers.status != "answered":
            return answers.status, answers.message
        if answers.seed != seed:
            return "failed", self._named("the answers were computed for other inputs than this run's cases.")
        cases = self.cases(seed)
        if len(answers.returned) != len(cases):
            return "failed", self._named(f"answered {len(answers.returned)} cases, the check has {len(cases)}.")
        for case, got in zip(cases, answers.returned, strict=True):
            try:
                self._judge(case, got)
            except AssertionError as err:
                return "failed", self._named(str(err))
            except Exception as err:  # an answer so malformed that comparing it fails: still the answer's fault
                return "failed", self._named(f"{case.name}: the answer could not be compared ({type(err).__name__}: {err}).")
        return "passed", ""

    def _named(self, msg: str) -> str:
        return msg if msg.startswith(self.name) else f"{self.name}: {msg}"


def _check_unique(name: str, judge: Judge) -> None:
    """Two lessons' checks of one name would shadow each other in ``checks.`` and in grading: refuse it."""
    other = REGISTRY.get(name)
    if other is not None and other._judge.__module__ != judge.__module__:
        raise ValueError(f"two checks are named {name} ({other._judge.__module__} and {judge.__module__}); rename one.")


def exercise_check(
    *, cases: Callable[[np.random.Generator], Sequence[Case]], during: Iterable[During] = ()
) -> Callable[[Judge], Check]:
    """Register the decorated judge as a check over ``cases``; ``during`` wraps each student call."""
    if not callable(cases) or isinstance(cases, Check):
        raise TypeError("exercise_check(cases=...) takes the function that builds the cases")

    def register(judge: Judge) -> Check:
        check = Check(judge, cases, during)
        _check_unique(check.name, judge)
        REGISTRY[check.name] = check
        return check

    return register


def call_student(fn: Callable[..., Any], *args: Any, case: str = "", **kwargs: Any) -> Any:
    """Call the student's function, turning ``NotImplementedError`` into a friendly failure.

    Any other exception propagates unchanged, so the student sees their own bug's traceback.
    """
    if not callable(fn):
        raise CheckFailed(
            f"expected a function, got {type(fn).__name__}. Pass the function itself, without calling it "
            f"(e.g. `check(my_fn)`, not `check(my_fn())`)."
        )
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        fname = getattr(fn, "__name__", "your function")
        raise NotImplementedYet(
            f"`{fname}` is not implemented yet: replace `raise NotImplementedError()` under "
            f"'# YOUR CODE HERE' with your code, run that cell, then run this check again."
        ) from None


def _check_returned_kind(got: Returned, expected: Any, what: str, *, check_type: bool, check_dtype: bool) -> None:
    if got.is_tuple:
        raise CheckFailed(f"{what}: expected one value, got a tuple of {len(got.arrays)}.")
    if check_type and isinstance(expected, torch.Tensor) and not got.is_tensor():
        raise CheckFailed(f"{what}: expected a torch.Tensor, got {got.kind.split(':')[0]}.")
    if check_dtype and isinstance(expected, torch.Tensor) and got.torch_dtype() != str(expected.dtype):
        raise CheckFailed(f"{what}: expected dtype {expected.dtype}, got {got.torch_dtype()}.")


def assert_close(
    actual: Any,
    expected: Any,
    *,
    what: str = "result",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    check_dtype: bool = False,
    check_type: bool = True,
    mistakes: Mapping[str, Callable[[], Any]] | None = None,
) -> None:
    """Assert two tensors/arrays/scalars agree, with a message a student can act on.

    ``actual`` may be a :class:`~toyattn.checks.answers.Returned` (what a judge gets); its recorded
    kind stands in for the type and dtype of the value the student's function returned.

    Reports, in this order: a wrong type (tensor vs array), a wrong shape, a wrong dtype (if
    ``check_dtype``), NaNs, and the first differing entry with both values and the largest error.
    ``mistakes`` maps a description of a known mistake to a function computing what that mistake
    returns; when the answer is wrong and matches one, the message adds "It looks like <description>".
    """
    try:
        _assert_close(actual, expected, what=what, rtol=rtol, atol=atol, check_dtype=check_dtype, check_type=check_type)
    except CheckFailed as err:
        value = actual.value if isinstance(actual, Returned) and not actual.is_tuple else actual
        raise CheckFailed(f"{err}{looks_like(value, mistakes or {}, rtol=rtol, atol=atol)}") from None


def looks_like(actual: Any, mistakes: Mapping[str, Callable[[], Any]], *, rtol: float = 1e-5, atol: float = 1e-6) -> str:
    """" It looks like <description>." for the first known mistake whose result ``actual`` matches, else "".

    Each mistake's result is computed only when needed (and one that cannot be computed is skipped).
    """
    a = try_numpy(actual)
    if a is None:
        return ""
    for description, compute in mistakes.items():
        try:
            m = try_numpy(compute())
        except Exception:  # a mistake that does not apply to this case
            continue
        if m is not None and m.shape == a.shape and _same_values(a, m, rtol, atol):
            return f" It looks like {description}{'' if description.endswith(('.', '?', '!')) else '.'}"
    return ""


def _same_values(a: np.ndarray, m: np.ndarray, rtol: float, atol: float) -> bool:
    if a.dtype == bool or m.dtype == bool:
        return bool(np.array_equal(a, m))
    return bool(np.allclose(a.astype(np.float64), m.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True))


def _assert_close(
    actual: Any, expected: Any, *, what: str, rtol: float, atol: float, check_dtype: bool, check_type: bool
) -> None:
    if isinstance(actual, Returned):
        _check_returned_kind(actual, expected, what, check_type=check_type, check_dtype=check_dtype)
        actual, check_type, check_dtype = actual.value, False, False
    if check_type and isinstance(expected, torch.Tensor) and not isinstance(actual, torch.Tensor):
        raise CheckFailed(f"{what}: expected a torch.Tensor, got {type(actual).__name__}.")
    a, e = try_numpy(actual), try_numpy(expected)
    if a is None:
        raise CheckFailed(f"{what}: expected a number, array or tensor, got {type(actual).__name__}.")
    if a.shape != e.shape:
        raise CheckFailed(f"{what}: expected shape {tuple(e.shape)}, got {tuple(a.shape)}.")
    if check_dtype and isinstance(expected, torch.Tensor) and actual.dtype != expected.dtype:
        raise CheckFailed(f"{what}: expected dtype {expected.dtype}, got {actual.dtype}.")
    if e.dtype == bool or a.dtype == bool:
        bad = a != e
    else:
        a_f, e_f = a.astype(np.float64), e.astype(np.float64)
        if np.isnan(a_f).any() and not np.isnan(e_f).any():
            idx = tuple(int(i) for i in np.argwhere(np.isnan(a_f))[0])
            raise CheckFailed(f"{what}: contains NaN, first at index {idx}: expected {e[idx].tolist()!r}, got nan.")
        bad = ~np.isclose(a_f, e_f, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
        n_bad = int(bad.sum())
        msg = (
            f"{what}: {n_bad} of {bad.size} entries differ; first at index {idx}: "
            f"expected {e[idx].tolist()!r}, got {a[idx].tolist()!r}."
        )
        if e.dtype != bool and a.dtype != bool:
            msg += f" Largest absolute error {float(np.nanmax(np.abs(a_f - e_f))):.3g}."
        raise CheckFailed(msg)


def as_scalar(got: Returned, what: str) -> float:
    """The one number a student's function returned (a float, a 0-d or one-element array or tensor)."""
    if got.is_tuple:
        raise CheckFailed(f"{what}: expected one number, got a tuple of {len(got.arrays)} values.")
    if got.value.size != 1:
        raise CheckFailed(f"{what}: expected one number, got an array of shape {tuple(got.value.shape)}.")
    return float(got.value.reshape(()))
