"""Run one student's notebook: the first process inside the sandbox (``python -m toyattn.grading.runner``).

It lowers the resource limits, executes the copy in a fresh kernel (:mod:`toyattn.grading.execute`)
and writes the executed notebook and a small JSON record of the run into the scratch folder. The
kernel inherits ``TOYATTN_ANSWERS_DIR`` and ``TOYATTN_GRADING_SEED``, so each check only writes its
answers there. Everything this process writes is read back by the grader as untrusted: the
student's code runs beside it, and no verdict is made here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from toyattn.grading.execute import Execution, execute_notebook
from toyattn.grading.sandbox import Limits, apply_limits

# nbformat imports jsonschema, which builds an IRI grammar when rfc3987_syntax is installed (JupyterLab
# brings it): seconds of CPU in every sandbox for a format check notebooks never use. Left out here only.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def _limits(args: argparse.Namespace) -> Limits:
    def value(x: str) -> int | None:
        return int(x) if x else None

    return Limits(value(args.memory_bytes), value(args.processes), value(args.file_bytes), value(args.cpu_seconds),
                  value(args.scratch_bytes))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m toyattn.grading.runner", description=__doc__.splitlines()[0])
    p.add_argument("notebook", help="the student's copy (.ipynb), in the kernel's working folder")
    p.add_argument("--executed", required=True, help="where to write the executed notebook")
    p.add_argument("--record", required=True, help="where to write the run's JSON record")
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--cell-timeout", type=float, required=True)
    p.add_argument("--kernel", default=None, help="a named Jupyter kernel (unsandboxed grading only)")
    p.add_argument("--no-process-limit", action="store_true", help="unsandboxed: the limit would count the grader's user")
    p.add_argument("--drop-to", type=int, default=None, help="a root grader's sandbox: leave root for this uid first")
    for name in ("memory-bytes", "processes", "file-bytes", "cpu-seconds", "scratch-bytes"):
        p.add_argument(f"--{name}", default="")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import nbformat

    args = parse_args(argv)
    if args.drop_to is not None:
        from toyattn.grading.confine import drop_to

        drop_to(args.drop_to)  # raises (no record: "kernel error") if any capability were left
    apply_limits(_limits(args), processes=not args.no_process_limit)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with an error instead of killing us
    notebook = Path(args.notebook)
    nb = nbformat.read(notebook, as_version=4)
    try:
        run = execute_notebook(nb, cwd=notebook.parent, timeout=args.timeout, cell_timeout=args.cell_timeout,
                               kernel_name=args.kernel, env=dict(os.environ))
    except Exception as err:  # noqa: BLE001 - say what broke; the grader reports it for this notebook only
        run = Execution(stop_reason="kernel error", notes=[f"kernel error: {type(err).__name__}: {str(err)[:300]}"])
    try:
        nbformat.write(nb, args.executed)
    except (OSError, ValueError) as err:
        run.notes.append(f"the executed notebook could not be saved ({type(err).__name__})")
    Path(args.record).write_text(json.dumps(run.to_json()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
