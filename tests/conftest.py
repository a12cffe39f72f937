"""Fixtures shared by the unit tests (the repository's conftest.py sets the environment and skips GPU tests).

* ``single_thread``: torch on one thread for a test (the exercise-check tests use it for a whole file).
* ``lesson1_runs`` / ``lesson1_solved`` / ``lesson1_stuck``: lesson 1's models under every setting of
  :mod:`lesson1_helpers`, trained once per session for every lesson-1 test file.
* ``fresh_run`` / ``fresh_runs``: lesson 4's copy-task model trained from scratch (seed 0) and under three
  more settings, trained once per session for the copy-task and circuit-matching tests.
"""

from __future__ import annotations

import lesson1_helpers
import pytest
import torch

from toyattn.circuits.copy_task import CopyTaskConfig, TrainConfig, train_copy_model


@pytest.fixture
def single_thread():
    """Torch on one thread for the test (restored after): a check's tensors are tiny, and on a busy
    machine torch's thread pool makes them many times slower. Use it with ``autouse`` in a test module:
    ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def lesson1_runs() -> tuple[lesson1_helpers.Run, ...]:
    """Every lesson-1 run of :data:`lesson1_helpers.SETTINGS`."""
    return lesson1_helpers.train_all_runs()


@pytest.fixture(scope="session")
def lesson1_solved(lesson1_runs) -> tuple[lesson1_helpers.Run, ...]:
    """The lesson-1 runs that solve the task (every setting solves at least one seed)."""
    return lesson1_helpers.solved_runs(lesson1_runs)


@pytest.fixture(scope="session")
def lesson1_stuck(lesson1_runs) -> tuple[lesson1_helpers.Run, ...]:
    """The lesson-1 runs that got stuck."""
    return lesson1_helpers.stuck_runs(lesson1_runs)


def _fresh_copy_run(seed: int = 0, threads: int = 1, dtype: torch.dtype = torch.float32, checkpoint_every: int = 50):
    config = TrainConfig(steps=450, checkpoint_every=checkpoint_every, n_test=256, seed=seed, cpu_threads=threads)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the model's parameters are created in this dtype
    try:
        return train_copy_model(CopyTaskConfig(), pool_size=None, train=config, device="cpu")
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def fresh_run():
    """The copy-task model, seed 0, float32, 1 thread, 450 steps from scratch (checkpoints every 50 steps)."""
    return _fresh_copy_run()


@pytest.fixture(scope="session")
def fresh_runs(fresh_run):
    """Seed 0 under three settings (float32 with 1 and 2 threads, float64) and seed 1: label -> run."""
    runs = {"seed 0, float32, 1 thread": fresh_run}
    runs["seed 0, float32, 2 threads"] = _fresh_copy_run(threads=2, checkpoint_every=150)
    runs["seed 0, float64, 1 thread"] = _fresh_copy_run(dtype=torch.float64, checkpoint_every=150)
    runs["seed 1, float32, 1 thread"] = _fresh_copy_run(seed=1, checkpoint_every=150)
    return runs
