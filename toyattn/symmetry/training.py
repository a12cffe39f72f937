"""Training lesson 3's tiny masked and causal transformers side by side, recording symmetry, directionality and loss.

Taught in lesson 3 (``notebooks/03_symmetry_scores``, sections 6-8). Tiny character-level transformers
(the course's :class:`~toyattn.models.transformer.Transformer`) learn the same text with one of two
objectives:

* ``"masked"``: bidirectional attention; a share of the characters is replaced by a ``[MASK]`` token and
  the model predicts the originals (BERT's objective);
* ``"causal"``: causal attention; every position predicts the next character (GPT's objective).

:func:`train_runs` trains several copies at once (one per seed and initialisation, stacked by
:class:`toyattn.stacked.StackedModels`: one batched step of the course's loop :func:`toyattn.training.fit`
instead of many tiny ones), recording symmetry and directionality scores and the loss, from the standard
initialisation, the symmetric one of Saponati et al. 2025 (:func:`symmetric_init_`: ``W_k = W_q``,
so every head starts at ``r = 1`` with a positive semi-definite ``M``) or its control
(:func:`indefinite_init_`: ``W_k = W_q D``, ``D`` a diagonal of signs, so ``M`` starts symmetric but
indefinite). The experiments on these runs (steps to a loss, gradients of
``W_q W_k^T``) are in :mod:`toyattn.symmetry.experiments`.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from toyattn.device import get_device, seed_everything
from toyattn.models.transformer import Transformer, TransformerConfig
from toyattn.stacked import StackedModels
from toyattn.symmetry.scores import (
    directionality_score,
    layer_bilinear,
    matrix_symmetry_score,
    symmetry_score,
)
from toyattn.training import fit
from toyattn.validate import positive_int

__all__ = [
    "INITS",
    "course_text",
    "indefinite_init_",
    "OBJECTIVES",
    "CharTask",
    "SymmetryRun",
    "char_batches",
    "smoothed_losses",
    "steps_to_loss",
    "symmetric_init_",
    "train_runs",
    "train_symmetry_experiment",
]

OBJECTIVES = ("masked", "causal")
INITS = ("standard", "symmetric", "indefinite")
SMOOTHING = 20  # steps in the moving average that decides when a run has reached a loss


# ---------------------------------------------------------------------------------------------
# The text
# ---------------------------------------------------------------------------------------------


def course_text() -> str:
    """The training text of lesson 3's experiment: *The Zen of Python*, which ships with every Python.

    Read from the standard library's ``this`` module (stored ROT13-encoded there), so nothing is
    downloaded and every student trains on the same 850 characters.
    """
    import contextlib
    import importlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the poem: keep it quiet
        this = importlib.import_module("this")
    return codecs.decode(this.s, "rot13")


# ---------------------------------------------------------------------------------------------
# Small helpers: argument checks, the character task, batches
# ---------------------------------------------------------------------------------------------


def _check_choice(values: Iterable[str], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    values = (values,) if isinstance(values, str) else tuple(values)
    unknown = sorted(set(values) - set(allowed))
    if unknown or not values:
        raise ValueError(f"{what} must be one or more of {allowed}, got {unknown or list(values)}.")
    return values


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        positive_int(value, name)


@dataclass(frozen=True)
class CharTask:
    """A text as character ids, plus one extra id for ``[MASK]`` (used by the masked objective only)."""

    data: torch.Tensor  # [n_chars] long
    vocab_size: int  # characters + 1 for [MASK]

    @property
    def mask_id(self) -> int:
        return self.vocab_size - 1

    @classmethod
    def from_text(cls, text: str | None, seq_len: int) -> CharTask:
        text = course_text() if text is None else text
        if not isinstance(text, str) or len(text) < seq_len + 2:
            raise ValueError(f"text needs more than seq_len + 1 = {seq_len + 1} characters, got {len(text or '')}.")
        chars = sorted(set(text))
        ids = {c: i for i, c in enumerate(chars)}
        return cls(torch.tensor([ids[c] for c in text], dtype=torch.long), len(chars) + 1)


def char_batches(
    task: CharTask, seed: int, steps: int, batch_size: int, seq_len: int, mask_prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batches of one seed: windows ``[steps, batch, seq_len + 1]`` of the text and which positions the
    masked objective hides, ``[steps, batch, seq_len]``.

    Both objectives and both initialisations of a seed see the same windows, so they differ only in
    what the comparison is about.
    """
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(task.data) - seq_len - 1, (steps, batch_size), generator=g)
    masked = torch.rand(steps, batch_size, seq_len, generator=g) < mask_prob
    masked[..., 0] |= ~masked.any(dim=-1)  # every window predicts at least one character
    return task.data[starts[..., None] + torch.arange(seq_len + 1)], masked


def _model_config(task: CharTask, objective: str, scale: int, seq_len: int, positions: str) -> TransformerConfig:
    return TransformerConfig(
        vocab_size=task.vocab_size,
        max_len=seq_len,
        d_model=32 * scale,
        n_layers=min(1 + scale, 6),
        n_heads=2 * scale,
        positions=positions,
        mlp=True,
        causal=(objective == "causal"),
    )


def _objective_loss(objective: str, model: Any, windows: torch.Tensor, masked: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Mean cross-entropy per model: ``windows [..., batch, seq_len + 1]`` -> ``[...]``.

    ``model`` maps ``tokens [..., batch, seq_len]`` to logits. The masked loss counts hidden positions only.
    """
    if objective == "causal":
        inputs, targets, weight = windows[..., :-1], windows[..., 1:], None
    else:
        targets = windows[..., :-1]
        inputs, weight = targets.masked_fill(masked, mask_id), masked.float()
    logits = model(inputs)
    ce = nn.functional.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none").view(targets.shape)
    if weight is None:
        return ce.mean(dim=(-2, -1))
    return (ce * weight).sum(dim=(-2, -1)) / weight.sum(dim=(-2, -1))


# ---------------------------------------------------------------------------------------------
# Initialisation and the thing each run records
# ---------------------------------------------------------------------------------------------


def symmetric_init_(model: Transformer) -> Transformer:
    """Saponati et al.'s symmetric initialisation, in place: every head's ``W_K`` (and ``b_K``) becomes a copy of
    its ``W_Q`` (``b_Q``), so ``M = W_Q W_Q^T`` is symmetric (score ``r = 1``) at step 0. Returns ``model``."""
    if not isinstance(model, Transformer):
        raise TypeError(f"symmetric_init_ expects a toyattn Transformer, got {type(model).__name__}.")
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_K.copy_(block.attn.W_Q)
            block.attn.b_K.copy_(block.attn.b_Q)
    return model


def indefinite_init_(model: Transformer, seed: int = 0) -> Transformer:
    """The control for :func:`symmetric_init_`, in place: every head's ``W_K`` becomes ``W_Q D`` (``b_K``: ``b_Q D``),
    ``D`` a diagonal of signs, half +1 and half -1, in an order drawn from ``seed`` per layer and head.

    ``M = W_Q D W_Q^T`` is symmetric (``r = 1``) but, unlike ``W_Q W_Q^T``, indefinite: no built-in
    preference for a token attending to itself. Needs ``d_head >= 2``. Returns ``model``.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"indefinite_init_ expects a toyattn Transformer, got {type(model).__name__}.")
    d_head = model.cfg.d_head
    if d_head < 2:
        raise ValueError("indefinite_init_ needs d_head >= 2: with one dimension a sign cannot be both + and -.")
    generator = torch.Generator().manual_seed(int(seed))
    half = torch.tensor([1.0] * (d_head - d_head // 2) + [-1.0] * (d_head // 2))
    with torch.no_grad():
        for block in model.blocks:
            W_Q, b_Q = block.attn.W_Q, block.attn.b_Q  # [heads, d_model, d_head], [heads, d_head]
            signs = torch.stack([half[torch.randperm(d_head, generator=generator)] for _ in range(W_Q.shape[0])])
            signs = signs.to(W_Q.device, W_Q.dtype)
            block.attn.W_K.copy_(W_Q * signs[:, None, :])
            block.attn.b_K.copy_(b_Q * signs)
    return model


def _initialise(model: Transformer, init: str, seed: int) -> Transformer:
    """Apply ``init`` (one of :data:`INITS`) to a freshly built model."""
    if init == "symmetric":
        return symmetric_init_(model)
    if init == "indefinite":
        return indefinite_init_(model, seed)
    return model


@dataclass
class SymmetryRun:
    """What one training run records (lesson 3); every score in the ``r`` convention.

    Attributes:
        objective: ``"masked"`` or ``"causal"``.
        steps: ``[n_records]`` the steps at which scores were taken (0 = initialisation).
        head_scores: ``[n_records, n_layers, n_heads]`` per-head ``r``.
        layer_scores: ``[n_records, n_layers]`` per-layer ``r`` of ``sum_h W_q[h] W_k[h]^T``.
        directionality: ``[n_records, n_layers]`` directionality of that per-layer form.
        losses: ``[n_steps]`` the training loss of every step taken.
        init: ``"standard"``, ``"symmetric"`` or ``"indefinite"``.
        seed: the seed of the initial weights and of the batches.
        states: with ``train_runs(keep_states=True)``, the weights at every step in ``steps``
            (:meth:`model_at` rebuilds them); otherwise ``None``.
    """

    objective: str
    steps: torch.Tensor
    head_scores: torch.Tensor
    layer_scores: torch.Tensor
    directionality: torch.Tensor
    losses: torch.Tensor
    init: str = "standard"
    seed: int = 0
    config: TransformerConfig | None = None
    final_state: dict[str, torch.Tensor] | None = None
    states: list[dict[str, torch.Tensor]] | None = None

    def model(self) -> Transformer:
        """The trained model, rebuilt from the weights at the last step."""
        if self.config is None or self.final_state is None:
            raise ValueError("This trace keeps no weights; train it with toyattn.symmetry.training.train_runs.")
        model = Transformer(self.config)
        model.load_state_dict(self.final_state)
        return model

    def model_at(self, index: int) -> Transformer:
        """The model as it was at step ``self.steps[index]`` (needs ``train_runs(keep_states=True)``)."""
        if self.config is None or self.states is None:
            raise ValueError("This trace keeps no weights along the way; train it with train_runs(keep_states=True).")
        model = Transformer(self.config)
        model.load_state_dict(self.states[index])
        return model

    def initial_model(self) -> Transformer:
        """The model as it was at step 0, rebuilt from the seed and the init."""
        if self.config is None:
            raise ValueError("This trace keeps no config; train it with toyattn.symmetry.training.train_runs.")
        seed_everything(self.seed)
        model = Transformer(self.config)
        return _initialise(model, self.init, self.seed)

    def steps_to_loss(self, threshold: float, window: int = SMOOTHING) -> int | None:
        """Steps taken until the moving average of the loss is at or below ``threshold`` (None: never)."""
        return steps_to_loss(self.losses, threshold, window)


def smoothed_losses(losses: Any, window: int = SMOOTHING) -> torch.Tensor:
    """Trailing moving average: entry ``t`` is the mean of steps ``t .. t + window - 1`` (``[n - window + 1]``)."""
    losses = torch.as_tensor(losses, dtype=torch.float64).flatten()
    _check_positive(window=window)
    if len(losses) < window:
        return losses.new_empty(0)
    return losses.unfold(0, window, 1).mean(dim=-1)


def steps_to_loss(losses: Any, threshold: float, window: int = SMOOTHING) -> int | None:
    """The number of steps taken when the mean loss of the last ``window`` steps first is ``<= threshold``.

    ``None`` when it never is. Averaging over a window keeps one lucky batch from counting as "reached".
    """
    below = (smoothed_losses(losses, window) <= threshold).nonzero()
    return None if len(below) == 0 else int(below[0]) + window


# ---------------------------------------------------------------------------------------------
# Training several runs at once
# ---------------------------------------------------------------------------------------------


def _scores(params: dict[str, torch.Tensor], n_layers: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-head r ``[n, L, H]``, per-layer r ``[n, L]`` and directionality ``[n, L]`` of ``n`` stacked models."""
    W_Q = torch.stack([params[f"blocks.{i}.attn.W_Q"].detach() for i in range(n_layers)], dim=1)
    W_K = torch.stack([params[f"blocks.{i}.attn.W_K"].detach() for i in range(n_layers)], dim=1)
    M = layer_bilinear(W_Q, W_K)
    return symmetry_score(W_Q, W_K).cpu(), matrix_symmetry_score(M).cpu(), directionality_score(M).cpu()


def train_runs(
    objective: str = "masked",
    *,
    seeds: Iterable[int] = (0,),
    inits: Iterable[str] = ("standard",),
    text: str | None = None,
    steps: int = 600,
    scale: int = 1,
    seq_len: int = 16,
    batch_size: int = 32,
    record_every: int = 20,
    mask_prob: float = 0.15,
    lr: float = 3e-3,
    positions: str = "learned",
    stop_below: float | None = None,
    keep_states: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> list[SymmetryRun]:
    """Train one model per (seed, init) with one objective, all in the same batched steps (lesson 3).

    Each seed fixes the initial weights (the same for both objectives and every init, except that the
    symmetric and indefinite inits overwrite ``W_K``) and the batches. AdamW, as in BERT and GPT-2 training.

    Args:
        objective: ``"masked"`` or ``"causal"`` (see the module docstring).
        inits: ``"standard"`` (uniform, as ``nn.Linear``), ``"symmetric"`` (:func:`symmetric_init_`) and/or
            ``"indefinite"`` (:func:`indefinite_init_`, its control).
        steps: the most optimiser steps per run.
        scale: ``d_model = 32 * scale``, ``n_heads = 2 * scale``, ``n_layers = min(1 + scale, 6)``.
        record_every: take the scores every this many steps (and at step 0 and the last step).
        stop_below: stop once every run's moving-average loss (:func:`steps_to_loss`) is at or below this.
        keep_states: also keep every run's weights at each recorded step (``SymmetryRun.states``); off by
            default because a large run would keep many copies.

    Returns one :class:`SymmetryRun` per (seed, init), seeds outermost.
    """
    (objective,) = _check_choice(objective, OBJECTIVES, "objective")
    inits = _check_choice(inits, INITS, "inits")
    seeds = [int(s) for s in seeds]
    _check_positive(steps=steps, scale=scale, seq_len=seq_len, batch_size=batch_size, record_every=record_every)
    if not seeds:
        raise ValueError("seeds must name at least one seed.")
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}.")
    dev = get_device(device)
    task = CharTask.from_text(text, seq_len)
    cfg = _model_config(task, objective, scale, seq_len, positions)
    runs = [(seed, init) for seed in seeds for init in inits]

    models = []
    for seed, init in runs:
        seed_everything(seed)
        model = Transformer(cfg)
        models.append(_initialise(model, init, seed).to(dev))
    stacked = StackedModels(models)  # every weight gains a leading axis of len(runs)
    params, buffers = stacked.params, stacked.buffers

    def batched(x: torch.Tensor) -> torch.Tensor:  # x [n, ...]: run i reads x[i]
        # check=False: the windows are built here, valid by construction, and vmap cannot read them.
        return stacked.map(lambda model, xi: model(xi, check=False), x)

    data = {seed: char_batches(task, seed, steps, batch_size, seq_len, mask_prob) for seed in seeds}
    windows = torch.stack([data[seed][0] for seed, _ in runs], dim=1).to(dev)  # [steps, n, batch, seq + 1]
    masked = torch.stack([data[seed][1] for seed, _ in runs], dim=1).to(dev)

    opt = torch.optim.AdamW(stacked.parameters(), lr=lr, weight_decay=0.01, foreach=True)
    records: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    states: list[dict[str, torch.Tensor]] = []  # stacked weights at each record, when keep_states

    def loss_at(step: int) -> torch.Tensor:  # [n]: one loss per run
        return _objective_loss(objective, batched, windows[step], masked[step], task.mask_id)

    def record(step: int, losses: Sequence[torch.Tensor]) -> None:
        records.append((step, *_scores(params, cfg.n_layers)))
        if keep_states:
            states.append({k: v.detach().cpu().clone() for k, v in {**params, **buffers}.items()})

    def every_run_reached(losses: Sequence[torch.Tensor]) -> bool:
        return _all_reached(losses, stop_below)

    # Tiny models train faster on one CPU thread (synchronising threads costs more than a 32-wide matmul).
    threads = 1 if scale == 1 else None
    history = fit(
        loss_at, opt, steps, device=dev, threads=threads, progress=progress, desc=f"{objective} training",
        record=record, record_every=record_every, stop=None if stop_below is None else every_run_reached,
    )
    loss_table = history.losses.T  # [n, steps taken]
    return [
        SymmetryRun(
            objective=objective,
            steps=torch.tensor([r[0] for r in records]),
            head_scores=torch.stack([r[1][i] for r in records]),
            layer_scores=torch.stack([r[2][i] for r in records]),
            directionality=torch.stack([r[3][i] for r in records]),
            losses=loss_table[i],
            init=init,
            seed=seed,
            config=cfg,
            final_state=stacked.state_dict(i),
            states=[{k: v[i].clone() for k, v in state.items()} for state in states] if keep_states else None,
        )
        for i, (seed, init) in enumerate(runs)
    ]


def _all_reached(losses: Sequence[torch.Tensor], threshold: float) -> bool:
    if len(losses) < SMOOTHING:
        return False
    return bool((torch.stack(losses[-SMOOTHING:]).mean(dim=0) <= threshold).all())


def train_symmetry_experiment(
    *,
    objectives: Iterable[str] = OBJECTIVES,
    seed: int = 0,
    init: str = "standard",
    **kwargs: Any,
) -> dict[str, SymmetryRun]:
    """Lesson 3, section 6: one masked and one causal model from the same weights on the same batches.

    Returns ``{objective: SymmetryRun}``; ``kwargs`` go to :func:`train_runs`.
    """
    objectives = _check_choice(objectives, OBJECTIVES, "objectives")
    return {obj: train_runs(obj, seeds=(seed,), inits=(init,), **kwargs)[0] for obj in objectives}
