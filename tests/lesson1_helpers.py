"""Lesson 1's trained models for the tests: ``tests/conftest.py`` trains them once per session (fixtures
``lesson1_runs``, ``lesson1_solved``, ``lesson1_stuck``) for every lesson-1 test file.

Training outcomes differ between CPUs, thread counts, dtypes and GPUs: the same seed can learn another
solution, or get stuck, elsewhere. So the tests never ask what one run did. They train every seed in
:data:`SEEDS` under every setting in :data:`SETTINGS` (1 and 2 threads, float32 and float64, a proxy for
"another machine") and assert what holds for every run that solves the task, or, for a claim that holds
only on most runs, the fraction of runs it holds on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from toyattn.device import seed_everything
from toyattn.models.one_head import OneHeadAttention
from toyattn.sentences.corpus import ToyCorpus
from toyattn.sentences.training import DEFAULT_RECIPE, train

CORPUS = ToyCorpus()
THE = CORPUS.position_of("the")  # 3
SUBJECT = CORPUS.position_of("man")  # 1: man / woman
CHICKEN, BEEF = CORPUS.token_id("chicken"), CORPUS.token_id("beef")
#: Seeds 0-11 (lesson 1's section 9) and the lesson's own seed, 77.
SEEDS: tuple[int, ...] = (*range(12), 77)
#: (dtype, CPU threads, seeds) of the training runs (float64 with 2 threads on a few seeds, solved and stuck).
SETTINGS: tuple[tuple[torch.dtype, int, tuple[int, ...]], ...] = (
    (torch.float32, 1, SEEDS),
    (torch.float64, 1, SEEDS),
    (torch.float32, 2, SEEDS),
    (torch.float64, 2, (0, 1, 2, 77)),
)


@dataclass(frozen=True)
class Run:
    """One trained lesson-1 model and how it was trained."""

    seed: int
    dtype: torch.dtype
    threads: int
    model: OneHeadAttention
    losses: list[float]

    @property
    def label(self) -> str:
        return f"seed {self.seed}, {str(self.dtype).removeprefix('torch.')}, {self.threads} thread(s)"

    @property
    def solved(self) -> bool:
        """After "the" it predicts chicken in the man sentence and beef in the woman sentence."""
        inputs, _ = CORPUS.tensors("cpu")
        with torch.no_grad():
            return self.model(inputs)[:, THE].argmax(-1).tolist() == [CHICKEN, BEEF]


def train_run(seed: int, dtype: torch.dtype = torch.float32, threads: int = 1, **model_kwargs) -> Run:
    """Seed, build lesson 1's model in ``dtype`` and train it with the default recipe on ``threads`` CPU threads."""
    inputs, targets = CORPUS.tensors("cpu")
    seed_everything(seed)
    model = OneHeadAttention.from_corpus(CORPUS, **model_kwargs).to(dtype)
    losses = train(model, inputs, targets, DEFAULT_RECIPE, device="cpu", threads=threads, progress=False)
    return Run(seed, dtype, threads, model, losses)


def train_all_runs() -> tuple[Run, ...]:
    """Every run of :data:`SETTINGS` (the session fixture ``lesson1_runs`` calls it once)."""
    return tuple(train_run(seed, dtype, threads) for dtype, threads, seeds in SETTINGS for seed in seeds)


def solved_runs(all_runs: tuple[Run, ...]) -> tuple[Run, ...]:
    runs = tuple(r for r in all_runs if r.solved)
    assert all(any(r.threads == t and r.dtype == d for r in runs) for d, t, _ in SETTINGS), "a setting solves no seed"
    return runs


def stuck_runs(all_runs: tuple[Run, ...]) -> tuple[Run, ...]:
    return tuple(r for r in all_runs if not r.solved)


def _untrained(**kwargs) -> OneHeadAttention:
    torch.manual_seed(0)
    return OneHeadAttention.from_corpus(CORPUS, **kwargs)
