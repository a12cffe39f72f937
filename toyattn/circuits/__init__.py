"""Lessons 4-5: the induction circuit, from the copy task that grows it to the causal tests that prove it.

* :mod:`~toyattn.circuits.copy_task` (the task, its error and one training run), :mod:`~toyattn.circuits.sweeps`
  (many runs trained together), :mod:`~toyattn.circuits.copy_scoring` (accuracy and loss on the second copy);
* :mod:`~toyattn.circuits.matching` (QK/OV circuits and their subspace matching),
  :mod:`~toyattn.circuits.head_circuits` (one head's circuits read out of a model),
  :mod:`~toyattn.circuits.composition` (composition and copying scores);
* :mod:`~toyattn.circuits.detection` (finding the heads by attention), :mod:`~toyattn.circuits.ablation`
  (silencing them).
"""
