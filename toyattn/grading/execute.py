"""The kernel driver: run every cell of one notebook in a fresh kernel, with time limits, and say what happened.

Used by ``toyattn run`` directly and, in grading, by :mod:`toyattn.grading.runner` inside the sandbox.
Every cell runs with ``allow_errors`` (an error in one exercise does not stop the next), a per-cell
time limit and an overall time limit. A cell over its limit is interrupted (as the stop button
does) and the notebook goes on with the next cell while time is left; a kernel that dies (a crash,
``os._exit``, running out of memory) ends the run.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 600.0
DEFAULT_CELL_TIMEOUT = 300.0
STOP_REASONS = ("time limit", "kernel died", "kernel unresponsive", "kernel failed to start", "kernel error")
_MAX_TEXT = 500  # characters kept of any one error text read back from a run


@dataclass
class CellError:
    cell: int  # 1-based position among all cells, as a student counts them
    ename: str
    evalue: str
    first_line: str

    def describe(self) -> str:
        where = f"cell {self.cell}" + (f" ({self.first_line!r})" if self.first_line else "")
        return f"{self.ename} in {where}: {self.evalue}".rstrip(": ")


@dataclass
class Execution:
    """What happened when a notebook ran: errors per cell, interrupted cells, and where it stopped."""

    seconds: float = 0.0
    errors: list[CellError] = field(default_factory=list)
    timed_out_cells: list[int] = field(default_factory=list)
    stopped_at: int | None = None  # 1-based cell that did not finish (later cells never ran)
    stop_reason: str | None = None  # one of STOP_REASONS
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def execution_from_json(data: Any) -> Execution:
    """An :class:`Execution` from untrusted JSON (written inside the sandbox); ValueError if it is not one.

    Texts are cut to a few hundred characters and lists to a few hundred entries: whatever is in
    the file can only change what the student's own report says about their notebook.
    """
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")

    def text(x: Any) -> str:
        if not isinstance(x, str):
            raise ValueError("a text field is not a string")
        return x[:_MAX_TEXT]

    def number(x: Any, kind: type) -> Any:
        if isinstance(x, bool) or not isinstance(x, int | float) or (kind is int and not isinstance(x, int)):
            raise ValueError("a number field is not a number")
        return kind(x)

    def short_list(x: Any) -> list:
        if not isinstance(x, list):
            raise ValueError("a list field is not a list")
        return x[:200]

    errors = []
    for e in short_list(data.get("errors", [])):
        if not isinstance(e, dict):
            raise ValueError("an error entry is not an object")
        errors.append(CellError(number(e.get("cell"), int), text(e.get("ename")), text(e.get("evalue")),
                                text(e.get("first_line"))))
    stop_reason = data.get("stop_reason")
    if stop_reason is not None and stop_reason not in STOP_REASONS:
        raise ValueError(f"unknown stop reason {str(stop_reason)[:40]!r}")
    stopped_at = data.get("stopped_at")
    return Execution(
        seconds=number(data.get("seconds", 0.0), float),
        errors=errors,
        timed_out_cells=[number(c, int) for c in short_list(data.get("timed_out_cells", []))],
        stopped_at=None if stopped_at is None else number(stopped_at, int),
        stop_reason=stop_reason,
        notes=[text(n) for n in short_list(data.get("notes", []))],
    )


def _current_env_kernel_manager(kernel_name: str | None):
    """An async kernel manager; with no name, a kernel running this very Python (like nbval's current env)."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    current = "toyattn-grade-current-env"

    class _Specs(KernelSpecManager):
        def get_kernel_spec(self, name):  # noqa: D401 - jupyter_client API
            if name == current:
                return self.kernel_spec_class(
                    resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict()
                )
            return super().get_kernel_spec(name)

    return AsyncKernelManager(kernel_name=kernel_name or current, kernel_spec_manager=_Specs())


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:48]
    return ""


def _timeout_output(seconds: float, reason: str) -> dict[str, Any]:
    import nbformat

    text = f"this cell ran longer than {seconds:.0f} s ({reason}) and was interrupted"
    return nbformat.v4.new_output("error", ename="TimeoutError", evalue=text, traceback=[f"TimeoutError: {text}"])


def _dead_kernel_output() -> dict[str, Any]:
    import nbformat

    return nbformat.v4.new_output(
        "error",
        ename="DeadKernelError",
        evalue="the kernel died while running this cell (a crash, os._exit, or out of memory)",
        traceback=["DeadKernelError: the kernel died while running this cell"],
    )


async def _wait_idle(kc, msg_id: str, timeout: float) -> bool:
    """Wait for the shell reply to ``msg_id``; False if the kernel does not answer in time."""
    from queue import Empty

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            msg = await kc.shell_channel.get_msg(timeout=left)
        except Empty:
            return False
        if msg["parent_header"].get("msg_id") == msg_id:
            return True


def clear_outputs(nb) -> None:
    """Drop saved outputs: they are the student's old run, never judged (or kept)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None


async def _run_cells(client, nb, result: Execution, *, timeout: float, cell_timeout: float) -> None:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    start = time.monotonic()
    deadline = start + timeout
    count = 0
    for index, cell in enumerate(list(nb.cells)):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        number = index + 1
        left = deadline - time.monotonic()
        if left <= 0:
            result.stopped_at, result.stop_reason = number, "time limit"
            break
        limit = max(1.0, min(cell_timeout, left))
        client.timeout = int(limit + 0.999)
        try:
            count += 1
            await client.async_execute_cell(cell, index, execution_count=count)
        except CellTimeoutError:
            over_total = time.monotonic() >= deadline - 0.5
            reason = f"the notebook's {timeout:.0f} s limit" if over_total else "the per-cell limit"
            cell.outputs.append(_timeout_output(limit, reason))
            result.timed_out_cells.append(number)
            await client.km.interrupt_kernel()
            # Interrupted like the stop button: go on if the kernel is responsive and time is left.
            probe = client.kc.execute("pass", store_history=False)
            if not await _wait_idle(client.kc, probe, timeout=10.0):
                result.stopped_at, result.stop_reason = number, "kernel unresponsive"
                break
            if over_total:
                result.stopped_at, result.stop_reason = number, "time limit"
                break
        except DeadKernelError:
            cell.outputs.append(_dead_kernel_output())
            result.stopped_at, result.stop_reason = number, "kernel died"
            break
    result.seconds = time.monotonic() - start


async def _execute(nb, *, cwd: Path, timeout: float, cell_timeout: float, kernel_name: str | None,
                   env: Mapping[str, str] | None, startup_timeout: float) -> Execution:
    from nbclient import NotebookClient

    result = Execution()
    clear_outputs(nb)
    client = NotebookClient(
        nb,
        km=_current_env_kernel_manager(kernel_name),
        allow_errors=True,
        timeout=int(cell_timeout),
        startup_timeout=int(startup_timeout),
        shutdown_kernel="immediate",
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    started = False
    try:
        # The kernel's own stderr (start-up warnings, C-level crash text) would interleave between
        # parallel kernels on the terminal; what a student's code prints reaches the notebook anyway.
        async with client.async_setup_kernel(
            cwd=str(cwd), env=dict(os.environ if env is None else env), cleanup_kc=True, stderr=subprocess.DEVNULL
        ):
            started = True
            await _run_cells(client, nb, result, timeout=timeout, cell_timeout=cell_timeout)
    except (RuntimeError, TimeoutError) as err:  # the kernel never started, or broke beyond a dead kernel
        result.stop_reason = "kernel error" if started else "kernel failed to start"
        result.notes.append(f"{result.stop_reason}: {type(err).__name__}: {str(err)[:_MAX_TEXT]}")
    for i, cell in enumerate(nb.cells, start=1):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                result.errors.append(CellError(i, out.get("ename", ""), out.get("evalue", ""), _first_line(cell.source)))
    return result


def execute_notebook(
    nb,
    *,
    cwd: Path,
    timeout: float = DEFAULT_TIMEOUT,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    kernel_name: str | None = None,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
) -> Execution:
    """Run every code cell of ``nb`` (an nbformat notebook, changed in place to hold the outputs).

    Errors in cells are recorded and do not stop the run; a cell over ``cell_timeout`` seconds is
    interrupted; the whole run stops after ``timeout`` seconds or when the kernel dies. ``kernel_name``
    None means a kernel in this very Python environment (what ``toyattn`` is installed in).
    """
    from jupyter_core.utils import run_sync

    if timeout <= 0 or cell_timeout <= 0:
        raise ValueError(f"timeouts must be positive seconds, got timeout={timeout}, cell_timeout={cell_timeout}.")
    return run_sync(_execute)(nb, cwd=Path(cwd), timeout=float(timeout), cell_timeout=float(cell_timeout),
                              kernel_name=kernel_name, env=env, startup_timeout=startup_timeout)
