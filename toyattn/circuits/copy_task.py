"""The copying task that makes a two-layer transformer grow an induction head, and a run of training on it.

Taught in lesson 4 (``notebooks/04_qk_ov_matching``). The task follows the setting of Song, Xu &
Zhong, "Out-of-distribution generalization via composition: a lens through induction heads in
Transformers" (arXiv 2408.09503), scaled down so it trains on a laptop CPU in seconds.

A sequence is background noise with one *pattern* written into it twice::

    background ... [p1 p2 p3 ... pL] ... background ... [p1 p2 p3 ... pL] ... background
                    first copy                           second copy

* Background tokens are i.i.d. from a Zipf-like law, ``P(token i) proportional to 1 / (i + 2.7)``:
  a few tokens are common, most are rare, as in text.
* The pattern is ``L`` distinct tokens (``L`` drawn from ``pattern_len``). With ``pool_size=None``
  every training sequence gets a fresh pattern; with ``pool_size=N`` patterns are drawn from a fixed
  pool of ``N`` patterns made once, so a model can pass by memorising the pool.
* The **error** is counted on the second copy only (from its ``skip``-th token on): there the next
  token is predictable *only* by looking back at the first copy. Anywhere else the next token is
  random noise.
* **In-distribution (ID)** test sequences come from the training distribution (same pool, if any).
  **Out-of-distribution (OOD)** test sequences have uniform background tokens, longer patterns
  (``ood_pattern_len``) and fresh patterns never seen in training: only a model that learned the
  *rule* "find the earlier occurrence of the current token and copy what followed it" (an induction
  head) gets them right, a model that memorised patterns does not.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from toyattn.device import get_device, seed_everything
from toyattn.models.transformer import Transformer, TransformerConfig
from toyattn.training import fit
from toyattn.validate import positive_int

__all__ = [
    "copy_error",
    "count_right",
    "CopyTaskConfig",
    "CopyBatch",
    "PatternPool",
    "zipf_probs",
    "make_pool",
    "sample_copy_batch",
    "make_test_sets",
    "TrainConfig",
    "CopyTaskRun",
    "train_copy_model",
    "default_model_config",
]


@dataclass
class CopyTaskConfig:
    """Shape of the copying task (lesson 4).

    Attributes:
        vocab_size: number of token ids.
        seq_len: tokens per sequence.
        pattern_len: ``(shortest, longest)`` pattern length during training, both included.
        ood_pattern_len: pattern length of the OOD test set (longer than in training).
        zipf_shift: the ``2.7`` in ``P(i) proportional to 1 / (i + 2.7)``.
        skip: tokens at the start of the second copy that are not scored (the first one cannot be
            predicted at all: nothing says a copy begins).
    """

    vocab_size: int = 24
    seq_len: int = 32
    pattern_len: tuple[int, int] = (8, 12)
    ood_pattern_len: int = 14
    zipf_shift: float = 2.7
    skip: int = 2

    def __post_init__(self) -> None:
        self.pattern_len = tuple(self.pattern_len)  # type: ignore[assignment]
        lo, hi = self.pattern_len
        if not 1 <= lo <= hi:
            raise ValueError(f"pattern_len must be (shortest, longest) with 1 <= shortest <= longest, got {self.pattern_len}.")
        longest = max(hi, self.ood_pattern_len)
        if longest > self.vocab_size:
            raise ValueError(
                f"A pattern has distinct tokens, so its length ({longest}) cannot exceed vocab_size={self.vocab_size}; "
                "shorten the patterns or enlarge the vocabulary."
            )
        if 2 * longest + 1 > self.seq_len:
            raise ValueError(
                f"Two copies of a {longest}-token pattern do not fit in seq_len={self.seq_len}; "
                f"use seq_len >= {2 * longest + 1} or shorter patterns."
            )
        if not 0 <= self.skip < lo:
            raise ValueError(f"skip must be in [0, shortest pattern length={lo}), got {self.skip}.")


@dataclass
class CopyBatch:
    """A batch of copying-task sequences.

    Attributes:
        tokens: ``[batch, seq_len]`` token ids.
        scored: ``[batch, seq_len]`` bool, True where the token is in the second copy (after
            ``skip``): the targets the error is counted on. Position ``j`` is predicted from the
            logits at position ``j - 1``.
        first: ``[batch]`` start of the first copy. second: ``[batch]`` start of the second copy.
        length: ``[batch]`` pattern length.
    """

    tokens: torch.Tensor
    scored: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    length: torch.Tensor

    def to(self, device: torch.device | str) -> CopyBatch:
        return CopyBatch(*(getattr(self, f).to(device) for f in ("tokens", "scored", "first", "second", "length")))

    def __len__(self) -> int:
        return self.tokens.shape[0]


@dataclass
class PatternPool:
    """A fixed pool of patterns: ``patterns [n, longest]`` (padded with -1) and ``lengths [n]``."""

    patterns: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return self.patterns.shape[0]


def zipf_probs(vocab_size: int, shift: float = 2.7) -> torch.Tensor:
    """Background token law ``P(i) proportional to 1 / (i + shift)``, ``[vocab_size]``. Lesson 4."""
    positive_int(vocab_size, "vocab_size")
    if not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift must be a positive number (token 0 gets weight 1/shift), got {shift!r}.")
    weights = 1.0 / (torch.arange(vocab_size, dtype=torch.float64) + shift)
    return (weights / weights.sum()).float()


def _distinct_patterns(n: int, length: torch.Tensor, vocab_size: int, g: torch.Generator) -> torch.Tensor:
    """``n`` rows of distinct uniform tokens (a random permutation's prefix), padded with -1 after ``length``."""
    perms = torch.rand(n, vocab_size, generator=g).argsort(dim=1)
    longest = int(length.max())
    pats = perms[:, :longest].clone()
    pats[torch.arange(longest)[None, :] >= length[:, None]] = -1
    return pats


def make_pool(task: CopyTaskConfig, pool_size: int, generator: torch.Generator) -> PatternPool:
    """A fixed pool of ``pool_size`` training patterns (lengths drawn from ``task.pattern_len``). Lesson 4."""
    if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
        raise ValueError(f"pool_size must be a positive integer (or None for fresh patterns), got {pool_size!r}.")
    lo, hi = task.pattern_len
    lengths = torch.randint(lo, hi + 1, (pool_size,), generator=generator)
    return PatternPool(_distinct_patterns(pool_size, lengths, task.vocab_size, generator), lengths)


def sample_copy_batch(
    task: CopyTaskConfig,
    batch_size: int,
    generator: torch.Generator,
    *,
    pool: PatternPool | None = None,
    ood: bool = False,
) -> CopyBatch:
    """Sample ``batch_size`` copying-task sequences on the CPU. Lesson 4.

    Args:
        pool: draw each pattern from this fixed pool (training and ID test of a pool run);
            ``None``: a fresh random pattern per sequence.
        ood: out-of-distribution sequences: uniform background, patterns of ``task.ood_pattern_len``,
            always fresh (``pool`` must be None).
    """
    if ood and pool is not None:
        raise ValueError("OOD sequences use fresh patterns by definition; pass pool=None with ood=True.")
    V, T = task.vocab_size, task.seq_len
    probs = torch.full((V,), 1.0 / V) if ood else zipf_probs(V, task.zipf_shift)
    tokens = torch.multinomial(probs, batch_size * T, replacement=True, generator=generator).view(batch_size, T)

    if pool is not None:
        idx = torch.randint(0, len(pool), (batch_size,), generator=generator)
        patterns, length = pool.patterns[idx], pool.lengths[idx]
    else:
        if ood:
            length = torch.full((batch_size,), task.ood_pattern_len)
        else:
            lo, hi = task.pattern_len
            length = torch.randint(lo, hi + 1, (batch_size,), generator=generator)
        patterns = _distinct_patterns(batch_size, length, V, generator)

    # Two non-overlapping copies: pick the free gap sizes, then place first copy, gap, second copy.
    free = T - 2 * length  # background tokens left over
    u = torch.rand(batch_size, 3, generator=generator)
    cuts = (u[:, :2] * (free[:, None] + 1).float()).floor().long().sort(dim=1).values  # two cut points in [0, free]
    first = cuts[:, 0]
    second = first + length + (cuts[:, 1] - cuts[:, 0])
    del u

    pos = torch.arange(T)[None, :]
    offset1 = pos - first[:, None]
    offset2 = pos - second[:, None]
    in1 = (offset1 >= 0) & (offset1 < length[:, None])
    in2 = (offset2 >= 0) & (offset2 < length[:, None])
    longest = patterns.shape[1]
    tokens = torch.where(in1, patterns.gather(1, offset1.clamp(0, longest - 1)), tokens)
    tokens = torch.where(in2, patterns.gather(1, offset2.clamp(0, longest - 1)), tokens)
    scored = in2 & (offset2 >= task.skip)
    return CopyBatch(tokens, scored, first, second, length)


def make_test_sets(
    task: CopyTaskConfig, n: int = 512, *, pool: PatternPool | None = None, seed: int = 12345
) -> dict[str, CopyBatch]:
    """``{"id": ..., "ood": ...}`` test batches of ``n`` sequences each, from their own seed. Lesson 4."""
    g = torch.Generator().manual_seed(seed)
    return {"id": sample_copy_batch(task, n, g, pool=pool), "ood": sample_copy_batch(task, n, g, ood=True)}


def count_right(next_logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[int, int]:
    """How many scored tokens ``next_logits [batch, pos - 1, vocab]`` predict right (argmax), and how many are scored."""
    right = next_logits.argmax(-1) == tokens[:, 1:].to(next_logits.device)
    scored = mask[:, 1:].to(next_logits.device)
    return int((right & scored).sum()), int(scored.sum())


@torch.no_grad()
def copy_error(model: torch.nn.Module, batch: CopyBatch, *, batch_size: int = 1024) -> float:
    """``1 -`` :func:`toyattn.circuits.copy_scoring.copy_accuracy` of ``model`` on ``batch``, run ``batch_size`` sequences at a time (lesson 4's test error)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    right, scored = 0, 0
    try:
        for start in range(0, len(batch), batch_size):
            tokens = batch.tokens[start : start + batch_size].to(device)
            r, s = count_right(model(tokens[:, :-1]), tokens, batch.scored[start : start + batch_size])
            right, scored = right + r, scored + s
    finally:
        model.train(was_training)
    return 1 - right / max(scored, 1)


def default_model_config(task: CopyTaskConfig, **overrides) -> TransformerConfig:
    """The lesson's model: 2 layers, 1 head, rotary positions, no MLP, layer norm (the paper's shape,
    smaller). ``overrides`` change any :class:`TransformerConfig` field. Lesson 4."""
    kw = dict(vocab_size=task.vocab_size, max_len=task.seq_len, d_model=32, n_layers=2, n_heads=1,
              positions="rotary", mlp=False, layer_norm=True)
    kw.update(overrides)
    return TransformerConfig(**kw)


@dataclass
class TrainConfig:
    """Optimiser and schedule of :func:`train_copy_model` (lesson 4; defaults sized for a CPU).

    The paper uses AdamW, lr 1e-3, weight decay 5e-4, betas (0.9, 0.98), batch 50, 20,000 steps;
    a larger learning rate and batch get the small CPU model there in a few hundred steps.

    ``cpu_threads``: torch threads while training on the CPU (restored afterwards); ``None`` leaves
    torch's setting alone. For a model this small, synchronising threads costs about as much as the
    arithmetic on an idle machine, and much more on a busy one (other processes on the cores, as on a
    shared JupyterHub), so one thread is the robust default. ``benchmarks/bench_circuits.py`` prints
    the training steps per second with one thread and with torch's default thread count.
    """

    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    checkpoint_every: int = 25
    n_test: int = 512
    seed: int = 0
    cpu_threads: int | None = 1

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "n_test"):
            positive_int(getattr(self, name), f"TrainConfig.{name}")
        if self.cpu_threads is not None:
            positive_int(self.cpu_threads, "TrainConfig.cpu_threads")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be a positive finite number, got {self.lr!r}.")
        if not isinstance(self.weight_decay, int | float) or not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"TrainConfig.weight_decay must be a finite number >= 0, got {self.weight_decay!r}.")


@dataclass
class CopyTaskRun:
    """What :func:`train_copy_model` returns (lesson 4).

    Attributes:
        model: the trained model (final weights).
        steps: training step of each checkpoint (0 is the initialisation).
        checkpoints: the weights at each step, as CPU state dicts (kept in memory), or file paths
            when a ``checkpoint_dir`` was given; :meth:`load` turns either into a model.
        history: per checkpoint: ``train_loss`` (mean over the steps since the previous one),
            ``id_error``, ``ood_error``.
        pool: the training pool (None: fresh patterns).
        seconds: wall time of the training loop, checkpoints and error measurements included.
    """

    model: Transformer
    model_config: TransformerConfig
    task: CopyTaskConfig
    train: TrainConfig
    pool_size: int | None
    pool: PatternPool | None
    steps: list[int] = field(default_factory=list)
    checkpoints: list[dict[str, torch.Tensor] | Path] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=lambda: {"train_loss": [], "id_error": [], "ood_error": []})
    seconds: float = 0.0

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Weights of checkpoint ``i`` (an index into :attr:`steps`), on the CPU."""
        n = len(self.checkpoints)
        if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
            raise IndexError(
                f"checkpoint {i!r} does not exist: this run kept {n} checkpoints (indices 0 to {n - 1}, or -1 "
                f"for the last), at steps {self.steps[0] if self.steps else '-'} to {self.steps[-1] if self.steps else '-'}."
            )
        ckpt = self.checkpoints[i]
        if isinstance(ckpt, (str, os.PathLike)):
            # weights_only=True: a checkpoint file can only hold tensors, never run code when loaded.
            return torch.load(ckpt, map_location="cpu", weights_only=True)
        return ckpt

    def load(self, i: int = -1, device: torch.device | str = "cpu") -> Transformer:
        """A fresh model holding checkpoint ``i`` (default: the last), in eval mode."""
        state = self.state_dict(i)
        model = Transformer(self.model_config)
        model.load_state_dict(state)
        return model.to(device).eval()

    def __len__(self) -> int:
        return len(self.steps)


def train_copy_model(
    task: CopyTaskConfig | None = None,
    *,
    pool_size: int | None = None,
    train: TrainConfig | None = None,
    model_config: TransformerConfig | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> CopyTaskRun:
    """Train a transformer on the copying task, keeping checkpoints and ID/OOD errors. Lesson 4.

    Args:
        task: the task shape (default :class:`CopyTaskConfig`).
        pool_size: ``None`` for a fresh pattern in every sequence, else the size of the fixed
            training pool of patterns.
        train: optimiser and schedule (default :class:`TrainConfig`).
        model_config: the model (default :func:`default_model_config`).
        checkpoint_dir: save checkpoints there as ``step_XXXXXX.pt`` files instead of in memory.
        device: where to train (default :func:`toyattn.device.get_device`).
        progress: show a progress bar (default: only in notebooks).

    The loss is next-token cross-entropy on every position; the error is measured on the second copy
    only (:func:`copy_error`). Training runs on the course's loop (:func:`toyattn.training.fit`),
    each of its records keeps a checkpoint and measures the ID and OOD errors. Everything is seeded
    by ``train.seed``: the same call gives the same run.
    """
    task = task or CopyTaskConfig()
    train = train or TrainConfig()
    _check_settings(task, train)
    model_config = model_config or default_model_config(task)
    _check_model_fits(model_config, task)
    device = get_device(device)
    seed_everything(train.seed)
    data_gen = torch.Generator().manual_seed(train.seed + 1)
    pool = make_pool(task, pool_size, torch.Generator().manual_seed(train.seed + 2)) if pool_size is not None else None
    tests = make_test_sets(task, train.n_test, pool=pool, seed=train.seed + 3)

    model = Transformer(model_config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay, betas=train.betas)
    run = CopyTaskRun(model, model_config, task, train, pool_size, pool)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    def loss_at(step: int) -> torch.Tensor:  # a fresh batch every step, from the seeded data generator
        tokens = sample_copy_batch(task, train.batch_size, data_gen, pool=pool).tokens.to(device)
        logits = model(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, task.vocab_size), tokens[:, 1:].reshape(-1))

    def record(step: int, losses: Sequence[torch.Tensor]) -> None:
        since_last = [float(loss) for loss in losses[run.steps[-1] if run.steps else 0 :]]
        _save_checkpoint(run, model, step, ckpt_dir)
        run.history["train_loss"].append(sum(since_last) / len(since_last) if since_last else float("nan"))
        run.history["id_error"].append(copy_error(model, tests["id"]))
        run.history["ood_error"].append(copy_error(model, tests["ood"]))

    desc = f"pool {pool_size if pool_size is not None else 'fresh'}"
    history = fit(loss_at, opt, train.steps, device=device, threads=train.cpu_threads, progress=progress, desc=desc,
                  record=record, record_every=train.checkpoint_every)
    run.seconds = history.seconds
    model.eval()
    return run


def _check_settings(task: object, train: object) -> None:
    if not isinstance(task, CopyTaskConfig):
        raise TypeError(f"task must be a CopyTaskConfig, got {type(task).__name__}.")
    if not isinstance(train, TrainConfig):
        raise TypeError(f"train must be a TrainConfig, got {type(train).__name__}.")


def _check_model_fits(model_config: TransformerConfig, task: CopyTaskConfig) -> None:
    if model_config.vocab_size != task.vocab_size or model_config.max_len < task.seq_len:
        raise ValueError(
            f"The model (vocab_size={model_config.vocab_size}, max_len={model_config.max_len}) does not fit the task "
            f"(vocab_size={task.vocab_size}, seq_len={task.seq_len}); build it with default_model_config(task)."
        )


def _save_checkpoint(run: CopyTaskRun, model: Transformer, step: int, ckpt_dir: Path | None) -> None:
    """Keep the weights at ``step``: a CPU copy in memory, or a ``step_XXXXXX.pt`` file in ``ckpt_dir``."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    if ckpt_dir is not None:
        path = ckpt_dir / f"step_{step:06d}.pt"
        torch.save(state, path)
        run.checkpoints.append(path)
    else:
        run.checkpoints.append(state)
    run.steps.append(step)
