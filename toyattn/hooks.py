"""Named hook points, caching and temporary hooks, in the style of TransformerLens.

Taught in lesson 1 (``notebooks/01_attention_toy``), used by every model in the course.

A model marks each activation worth reading with a :class:`HookPoint`, an identity module::

    self.hook_q = HookPoint()          # in __init__
    q = self.hook_q(self.W_Q(x))       # in forward: q passes through unchanged unless a hook edits it

A hook is a function ``fn(tensor, *, hook)`` that returns ``None`` (just look) or a tensor of the
same shape (replace the activation); ``hook.name`` is the hook point's dotted name. Models derive
from :class:`HookedModule`, which names its hook points and offers:

* ``model.run_with_cache(x)`` -> ``(output, cache)``: ``cache["hook_pattern"]`` etc., detached;
* ``with model.hooks([("hook_pattern", fn)]): ...``: hooks that are removed when the block ends,
  even if a hook (or anything else) raises;
* ``model.run_with_hooks(x, fwd_hooks=[...])``: one forward pass with temporary hooks.

Hook names may be given exactly, or as a predicate ``name -> bool`` to select several.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

HookFn = Callable[..., torch.Tensor | None]
NameOrFilter = str | Callable[[str], bool]


class HookPoint(nn.Module):
    """An identity layer that gives an activation a name hooks can attach to.

    ``name`` is filled in by :class:`HookedModule` with the module's dotted path (e.g. ``hook_q``,
    ``blocks.1.attn.hook_pattern``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None

    def add_hook(self, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
        """Attach ``fn(tensor, *, hook)``; returns a handle whose ``remove()`` detaches it."""

        def forward_hook(module: HookPoint, inputs: tuple[Any, ...], output: torch.Tensor):
            result = fn(output, hook=module)
            if result is None:
                return None
            _check_hook_result(result, output, fn, module.name)
            return result

        return self.register_forward_hook(forward_hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _check_hook_result(result: Any, output: torch.Tensor, fn: Any, where: str | None) -> None:
    """A hook may only hand back a tensor that could stand where the activation stood."""
    hook = f"Hook {getattr(fn, '__name__', fn)!r} on {where!r}"
    if not isinstance(result, torch.Tensor) or result.shape != output.shape:
        got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
        raise ValueError(f"{hook} must return None or a tensor of shape {tuple(output.shape)}, got {got}.")
    if result.dtype != output.dtype:
        raise TypeError(
            f"{hook} returned a {result.dtype} tensor where the activation is {output.dtype}; "
            f"convert it with `.to(activation.dtype)` (e.g. torch.zeros_like(activation), not torch.zeros(..., dtype=int))."
        )
    if result.device != output.device:
        raise ValueError(f"{hook} returned a tensor on {result.device}; the activation is on {output.device}.")


class HookedModule(nn.Module):
    """Base class for the course's models: finds and names hook points, runs with caches and hooks.

    Subclasses call ``self.setup_hooks()`` at the end of ``__init__``.
    """

    def setup_hooks(self) -> None:
        self._hook_points: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self._hook_points[name] = module

    @property
    def hook_points(self) -> dict[str, HookPoint]:
        """Every hook point by name, in the order the model defines them."""
        if not hasattr(self, "_hook_points"):
            self.setup_hooks()
        return dict(self._hook_points)

    def _select(self, name: NameOrFilter) -> list[HookPoint]:
        points = self.hook_points
        if callable(name):
            chosen = [hp for n, hp in points.items() if name(n)]
            if not chosen:
                raise KeyError(f"The hook filter {name!r} matches no hook point. Hook points: {', '.join(points)}.")
            return chosen
        if name not in points:
            raise KeyError(f"No hook point named {name!r}. Hook points: {', '.join(points)}.")
        return [points[name]]

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[NameOrFilter, HookFn]]) -> Iterator[HookedModule]:
        """Attach ``(name_or_filter, fn)`` hooks for the duration of a ``with`` block.

        The hooks are removed when the block ends, also when a hook raises or the block is left by
        an exception, so a failed experiment never leaves a model silently edited.
        """
        handles: list[torch.utils.hooks.RemovableHandle] = []
        try:
            for name, fn in fwd_hooks:
                for hp in self._select(name):
                    handles.append(hp.add_hook(fn))
            yield self
        finally:
            for h in handles:
                h.remove()

    def run_with_hooks(self, *args: Any, fwd_hooks: Iterable[tuple[NameOrFilter, HookFn]] = (), **kwargs: Any):
        """One forward pass with temporary hooks (removed afterwards, whatever happens)."""
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(
        self,
        *args: Any,
        names_filter: NameOrFilter | Iterable[str] | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """Run the model and return ``(output, cache)``, ``cache`` mapping hook names to activations.

        Args:
            names_filter: which hook points to cache: ``None`` (all), a name, a list of names, or a
                predicate ``name -> bool``.
            device: move cached tensors there (e.g. ``"cpu"`` to keep GPU memory free).

        The forward pass runs under ``torch.no_grad()`` (a cache is for reading, not for
        training), so ``output`` carries no gradient either. The cached tensors are detached
        copies that do not change if the model runs again. An empty list of names caches nothing
        and returns ``{}``.
        """
        # One (name_or_filter, save) pair per selection; a list of names becomes one pair per name,
        # so `hooks` checks each name and an empty list simply attaches nothing.
        if names_filter is None:
            selections: list[NameOrFilter] = [lambda n: True]
        elif isinstance(names_filter, str) or callable(names_filter):
            selections = [names_filter]
        else:
            selections = list(dict.fromkeys(names_filter))
        cache: dict[str, torch.Tensor] = {}

        def save(t: torch.Tensor, *, hook: HookPoint) -> None:
            t = t.detach().clone()
            cache[hook.name] = t.to(device) if device is not None else t

        with torch.no_grad(), self.hooks([(sel, save) for sel in selections]):
            out = self(*args, **kwargs)
        return out, cache
