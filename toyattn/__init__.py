"""toyattn: the companion package of a hands-on course on transformer attention.

The package is laid out like the course: shared tools at the root, one folder per topic.

Where is ...? (one file each)

==============================  ============================================================
the models                      ``toyattn/models/`` (lesson 1's one head: ``one_head.py``; lessons
                                2-4: ``transformer.py``; lesson 5's Llama: ``llama.py``; the attention
                                they share: ``attention.py``)
the hook mechanism              ``toyattn/hooks.py`` (``hook_q`` ... ``hook_pattern``, ``run_with_cache``)
the training loop               ``toyattn/training.py`` (``fit``: lessons 1, 3 and 4 all train on it)
a head's weights                ``toyattn/heads/weights.py`` (``HeadWeights``, every lesson that reads heads)
reading real weights            ``toyattn/weights/`` (GGUF and llama.cpp: ``gguf.py``; Q/K of any
                                checkpoint: ``checkpoints.py``; SmolLM2 into the Llama: ``llama.py``)
the symmetry score              ``toyattn/symmetry/scores.py`` (computed fast: ``symmetry/traces.py``)
the matching                    heads: ``toyattn/heads/matching.py`` (lesson 2); QK-OV subspaces:
                                ``toyattn/circuits/matching.py`` (lessons 4-5)
turning inputs into arrays      ``toyattn/arrays.py`` (``to_numpy``, ``as_matrix``)
checking arguments              ``toyattn/validate.py`` (``positive_int``)
the exercise checks             ``toyattn/checks/core.py`` (one module per lesson beside it)
the grader                      ``toyattn/grading/grade.py`` (its sandbox: ``grading/sandbox.py``)
==============================  ============================================================

Every module, by folder, with the lesson that teaches it:

* root (every lesson): :mod:`~toyattn.arrays` (the one converter), :mod:`~toyattn.validate` (argument
  checks), :mod:`~toyattn.hooks` (named hook points), :mod:`~toyattn.plotting` (annotated heatmaps,
  matplotlib and plotly), :mod:`~toyattn.progress` (progress bars), :mod:`~toyattn.training` (the one
  loop), :mod:`~toyattn.stacked` (many small runs trained as one batched model), :mod:`~toyattn.course`
  (paired notebooks, exercises from solutions), :mod:`~toyattn.cli` (the ``toyattn`` command)
* ``device/`` (every lesson; lesson 0): :mod:`~toyattn.device.choice` (CPU/GPU, dtype),
  :mod:`~toyattn.device.reproduce` (seeding, threads), :mod:`~toyattn.device.report` (``describe()``),
  :mod:`~toyattn.device.timing` (when a GPU helps)
* ``models/``: :mod:`~toyattn.models.attention` (scores, causal mask, softmax, values),
  :mod:`~toyattn.models.one_head` (lesson 1), :mod:`~toyattn.models.transformer` (lessons 2-5),
  :mod:`~toyattn.models.llama` (lessons 5-6)
* ``weights/``: :mod:`~toyattn.weights.gguf` (GGUF files, llama.cpp's conventions),
  :mod:`~toyattn.weights.checkpoints` (Q/K of real checkpoints, lesson 3), :mod:`~toyattn.weights.llama`
  (SmolLM2 into the Llama and into ``transformers``, lessons 5-6), :mod:`~toyattn.weights.bert` (a BERT layer, lesson 2),
  :mod:`~toyattn.weights.pretrained` (the packaged models), :mod:`~toyattn.weights.prefetch` (the next layer
  read while this one is used, lesson 3)
* ``sentences/`` (lesson 1): :mod:`~toyattn.sentences.corpus` (the two sentences),
  :mod:`~toyattn.sentences.training` (its task and recipes), :mod:`~toyattn.sentences.interventions`
  (cutting an edge, patching; reused in lesson 5)
* ``heads/`` (lesson 2): :mod:`~toyattn.heads.weights` (``HeadWeights``), :mod:`~toyattn.heads.permutations`
  (the one convention), :mod:`~toyattn.heads.fused_qkv` (layouts, split/merge/permute),
  :mod:`~toyattn.heads.matching` (features, costs, matching), :mod:`~toyattn.heads.figures` (its figures)
* ``symmetry/`` (lesson 3): :mod:`~toyattn.symmetry.scores` (the scores), :mod:`~toyattn.symmetry.traces`
  (computed fast), :mod:`~toyattn.symmetry.tuning` (how a GPU slices them), :mod:`~toyattn.symmetry.report` (a whole model), :mod:`~toyattn.symmetry.training`
  (masked vs causal training), :mod:`~toyattn.symmetry.experiments` (symmetric init, the gradient)
* ``circuits/`` (lessons 4-6): :mod:`~toyattn.circuits.copy_task` (the copying task),
  :mod:`~toyattn.circuits.sweeps` (its runs trained together), :mod:`~toyattn.circuits.copy_scoring`
  (accuracy and loss on the second copy), :mod:`~toyattn.circuits.matching` (QK/OV circuits and their matching),
  :mod:`~toyattn.circuits.factored` (a wide circuit kept as two thin factors),
  :mod:`~toyattn.circuits.head_circuits` (one head's circuits from a model),
  :mod:`~toyattn.circuits.composition` (composition and copying scores), :mod:`~toyattn.circuits.detection`
  (finding induction heads, copying scores), :mod:`~toyattn.circuits.ablation` (silencing a head),
  :mod:`~toyattn.circuits.attribution` (lesson 6: direct logit attribution, per-head patching, the
  in-context learning score), :mod:`~toyattn.circuits.real_text` (lesson 6's offline text)
* ``checks/`` (exercise checks, one module per lesson): :mod:`~toyattn.checks.core`,
  :mod:`~toyattn.checks.guards`, :mod:`~toyattn.checks.answers`, :mod:`~toyattn.checks.warmup`,
  :mod:`~toyattn.checks.attention`, :mod:`~toyattn.checks.heads`, :mod:`~toyattn.checks.head_cases`,
  :mod:`~toyattn.checks.symmetry`, :mod:`~toyattn.checks.circuits`, :mod:`~toyattn.checks.induction_circuits`,
  :mod:`~toyattn.checks.real_model`
* ``grading/`` (instructors: ``toyattn grade``, ``toyattn run``, ``toyattn collect``):
  :mod:`~toyattn.grading.cli`, :mod:`~toyattn.grading.collect`, :mod:`~toyattn.grading.discovery`,
  :mod:`~toyattn.grading.grade`, :mod:`~toyattn.grading.sandbox`, :mod:`~toyattn.grading.confine`,
  :mod:`~toyattn.grading.runner`, :mod:`~toyattn.grading.execute`, :mod:`~toyattn.grading.executed`,
  :mod:`~toyattn.grading.judging`, :mod:`~toyattn.grading.status`, :mod:`~toyattn.grading.reports`
"""

__version__ = "0.1.0"

#: Names ``from toyattn import ...`` gives, and the module each lives in.
_TOP_LEVEL = {
    "describe": "device",
    "get_device": "device",
    "seed_everything": "device",
    "to_numpy": "arrays",
}


def __getattr__(name: str):
    # Imported on first use (``from toyattn import seed_everything`` works as before), so tools that
    # need no torch, such as the runner inside each grading sandbox, start without importing it.
    if name in _TOP_LEVEL:
        import importlib

        return getattr(importlib.import_module(f".{_TOP_LEVEL[name]}", __name__), name)
    raise AttributeError(f"module 'toyattn' has no attribute {name!r}")


__all__ = ["__version__", "describe", "get_device", "seed_everything", "to_numpy"]
