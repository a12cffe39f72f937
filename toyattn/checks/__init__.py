"""Exercise checks, one module per lesson; every check is also importable from here.

Use in a notebook, right below the exercise cell::

    from toyattn import checks
    checks.check_softmax(softmax)

See :mod:`toyattn.checks.core` for how checks behave and how to write one. Each lesson's checks
live in their own module (star-imported below, so notebooks can write ``checks.check_...``):
``warmup`` (lesson 0), ``attention`` (1), ``heads`` (2), ``symmetry`` (3), ``circuits`` (4),
``induction_circuits`` (5), ``real_model`` (6).
"""

from .attention import *  # noqa: F403
from .circuits import *  # noqa: F403
from .core import (
    REGISTRY,
    Case,
    Check,
    CheckFailed,
    NotImplementedYet,
    assert_close,
    call_student,
    exercise_check,
)
from .heads import *  # noqa: F403
from .induction_circuits import *  # noqa: F403
from .real_model import *  # noqa: F403
from .symmetry import *  # noqa: F403
from .warmup import check_one_hot, check_softmax

__all__ = [
    "REGISTRY",
    "Case",
    "Check",
    "CheckFailed",
    "NotImplementedYet",
    "assert_close",
    "call_student",
    "exercise_check",
    "check_one_hot",
    "check_softmax",
] + [name for name in REGISTRY if name not in ("check_one_hot", "check_softmax")]
