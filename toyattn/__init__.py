"""toyattn: the companion package of a hands-on course on transformer attention.

Modules by concept, with the lesson that teaches each:

* :mod:`toyattn.device`        - choosing CPU/GPU, seeding, ``describe()`` (lesson 0)
* :mod:`toyattn.arrays`        - the one converter: tensors/arrays/lists in, checked arrays out, ``to_numpy`` (lesson 0)
* :mod:`toyattn.progress`      - progress bars that show in notebooks and stay quiet in tests
* :mod:`toyattn.hooks`         - named hook points, ``run_with_cache``, temporary hooks (lesson 1)
* :mod:`toyattn.corpus`        - the two-sentence toy corpus (lesson 1)
* :mod:`toyattn.models`        - ``OneHeadAttention`` (lesson 1), a small ``Transformer`` (lessons 2-4),
  a hooked ``Llama`` run from SmolLM2's GGUF file (lesson 5)
* :mod:`toyattn.training`      - seeded full-batch training with a loss history (lesson 1)
* :mod:`toyattn.interventions` - cutting an attention edge, patching activations (lesson 1)
* :mod:`toyattn.plotting`      - annotated heatmaps, matplotlib and plotly (all lessons)
* :mod:`toyattn.heads`         - heads in fused QKV weights: permute, match, recover (lesson 2)
* :mod:`toyattn.symmetry`      - symmetry and directionality scores of ``W_q W_k^T`` (lesson 3)
* :mod:`toyattn.checkpoints`   - Q/K weights out of real checkpoints, a layer at a time (lesson 3)
* :mod:`toyattn.symmetry_training` - tiny masked and causal models trained side by side, scores tracked (lesson 3)
* :mod:`toyattn.symmetry_experiments` - symmetric vs standard init, the gradient of ``W_q W_k^T`` (lesson 3)
* :mod:`toyattn.induction`     - the copying task that grows an induction head (lesson 4)
* :mod:`toyattn.circuits`      - QK/OV circuits and how their subspaces match (lesson 4)
* :mod:`toyattn.head_ablation` - ablating a head, removing a subspace from its output (lesson 5)
* :mod:`toyattn.composition`   - composition and copying scores, norm folding, positional QK (lesson 5)
* :mod:`toyattn.induction_heads` - previous-token / induction heads in any model, their QK-OV bridge (lesson 5)
* :mod:`toyattn.checks`        - exercise checks, one module per lesson
* :mod:`toyattn.course`        - paired notebooks and exercise generation (instructors)
* :mod:`toyattn.grading`       - ``toyattn grade`` / ``toyattn run`` for a class (instructors)
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
