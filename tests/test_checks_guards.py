"""toyattn.checks.guards: the guards a check runs the student's code under leave tracing and profiling as they were."""

from __future__ import annotations

import sys

import torch

from toyattn import checks


def score_by_trace_linear(W_q, W_k):  # nn.Linear layout [d_head, d_model]: M = W_q^T W_k
    A, B, C = W_q @ W_q.T, W_k @ W_k.T, W_k @ W_q.T
    return 0.5 * (1 + torch.einsum("ij,ji->", C, C) / torch.einsum("ij,ji->", A, B))


def batched_scores(W_Q, W_K):
    W_K = W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1)  # key head of each query head
    A = torch.einsum("lhdi,lhdj->lhij", W_Q, W_Q)
    B = torch.einsum("lhdi,lhdj->lhij", W_K, W_K)
    C = torch.einsum("lhdi,lhdj->lhij", W_K, W_Q)
    return 0.5 * (1 + torch.einsum("lhij,lhji->lh", C, C) / torch.einsum("lhij,lhji->lh", A, B))


def test_guards_leave_profiling_and_tracing_as_they_were():
    def tracer(frame, event, arg):
        return None

    sys.settrace(tracer)
    try:
        checks.check_batched_symmetry_scores(batched_scores)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
    assert sys.getprofile() is None


def test_guards_step_aside_for_a_running_profiler(capsys):
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        checks.check_symmetry_score_trace(score_by_trace_linear)  # must neither fail nor switch the profiler off
        still_profiling = sys.getprofile() is profiler
    finally:
        profiler.disable()
    assert still_profiling
    assert "PASSED" in capsys.readouterr().out
