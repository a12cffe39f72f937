"""Tests for the course's one training loop, :func:`toyattn.training.fit`: the order of a step, when
``record`` and ``stop`` are called, the CPU threads, stacked runs, bad schedules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toyattn.training import History, fit


def _regression(seed: int = 0) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    """A tiny linear model and a fixed batch of data."""
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 1), torch.randn(16, 3), torch.randn(16, 1)


def _fit_regression(steps: int, **kwargs) -> tuple[History, torch.nn.Linear, list[tuple[int, int]]]:
    model, x, y = _regression()
    calls: list[tuple[int, int]] = []  # (steps taken, losses seen) of every record
    history = fit(
        lambda step: F.mse_loss(model(x), y),
        torch.optim.Adam(model.parameters(), lr=0.1),
        steps,
        device="cpu",
        progress=False,
        record=lambda taken, losses: calls.append((taken, len(losses))),
        **kwargs,
    )
    return history, model, calls


def test_a_step_is_loss_zero_grad_backward_update_and_the_history_is_detached():
    history, model, _ = _fit_regression(5)
    # The same five steps written out by hand give the same losses and weights, bit for bit.
    ref, x, y = _regression()
    opt = torch.optim.Adam(ref.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = F.mse_loss(ref(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    assert torch.equal(history.losses, torch.stack(losses))
    assert torch.equal(model.weight, ref.weight) and torch.equal(model.bias, ref.bias)
    assert history.losses.shape == (5,) and not history.losses.requires_grad and len(history) == 5
    assert history.losses[-1] < history.losses[0] and history.seconds > 0


def test_loss_at_gets_the_step_counting_from_zero():
    model, x, y = _regression()
    seen: list[int] = []

    def loss_at(step: int) -> torch.Tensor:
        seen.append(step)
        return F.mse_loss(model(x), y)

    fit(loss_at, torch.optim.SGD(model.parameters(), lr=0.01), 4, device="cpu", progress=False)
    assert seen == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("steps", "every", "expected"),
    [
        (7, 3, [0, 3, 6, 7]),  # the last step is recorded although 7 is not a multiple of 3
        (6, 3, [0, 3, 6]),  # ... and only once when it is
        (5, None, [0, 5]),  # no record_every: before the first step and after the last
        (1, 1, [0, 1]),
    ],
)
def test_record_is_called_at_zero_every_n_steps_and_once_at_the_end(steps, every, expected):
    history, _, calls = _fit_regression(steps, record_every=every)
    assert [taken for taken, _ in calls] == expected
    assert all(seen == taken for taken, seen in calls)  # each record sees every loss so far
    assert len(history) == steps


def test_stop_ends_training_after_that_step_and_records_it_once():
    history, _, calls = _fit_regression(100, record_every=2, stop=lambda losses: len(losses) == 5)
    assert len(history) == 5
    assert [taken for taken, _ in calls] == [0, 2, 4, 5]
    never, _, _ = _fit_regression(6, stop=lambda losses: False)
    assert len(never) == 6


def test_threads_apply_on_the_cpu_only_and_are_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model, x, y = _regression()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        seen: list[int] = []

        def loss_at(step: int) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return F.mse_loss(model(x), y)

        fit(loss_at, opt, 2, device="cpu", threads=1, progress=False)
        assert seen == [1, 1] and torch.get_num_threads() == 2
        fit(loss_at, opt, 1, device="cpu", threads=None, progress=False)  # None: torch's own setting
        fit(loss_at, opt, 1, device=torch.device("cuda"), threads=1, progress=False)  # a GPU run ignores threads
        assert seen[2:] == [2, 2]

        def fails(step: int) -> torch.Tensor:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            fit(fails, opt, 3, device="cpu", threads=1, progress=False)
        assert torch.get_num_threads() == 2  # restored even when training fails
        with pytest.raises(ValueError, match="positive integer"):
            fit(loss_at, opt, 1, device="cpu", threads=0, progress=False)
    finally:
        torch.set_num_threads(before)


def test_stacked_runs_keep_one_loss_each_and_their_own_gradients():
    # Three independent "runs" stacked along one axis: run i pulls w[i] towards target[i].
    target = torch.tensor([1.0, -2.0, 3.0])
    w = torch.zeros(3, requires_grad=True)
    history = fit(lambda step: (w - target) ** 2, torch.optim.SGD([w], lr=0.25), 4, device="cpu", progress=False)
    assert history.losses.shape == (4, 3)
    assert torch.equal(history.losses[0], target**2)
    # Each run trained alone (one scalar loss) lands on the same weight: the sum mixed no gradients.
    for i in range(3):
        alone = torch.zeros((), requires_grad=True)
        fit(lambda step, a=alone, t=target[i]: (a - t) ** 2, torch.optim.SGD([alone], lr=0.25), 4, device="cpu", progress=False)
        assert torch.equal(alone, w[i])


@pytest.mark.parametrize(("steps", "every"), [(0, None), (3, 0), (True, None), (2.0, None)])
def test_fit_rejects_a_bad_schedule(steps, every):
    model, x, y = _regression()
    with pytest.raises(ValueError, match="positive integer"):
        fit(lambda step: F.mse_loss(model(x), y), torch.optim.SGD(model.parameters(), lr=0.1), steps,
            device="cpu", record=lambda *a: None, record_every=every)
