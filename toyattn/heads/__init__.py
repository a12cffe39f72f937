"""Lesson 2, and the head weights every later lesson reads: heads in fused weights, permuted, matched, drawn.

:mod:`~toyattn.heads.weights` holds :class:`~toyattn.heads.weights.HeadWeights` (the one container of
a layer's heads); beside it :mod:`~toyattn.heads.permutations`, :mod:`~toyattn.heads.fused_qkv`,
:mod:`~toyattn.heads.matching` and :mod:`~toyattn.heads.figures`.
"""
