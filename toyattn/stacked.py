"""Many small runs trained as one: models of one architecture with their weights stacked along a new first axis.

A sweep over seeds or settings trains many tiny models. One at a time, each training step is dozens of
small calls per model, and on a GPU each call costs more to launch than its arithmetic (lesson 0,
"When does a GPU help?"). Stacked, the ``n`` models' weights become one tensor per weight with a
leading axis of length ``n``, and ``torch.func.vmap`` runs the ``n`` forward passes as one batched
call per operation. The runs share no weight, so the gradient of the sum of their losses is each
run's own gradient, and Adam(W), which updates every number on its own, takes the same step on the
stacked tensor as it would on each run's tensors: each run takes the steps it would take alone, up
to floating-point rounding (a batched matrix product may add in another order). Where a run's training
amplifies rounding, it can end elsewhere, as it can on another machine or thread count. ``tests/test_stacked.py``
checks it in float64: one step to 1e-12; whole runs to 1e-8 where the training does not amplify
rounding, and elsewhere within 10 times how far the run alone moves when its initial weights are
scaled by 1 + 1e-15.

Lesson 1's seed sweep (:func:`toyattn.sentences.training.train_one_heads`), lesson 3's runs
(:func:`toyattn.symmetry.training.train_runs`) and the copy task's seeds and pool sizes of lessons 4-5
(:func:`toyattn.circuits.sweeps.train_copy_models`) train this way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class StackedModels:
    """``n`` models of one architecture as one batched model.

    Args:
        models: two or more (or one) modules of the same class and shapes, on one device.

    ``stacked.map(fn)`` runs ``fn(model)`` for every model at once and stacks the results along a
    new first axis; ``fn`` receives a callable that behaves like the model (``model(x)``), so a loss
    function written for one model works unchanged. Its input checks must not read tensor values
    that differ between the runs (the inputs themselves may be read: they are shared).
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        models = list(models)
        _check_same_architecture(models)
        self.n = len(models)
        self.params, self.buffers = stack_module_state(models)  # leaves with requires_grad, [n, ...] each
        self.template = copy.deepcopy(models[0]).to("meta")  # the structure, without storage

    def parameters(self) -> list[torch.Tensor]:
        """The stacked weights, one tensor per weight of the model: what the optimizer updates."""
        return list(self.params.values())

    def map(self, fn: Callable[..., torch.Tensor], *per_run: torch.Tensor) -> torch.Tensor:
        """``torch.stack([fn(model_i, *(x[i] for x in per_run)) for i, model_i in enumerate(models)])``, batched.

        ``per_run``: tensors with one slice per run along their first axis (each run's own batch, say);
        inputs shared by every run are better captured by ``fn`` itself. ``model_i`` is called as the
        model would be, keyword arguments included.
        """
        for x in per_run:
            if x.shape[0] != self.n:
                raise ValueError(f"a per-run input has {x.shape[0]} slices along its first axis, not one per run ({self.n}).")

        def one(params: dict, buffers: dict, *xs: torch.Tensor) -> torch.Tensor:
            return fn(lambda *args, **kwargs: functional_call(self.template, (params, buffers), args, kwargs), *xs)

        if self.n == 1:  # one run: vmap's bookkeeping would cost more than it saves
            first = {k: v[0] for k, v in self.params.items()}, {k: v[0] for k, v in self.buffers.items()}
            return one(*first, *(x[0] for x in per_run))[None]
        return vmap(one)(self.params, self.buffers, *per_run)

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Run ``i``'s weights and buffers, detached copies, as ``models[i].state_dict()`` names them."""
        if not 0 <= i < self.n:
            raise IndexError(f"run {i} out of range: there are {self.n} stacked runs (0..{self.n - 1}).")
        return {k: v[i].detach().clone() for k, v in {**self.params, **self.buffers}.items()}

    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy each run's current weights into its model (the ones passed in), in place."""
        for i, model in enumerate(models):
            model.load_state_dict(self.state_dict(i), strict=False)


def _check_same_architecture(models: list[nn.Module]) -> None:
    if not models:
        raise ValueError("StackedModels needs at least one model.")
    first = models[0]
    shapes = {k: (v.shape, v.dtype, v.device) for k, v in first.state_dict().items()}
    for i, model in enumerate(models[1:], start=1):
        if type(model) is not type(first):
            raise TypeError(f"model {i} is a {type(model).__name__}, model 0 a {type(first).__name__}: "
                            "only models of one class can be stacked.")
        other = {k: (v.shape, v.dtype, v.device) for k, v in model.state_dict().items()}
        if other != shapes:
            diff = sorted(k for k in shapes.keys() | other.keys() if shapes.get(k) != other.get(k))
            raise ValueError(f"model {i} differs from model 0 in {diff[:4]} (shape, dtype or device): "
                             "build every run with the same settings, on the same device.")
