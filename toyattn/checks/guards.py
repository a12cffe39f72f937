"""Guards that watch *how* a student's function computes its answer (``during=[...]`` of a check).

A judge only sees the numbers a function returned. Some exercises are about the method: "get the
score without ever building the ``d x d`` matrix", "score every head in one batched computation",
"write it yourself instead of calling the course's answer". These guards run around each call of the
student's function, in the student's own process, and raise :class:`~toyattn.checks.core.CheckFailed`
when the method is not the one asked for:

* :func:`forbid_large_intermediates`: no torch result and no NumPy allocation as large as a limit
  (torch ops are watched with a ``TorchFunctionMode``, NumPy's memory with :mod:`tracemalloc`, which
  NumPy reports its array buffers to);
* :func:`forbid_loops`: the student's own Python lines may run only so many times (a loop over the
  heads of a model runs its body once per head);
* :func:`forbid_calls_into`: no call into a module's functions (found by code object, so
  ``from toyattn.symmetry.scores import symmetry_score`` done beforehand does not hide the call);
* :func:`limit_float_work`: the floating-point work of torch's matrix products, counted below einsum
  and matmul (so an intermediate built inside one ``einsum`` call counts), stays under a limit, and
  the code stays in torch where that count can follow it; optionally the entries of all the tensors
  its torch calls return, added up, stay under a second limit (elementwise work: broadcast and sum).
* :func:`no_hooks_left`: no hook left attached to the model after the call, and a plain run of the
  model unchanged by it (lessons 1 and 5: patching and ablation exercises).

Like every ``during`` guard they are feedback and a deterrent, not the grade's guarantee: in grading
the verdict on the numbers is decided outside the student's process.
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
import tracemalloc
from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from toyattn.checks.core import Case, CheckFailed, During

Limit = Callable[[Case], "int | None"]


# --------------------------------------------------------------------------------------------------
# No intermediate as large as the matrix the exercise avoids
# --------------------------------------------------------------------------------------------------


class _WatchSizes(TorchFunctionMode):
    def __init__(self, limit: int, fail: Callable[[str], CheckFailed]):
        super().__init__()
        self.limit, self.fail = limit, fail

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() >= self.limit:
                name = getattr(func, "__name__", "an operation")
                raise self.fail(f"`{name}` made a tensor of shape {tuple(t.shape)} ({t.numel()} entries)")
        return out


@contextlib.contextmanager
def _watch_numpy_memory(limit_bytes: int, fail: Callable[[str], CheckFailed]) -> Iterator[None]:
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    failed = True
    try:
        yield
        failed = False
    finally:
        peak = tracemalloc.get_traced_memory()[1] - before
        if started_here:
            tracemalloc.stop()
    if not failed and peak >= limit_bytes:
        raise fail(f"it allocated {peak / 2**20:.1f} MiB of NumPy arrays at once")


def forbid_large_intermediates(limit: Limit, *, what: str, hint: str) -> During:
    """A guard: fail when the student's code makes a torch tensor with ``limit(case)`` entries or more,
    or holds ``3 * limit(case)`` bytes of NumPy memory at once (None: no limit for that case).

    ``what`` names the object the limit stands for (``"the d_model x d_model matrix M"``).
    """

    @contextlib.contextmanager
    def guard(case: Case) -> Iterator[None]:
        n = limit(case)
        if n is None:
            yield
            return

        def fail(detail: str) -> CheckFailed:
            return CheckFailed(f"{case.name}: {detail}, as large as {what} ({n} entries). {hint}")

        # 3 bytes per entry: a float32 (4 bytes) or float64 M is caught. tracemalloc sees every Python
        # allocation, not only NumPy's, so cases put the watched call after smaller cases that have
        # already run the same code (first-call imports happen there) and size the inputs far below this.
        with _watch_numpy_memory(3 * n, fail), _WatchSizes(n, fail):
            yield

    return guard


# --------------------------------------------------------------------------------------------------
# No Python loop over the batch
# --------------------------------------------------------------------------------------------------


def _restorable(hook: object) -> bool:
    """Whether a trace or profile hook found in place can be put back afterwards (a Python function can;
    cProfile's profiler object cannot). Where it cannot, the guard steps aside rather than break it."""
    return hook is None or callable(hook)


def _library_prefixes() -> tuple[str, ...]:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the toyattn package
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, here}
    paths.update(p for p in sysconfig.get_paths().values() if p)
    # torch and NumPy wherever they are installed (a user site, a conda env beside the kernel's prefix)
    paths.update(os.path.dirname(os.path.dirname(os.path.abspath(m.__file__))) for m in (torch, np))
    return tuple(sorted(paths)) + ("<frozen",)


# Code that libraries generate at run time (torch's FlopCounterMode and dispatch helpers run exec'd
# "<string>" code; torch.distributed "<_remote_module...>"): not the student's lines.
_GENERATED = ("<string>", "<_remote_module")


def _is_library(filename: str, prefixes: tuple[str, ...]) -> bool:
    return (filename.startswith(prefixes) or filename.startswith(_GENERATED) or "site-packages" in filename
            or "dist-packages" in filename)


def _counting_lines(prefixes: tuple[str, ...]) -> tuple[Callable, list[int]]:
    count = [0]

    def local(frame, event, arg):
        if event == "line":
            count[0] += 1
        return local

    def on_call(frame, event, arg):
        # Only the student's own code is counted: library frames get no line tracing at all.
        return None if _is_library(frame.f_code.co_filename, prefixes) else local

    return on_call, count


def forbid_loops(limit: Limit, *, items: str, hint: str) -> During:
    """A guard: fail when the student's own Python lines (not library code) run ``limit(case)`` times
    or more during one call: a loop over the case's ``limit(case)`` ``items`` (e.g. ``"heads"``). None:
    no limit for that case."""
    prefixes = _library_prefixes()

    @contextlib.contextmanager
    def guard(case: Case) -> Iterator[None]:
        n = limit(case)
        previous = sys.gettrace()
        if n is None or not _restorable(previous):
            yield
            return
        tracer, count = _counting_lines(prefixes)
        sys.settrace(tracer)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.settrace(previous)
        if not failed and count[0] >= n:
            raise CheckFailed(
                f"{case.name}: your code ran {count[0]} lines of Python for {n} {items}: that is a loop "
                f"over the {items}. {hint}"
            )

    return guard


# --------------------------------------------------------------------------------------------------
# No calls into the course's own answer
# --------------------------------------------------------------------------------------------------


def forbid_calls_into(*modules: ModuleType, hint: str) -> During:
    """A guard: fail when the student's function calls any function defined in one of ``modules``."""
    labels = {module.__file__: module.__name__ for module in modules}

    @contextlib.contextmanager
    def guard(case: Case) -> Iterator[None]:
        called: list[str] = []

        def profile(frame, event, arg):
            if event == "call" and not called and frame.f_code.co_filename in labels:
                called.append(f"{labels[frame.f_code.co_filename]}.{frame.f_code.co_name}")

        previous = sys.getprofile()
        if not _restorable(previous):
            yield
            return
        sys.setprofile(profile)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.setprofile(previous)
        if not failed and called:
            raise CheckFailed(f"{case.name}: your function calls `{called[0]}`. {hint}")

    return guard


# --------------------------------------------------------------------------------------------------
# No more floating-point work than the method asked for
# --------------------------------------------------------------------------------------------------

_LEAVING_TORCH = frozenset({"numpy", "__array__", "tolist"})


class _StayInTorch(TorchFunctionMode):
    """Refuses turning a tensor into NumPy or Python numbers, where no count of the work can follow it,
    and adds up the entries of every tensor the student's torch calls return (``self.entries``).

    The sum is the work that FlopCounterMode does not count: elementwise products and reductions. A
    matrix built piece by piece by broadcasting (``(W_q[:, i:i+c, None] * W_k[:, None, :]).sum(0)`` in a
    loop) makes every entry of it at least once, however small each piece."""

    def __init__(self, fail: Callable[[str], CheckFailed]):
        super().__init__()
        self.fail = fail
        self.entries = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _LEAVING_TORCH:
            raise self.fail(f"your code called `Tensor.{name}`")
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.entries += t.numel()
        return out


def limit_float_work(limit: Limit, *, what: str, hint: str, entry_limit: Limit | None = None,
                     entries_what: str = "") -> During:
    """A guard: the student's code must stay in torch (no ``.numpy()``, ``np.asarray(tensor)``,
    ``.tolist()``), and where ``limit(case)`` is not None, the floating-point work of its matrix products,
    as :class:`torch.utils.flop_counter.FlopCounterMode` counts it, must stay below ``limit(case)``.

    The count happens below einsum and matmul (at the ATen level), so it sees the ``d x d`` intermediate a
    four-operand ``einsum`` builds internally, or a loop that builds ``M`` a row at a time: work that no
    watch of the tensors the student's code receives can see. ``what`` names the method the limit allows
    (``"the trace form's d_model * d_head^2"``).

    FlopCounterMode counts matrix products only. Where ``entry_limit(case)`` is not None, the entries of
    all tensors that the student's torch calls return, added up over the call, must also stay below it:
    that counts elementwise products and sums, so ``M`` built block by block by broadcasting is seen.
    ``entries_what`` names what that limit allows.
    """
    from torch.utils.flop_counter import FlopCounterMode

    @contextlib.contextmanager
    def guard(case: Case) -> Iterator[None]:
        n = limit(case)

        def leave(detail: str) -> CheckFailed:
            return CheckFailed(
                f"{case.name}: {detail}. This exercise is checked by counting the floating-point work your "
                f"code does in torch, which cannot follow it into NumPy or Python lists: compute in torch."
            )

        # Counted on every case, so that the counter's first-use costs (imports, caches) fall on the small
        # cases, not inside another guard's memory watch on the case that is judged.
        counter, watch = FlopCounterMode(display=False), _StayInTorch(leave)
        with counter, watch:
            yield
        entries = entry_limit(case) if entry_limit is not None else None
        if entries is not None and watch.entries > entries:
            raise CheckFailed(
                f"{case.name}: your code's torch operations returned {watch.entries:.3g} tensor entries in all, more "
                f"than {entries:.3g} ({entries_what}); building M = W_q W_k^T piece by piece, even in pieces smaller "
                f"than M (a broadcast product and a sum per block of rows), makes all d_model^2 of its entries. {hint}"
            )
        if n is None:
            return
        flops = counter.get_total_flops()
        if flops > n:
            raise CheckFailed(
                f"{case.name}: your code's matrix products did {flops:.3g} floating-point operations, more than "
                f"{n:.3g} ({what}); building M = W_q W_k^T, even inside one einsum or a row at a time, takes "
                f"about d_model / d_head times more. {hint}"
            )

    return guard


# --------------------------------------------------------------------------------------------------
# No hook left behind
# --------------------------------------------------------------------------------------------------


def no_hooks_left(model_arg: int = 0, tokens_arg: int = 1) -> During:
    """A guard: after the student's call, no forward hook may stay on (the student's copy of) the model,
    and a plain run of that copy must give the logits it gave before the call.

    An answer that attaches a hook and never removes it returns the right numbers, and every later run
    of the model is silently edited (on a model used again and again, hooks stack: a second mean
    ablation on top of a first one). ``model_arg`` and ``tokens_arg`` are the positions of the model
    and of a token batch among the case's arguments.
    """

    @contextlib.contextmanager
    def guard(case: Case) -> Iterator[None]:
        model, tokens = case.args[model_arg], case.args[tokens_arg]
        with torch.no_grad():
            before = model(tokens)
        yield
        points = getattr(model, "hook_points", {})
        left = [name for name, hp in points.items() if hp._forward_hooks]
        left += [name or "the model itself" for name, module in model.named_modules()
                 if (module._forward_hooks or module._forward_pre_hooks) and module not in points.values()]
        if left:
            raise CheckFailed(
                f"{case.name}: expected no hook left on the model after your function, got hooks still attached to "
                f"{left}: later runs of the model would still be edited. Add hooks inside `with model.hooks([...]):` "
                f"(or use model.run_with_hooks) so they are removed."
            )
        with torch.no_grad():
            after = model(tokens)
        if not torch.equal(before, after):
            raise CheckFailed(
                f"{case.name}: expected a plain run of the model to give the same logits after your function as before "
                f"it, got a largest difference of {float((after - before).abs().max()):.3g}: your function changed the "
                f"model (its weights or buffers) instead of editing one run."
            )

    return guard


class _ForbidTorch(TorchFunctionMode):
    def __init__(self, words: tuple[str, ...], case: Case, hint: str):
        super().__init__()
        self.words, self.case, self.hint = words, case, hint

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if any(w in name for w in self.words):
            raise CheckFailed(f"{self.case.name}: your function calls torch's `{name}`. {self.hint}")
        return func(*args, **(kwargs or {}))


def forbid_torch(*words: str, hint: str = "The exercise asks you to write it yourself.") -> During:
    """A ``during`` guard: the student's call fails if it uses a torch function whose name contains a word."""
    return lambda case: _ForbidTorch(words, case, hint)
