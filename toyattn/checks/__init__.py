"""Exercise checks, one module per lesson; every check is also importable from here.

Use in a notebook, right below the exercise cell::

    from toyattn import checks
    checks.check_softmax(softmax)

See :mod:`toyattn.checks.core` for how checks behave and how to write one. Each lesson's checks
live in their own module (star-imported below, so notebooks can write ``checks.check_...``):
``warmup`` (lesson 0), ``attention`` (1), ``heads`` (2), ``symmetry`` (3), ``circuits`` (4),
``induction_circuits`` (5), ``real_model`` (6).
"""

from toyattn.checks.attention import *  # noqa: F403
from toyattn.checks.circuits import *  # noqa: F403
from toyattn.checks.core import (
    REGISTRY,
    Case,
    Check,
    CheckFailed,
    NotImplementedYet,
    assert_close,
    call_student,
    exercise_check,
)
from toyattn.checks.heads import *  # noqa: F403
from toyattn.checks.induction_circuits import *  # noqa: F403
from toyattn.checks.real_model import *  # noqa: F403
from toyattn.checks.symmetry import *  # noqa: F403
from toyattn.checks.warmup import check_one_hot, check_softmax

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
