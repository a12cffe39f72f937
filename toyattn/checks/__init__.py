"""Exercise checks, one module per lesson; every check is also importable from here.

Use in a notebook, right below the exercise cell::

    from toyattn import checks
    checks.check_softmax(softmax)

See :mod:`toyattn.checks.core` for how checks behave and how to write one.
"""

from .core import REGISTRY, CheckFailed, NotImplementedYet, assert_close, call_student, exercise_check
from .warmup import check_one_hot, check_softmax

# Lessons add their checks below (one module each, star-imported so notebooks can use `checks.check_...`).
from .attention import *  # noqa: E402,F403  lesson 1
from .heads import *  # noqa: E402,F403  lesson 2
from .symmetry import *  # noqa: E402,F403  lesson 3
from .circuits import *  # noqa: E402,F403  lesson 4

__all__ = [
    "REGISTRY",
    "CheckFailed",
    "NotImplementedYet",
    "assert_close",
    "call_student",
    "exercise_check",
    "check_one_hot",
    "check_softmax",
] + [name for name in REGISTRY if name not in ("check_one_hot", "check_softmax")]
