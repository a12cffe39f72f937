"""Lessons 4-6: the induction circuit, from the copy task that grows it to the causal tests that prove it, in a toy and a real model.

* :mod:`~toyattn.circuits.copy_task` (the task, its error and one training run), :mod:`~toyattn.circuits.sweeps`
  (many runs trained together), :mod:`~toyattn.circuits.copy_scoring` (accuracy and loss on the second copy);
* :mod:`~toyattn.circuits.matching` (QK/OV circuits and their subspace matching),
  :mod:`~toyattn.circuits.factored` (a circuit kept as two thin factors),
  :mod:`~toyattn.circuits.head_circuits` (one head's circuits read out of a model),
  :mod:`~toyattn.circuits.composition` (composition and copying scores);
* :mod:`~toyattn.circuits.detection` (finding the heads by attention), :mod:`~toyattn.circuits.ablation`
  (silencing them);
* lesson 6: :mod:`~toyattn.circuits.attribution` (direct logit attribution, per-head patching, the
  in-context learning score) on :mod:`~toyattn.circuits.real_text` (offline English text).
"""
