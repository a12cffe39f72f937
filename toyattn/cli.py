"""The ``toyattn`` command.

* ``toyattn doctor [--device D] [--json]``: print :func:`toyattn.device.describe`; exit 1 when the
  requested device (argument or ``TOYATTN_DEVICE``) is not available or not a device.
* ``toyattn build [--check] [--root DIR]``: regenerate exercises from solutions and every ``.ipynb``
  from its ``.py``; with ``--check``, write nothing and exit 1 if anything is stale.
* ``toyattn grade SUBMISSIONS/ [--out DIR] [--timeout S] [--jobs N]``: run every student's exercise
  notebook in its own sandbox and report which checks pass, judged outside it (:mod:`toyattn.grading`).
* ``toyattn collect HOMES/ [--out DIR]``: copy each student's problem sets from their hub home folder
  into one folder per student, for ``toyattn grade`` (:mod:`toyattn.grading.collect`).
* ``toyattn run NOTEBOOK [--out COPY]``: execute a notebook headless (a batch job on a GPU node) to an
  executed copy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toyattn import grading
from toyattn.grading import collect


def _doctor(args: argparse.Namespace) -> int:
    from toyattn.device import describe, format_description  # torch loads only for the commands that need it

    info = describe(args.device)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_description(info))
    if info.get("device") is None:
        print(f"\nerror: {info['device_error']}", file=sys.stderr)
        return 1
    return 0


def _build(args: argparse.Namespace) -> int:
    from toyattn import course  # jupytext loads only for `toyattn build`

    root = Path(args.root).resolve() if args.root else course.find_root()
    if args.check:
        problems = course.check_exercises(root) + course.check_pairs(root)
        for p in problems:
            print(p)
        if problems:
            print(f"\n{len(problems)} problem(s); `toyattn build` fixes stale files.", file=sys.stderr)
            return 1
        print("exercises and notebook pairs are up to date")
        return 0
    try:
        written = course.build(root)
    except course.CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("everything was already up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toyattn", description="Companion tool of the toyattn attention course.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="describe the Python/torch/GPU environment; fail if the asked device is missing")
    p.add_argument("--device", default=None, help="device to check (default: TOYATTN_DEVICE, else automatic)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("build", help="regenerate exercises/ from solutions/ and .ipynb twins from .py files")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is stale")
    p.add_argument("--root", default=None, help="course root (default: found from the current folder)")
    p.set_defaults(func=_build)

    grading.register_commands(sub)  # grade, run
    collect.register_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
