"""toyattn: the companion package of a hands-on course on transformer attention.

Where is ...? (one file each)

==============================  ============================================================
the model                       ``toyattn/models/transformer.py`` (lessons 2-4; lesson 1's one
                                head: ``models/one_head.py``, lesson 5's Llama: ``models/llama.py``)
the hook mechanism              ``toyattn/hooks.py`` (``hook_q`` ... ``hook_pattern``, ``run_with_cache``)
the training loop               ``toyattn/training.py`` (``fit``: lessons 1, 3 and 4 all train on it)
the symmetry score              ``toyattn/symmetry.py`` (its fast traces: ``symmetry_traces.py``)
the matching                    ``toyattn/head_matching.py`` (heads, lesson 2); QK-OV subspace
                                matching: ``toyattn/circuits.py`` (lesson 4)
a head's weights                ``toyattn/head_weights.py`` (``HeadWeights``, used by every lesson)
turning inputs into arrays      ``toyattn/arrays.py`` (``to_numpy``, ``as_matrix``)
the exercise checks             ``toyattn/checks/core.py`` (one module per lesson beside it)
the grader                      ``toyattn/grading/grade.py`` (its sandbox: ``grading/sandbox.py``)
==============================  ============================================================

Modules by concept, with the lesson that teaches each:

* every lesson: :mod:`~toyattn.device` (CPU/GPU, seeding, ``describe()``), :mod:`~toyattn.arrays`
  (the one converter), :mod:`~toyattn.plotting` (annotated heatmaps, matplotlib and plotly),
  :mod:`~toyattn.progress` (progress bars), :mod:`~toyattn.hooks` (named hook points),
  :mod:`~toyattn.models` (one file per model), :mod:`~toyattn.training` (the one loop),
  :mod:`~toyattn.stacked` (many small runs trained as one batched model)
* lesson 0: :mod:`~toyattn.timing` (timing a CPU against a GPU fairly: when a GPU helps)
* lesson 1: :mod:`~toyattn.corpus` (the two sentences), :mod:`~toyattn.one_head_training` (its task
  and recipes), :mod:`~toyattn.interventions` (cutting an edge, patching)
* lesson 2: :mod:`~toyattn.permutations` (the one convention), :mod:`~toyattn.fused_qkv` (layouts,
  split/merge/permute), :mod:`~toyattn.head_weights` (``HeadWeights``), :mod:`~toyattn.head_matching`
  (features, costs, matching), :mod:`~toyattn.pretrained` (the packaged models)
* lesson 3: :mod:`~toyattn.symmetry` (the scores), :mod:`~toyattn.symmetry_traces` (computed fast),
  :mod:`~toyattn.checkpoints` (Q/K out of real checkpoints), :mod:`~toyattn.gguf_file` (a GGUF's
  header), :mod:`~toyattn.symmetry_report` (a whole model), :mod:`~toyattn.symmetry_training` (masked
  vs causal training), :mod:`~toyattn.symmetry_experiments` (symmetric init, the gradient)
* lesson 4: :mod:`~toyattn.induction` (the copying task), :mod:`~toyattn.copy_task_sweeps` (its runs trained together),
  :mod:`~toyattn.circuits` (QK/OV circuits
  and their matching)
* lesson 5: :mod:`~toyattn.head_ablation`, :mod:`~toyattn.composition`, :mod:`~toyattn.induction_heads`
* lesson 6: :mod:`~toyattn.text` (offline text, the GGUF's tokenizer, ``transformers``' reference model),
  :mod:`~toyattn.attribution` (direct logit attribution, per-head patching, the in-context learning score)
* instructors: :mod:`~toyattn.checks` (exercise checks), :mod:`~toyattn.course` (paired notebooks,
  exercises from solutions), :mod:`~toyattn.grading` (``toyattn grade``, ``toyattn run``),
  :mod:`~toyattn.collect` (``toyattn collect``: problem sets out of hub home folders),
  :mod:`~toyattn.cli` (the ``toyattn`` command)
"""

__version__ = "0.1.0"

#: Names ``from toyattn import ...`` gives, and the module each lives in.
_TOP_LEVEL = {
    "describe": "device",
    "get_device": "device",
    "seed_everything": "device",
    "try_gpu": "device",
    "to_numpy": "arrays",
}


def __getattr__(name: str):
    # Imported on first use (``from toyattn import seed_everything`` works as before), so tools that
    # need no torch, such as the runner inside each grading sandbox, start without importing it.
    if name in _TOP_LEVEL:
        import importlib

        return getattr(importlib.import_module(f".{_TOP_LEVEL[name]}", __name__), name)
    raise AttributeError(f"module 'toyattn' has no attribute {name!r}")


__all__ = ["__version__", "describe", "get_device", "seed_everything", "to_numpy", "try_gpu"]
