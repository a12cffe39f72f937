"""Lesson 3: how symmetric a head's bilinear form ``W_Q W_K^T`` is, in toys and real checkpoints.

``from toyattn.symmetry import symmetry_score`` gives the scores (:mod:`~toyattn.symmetry.scores`);
beside them: :mod:`~toyattn.symmetry.traces` (the same scores computed fast),
:mod:`~toyattn.symmetry.report` (a whole checkpoint), :mod:`~toyattn.symmetry.training` (masked vs
causal training) and :mod:`~toyattn.symmetry.experiments` (symmetric starts, the gradient).
"""

from toyattn.symmetry.scores import (
    directionality_score,
    from_signed,
    kv_head_for_query,
    layer_bilinear,
    layer_symmetry_score,
    matrix_symmetry_score,
    median,
    random_head,
    repeat_kv_heads,
    skew_symmetric_key,
    skew_symmetric_matrix,
    symmetric_key,
    symmetry_score,
    symmetry_score_definition,
    to_signed,
)

__all__ = [
    "directionality_score",
    "from_signed",
    "kv_head_for_query",
    "layer_bilinear",
    "layer_symmetry_score",
    "matrix_symmetry_score",
    "median",
    "random_head",
    "repeat_kv_heads",
    "skew_symmetric_key",
    "skew_symmetric_matrix",
    "symmetric_key",
    "symmetry_score",
    "symmetry_score_definition",
    "to_signed",
]
