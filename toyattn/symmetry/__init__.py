"""Lesson 3: how symmetric a head's bilinear form ``W_Q W_K^T`` is, in toys and real checkpoints.

``from toyattn.symmetry import symmetry_score`` gives the scores (:mod:`~toyattn.symmetry.scores`,
whose every public name is re-exported here); beside them: :mod:`~toyattn.symmetry.traces` (the same
scores computed fast), :mod:`~toyattn.symmetry.report` (a whole checkpoint),
:mod:`~toyattn.symmetry.training` (masked vs causal training) and :mod:`~toyattn.symmetry.experiments`
(symmetric starts, the gradient).
"""

from toyattn.symmetry import scores as _scores
from toyattn.symmetry.scores import *  # noqa: F403

__all__ = list(_scores.__all__)
