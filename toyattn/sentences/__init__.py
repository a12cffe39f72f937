"""Lesson 1: "the man ordered the chicken": the two sentences, training one head on them, and cutting its edges.

:mod:`~toyattn.sentences.corpus`, :mod:`~toyattn.sentences.training`, :mod:`~toyattn.sentences.interventions`
(the interventions are reused by lesson 5). The model itself is :mod:`toyattn.models.one_head`.
"""
