"""Lesson 3's exercise checks accept the solutions and reject the stub and plausible wrong answers,
in class and in grading, naming the mistake where it is recognisable."""

from __future__ import annotations

import sys

import numpy as np
import torch
from check_helpers import verify_check

from toyattn import checks
from toyattn import symmetry as S
from toyattn.symmetry import symmetry_score, symmetry_score_definition  # imported before the check runs

SKEW = "skew-symmetric part"
SIGNED = "s = 2r - 1"
CALLS = "calls `toyattn.symmetry."
BUILDS_M = "as large as the d_model x d_model matrix M"
LOOP = "loop over the heads"
IN_TORCH = "compute in torch"
TOO_MUCH_WORK = "floating-point operations, more than"


# -- Exercise 1: by the definition ----------------------------------------------------------------


def score_by_definition(W_q, W_k):
    M = W_q @ W_k.T
    return ((M + M.T) / 2).pow(2).sum() / M.pow(2).sum()


def test_check_symmetry_score_definition(capsys, tmp_path_factory, monkeypatch):
    def forgot_squares(W_q, W_k):
        M = W_q @ W_k.T
        return ((M + M.T) / 2).norm() / M.norm()

    def symmetric_part_of_m_with_itself(W_q, W_k):
        M = W_q @ W_k.T
        return ((M + M) / 2).pow(2).sum() / M.pow(2).sum()  # always 1

    def signed_instead_of_r(W_q, W_k):
        return 2 * score_by_definition(W_q, W_k) - 1

    def skew_share(W_q, W_k):
        M = W_q @ W_k.T
        return ((M - M.T) / 2).pow(2).sum() / M.pow(2).sum()

    def no_half_in_symmetric_part(W_q, W_k):
        M = W_q @ W_k.T
        return (M + M.T).pow(2).sum() / M.pow(2).sum()

    def small_matrix(W_q, W_k):  # W_q^T W_k: d_head x d_head, not the head's bilinear form
        return score_by_definition(W_q.T, W_k.T)

    def library(W_q, W_k):
        return symmetry_score_definition(W_q, W_k)

    verify_check(
        checks.check_symmetry_score_definition,
        score_by_definition,
        [forgot_squares, symmetric_part_of_m_with_itself, signed_instead_of_r, skew_share,
         no_half_in_symmetric_part, small_matrix, library],
        capsys,
        messages=["ratio of norms", "not from M twice", SIGNED, SKEW, "4r", "W_q^T W_k", CALLS + "symmetry_score_definition`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


# -- Exercise 2: the trace form ---------------------------------------------------------------------


def score_by_trace(W_q, W_k):
    A, B, C = W_q.T @ W_q, W_k.T @ W_k, W_k.T @ W_q
    return 0.5 * (1 + torch.einsum("ij,ji->", C, C) / torch.einsum("ij,ji->", A, B))


def test_check_symmetry_score_trace(capsys, tmp_path_factory, monkeypatch):
    def trace_of_c_transpose_c(W_q, W_k):  # tr(C^T C) = ||C||^2 is not tr(C C)
        A, B, C = W_q.T @ W_q, W_k.T @ W_k, W_k.T @ W_q
        return 0.5 * (1 + torch.einsum("ij,ij->", C, C) / torch.einsum("ij,ji->", A, B))

    def forgot_the_half(W_q, W_k):
        A, B, C = W_q.T @ W_q, W_k.T @ W_k, W_k.T @ W_q
        return 1 + torch.einsum("ij,ji->", C, C) / torch.einsum("ij,ji->", A, B)

    def right_value_but_builds_m(W_q, W_k):
        return score_by_definition(W_q, W_k)

    def numpy_port_of_the_definition(W_q, W_k):  # escapes torch: its M is found in NumPy's memory
        Wq, Wk = W_q.numpy(), W_k.numpy()
        M = Wq @ Wk.T
        return float((((M + M.T) / 2) ** 2).sum() / (M**2).sum())

    def numpy_float32_definition(W_q, W_k):
        Wq, Wk = W_q.numpy().astype(np.float32), W_k.numpy().astype(np.float32)
        M = (Wq @ Wk.T).astype(np.float64)
        return float((((M + M.T) / 2) ** 2).sum() / (M**2).sum())

    def calls_the_library(W_q, W_k):  # imported with `from toyattn.symmetry import symmetry_score`
        return symmetry_score(W_q, W_k)

    def calls_the_library_definition(W_q, W_k):
        return S.symmetry_score_definition(W_q, W_k)

    def builds_m_a_row_at_a_time(W_q, W_k):  # never holds M, but does all of its d^2 d_h work
        num, den = 0.0, 0.0
        for i in range(W_q.shape[0]):
            row, col = W_q[i] @ W_k.T, W_k[i] @ W_q.T  # row i of M and column i of M
            num, den = num + (row * col).sum(), den + (row * row).sum()
        return 0.5 * (1 + num / den)

    def four_operand_einsum(W_q, W_k):  # torch contracts left to right: M is built inside einsum
        tr_mm = torch.einsum("ia,ja,jb,ib->", W_q, W_k, W_q, W_k)
        norm2 = torch.einsum("ia,ja,ib,jb->", W_q, W_k, W_q, W_k)
        return 0.5 * (1 + tr_mm / norm2)

    def numpy_einsum_unoptimised(W_q, W_k):  # O(d^2 d_h^2) in C, no large array
        Wq, Wk = np.asarray(W_q), np.asarray(W_k)
        tr_mm = np.einsum("ia,ja,jb,ib->", Wq, Wk, Wq, Wk, optimize=False)
        norm2 = np.einsum("ia,ja,ib,jb->", Wq, Wk, Wq, Wk, optimize=False)
        return 0.5 * (1 + tr_mm / norm2)

    def calls_the_library_traces(W_q, W_k):  # the traces' own module, not toyattn.symmetry itself
        from toyattn.symmetry_traces import traces

        norm2, trace_cc = traces(W_q.T[None].double(), W_k.T[None].double(), 1)
        return float(0.5 * (1 + trace_cc[0] / norm2[0]))

    verify_check(
        checks.check_symmetry_score_trace,
        score_by_trace,
        [trace_of_c_transpose_c, forgot_the_half, right_value_but_builds_m, numpy_port_of_the_definition,
         numpy_float32_definition, builds_m_a_row_at_a_time, four_operand_einsum, numpy_einsum_unoptimised,
         calls_the_library, calls_the_library_definition, calls_the_library_traces],
        capsys,
        messages=["tr(C^T C)", "2r", BUILDS_M, IN_TORCH, IN_TORCH, "loop over the rows of W_q", TOO_MUCH_WORK, IN_TORCH,
         CALLS + "symmetry_score`", CALLS + "symmetry_score_definition`", "calls `toyattn.symmetry_traces.traces`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_trace_solution_in_float32_and_by_other_cheap_orders_passes(capsys):
    def float32_trace(W_q, W_k):
        return score_by_trace(W_q.float(), W_k.float())

    def cheap_einsum_order(W_q, W_k):  # one product at a time, each d_head x d_head
        C = torch.einsum("ia,ib->ab", W_k, W_q)
        A, B = torch.einsum("ia,ib->ab", W_q, W_q), torch.einsum("ia,ib->ab", W_k, W_k)
        return 0.5 * (1 + torch.trace(C @ C) / (A * B).sum())

    checks.check_symmetry_score_trace(float32_trace)
    checks.check_symmetry_score_trace(cheap_einsum_order)
    checks.check_symmetry_score_definition(lambda W_q, W_k: score_by_definition(W_q.float(), W_k.float()))
    assert capsys.readouterr().out.count("PASSED") == 3


# -- Exercise 3: a skew-symmetric key ---------------------------------------------------------------


def skew_key(W_q, generator):
    X = torch.randn(W_q.shape[1], W_q.shape[1], generator=generator, dtype=W_q.dtype)
    return W_q @ (X - X.T).T


def test_check_skew_symmetric_key(capsys, tmp_path_factory, monkeypatch):
    def symmetric_instead(W_q, generator):
        return W_q.clone()

    def minus_w_q(W_q, generator):  # "skew means negative": M = -W_q W_q^T is still symmetric
        return -W_q

    def s_not_skew(W_q, generator):
        X = torch.randn(W_q.shape[1], W_q.shape[1], generator=generator, dtype=W_q.dtype)
        return W_q @ X.T

    def skew_on_the_model_side(W_q, generator):  # S [d_model, d_model] on the left: M = W_q W_q^T S^T
        X = torch.randn(W_q.shape[0], W_q.shape[0], generator=generator, dtype=W_q.dtype)
        return (X - X.T) @ W_q

    def zero_key(W_q, generator):
        return torch.zeros_like(W_q)

    def wrong_shape(W_q, generator):
        X = torch.randn(W_q.shape[1], W_q.shape[1], generator=generator, dtype=W_q.dtype)
        return (W_q @ (X - X.T).T).T

    def library(W_q, generator):
        return S.skew_symmetric_key(W_q, generator=generator)

    verify_check(
        checks.check_skew_symmetric_key,
        skew_key,
        [symmetric_instead, minus_w_q, s_not_skew, skew_on_the_model_side, zero_key, wrong_shape, library],
        capsys,
        messages=["Your M is symmetric", "Your M is symmetric", "should satisfy M^T = -M", "should satisfy M^T = -M",
         "(almost) zero", "must have W_q's shape", CALLS + "skew_symmetric_key`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


# -- Exercise 4: every head at once -----------------------------------------------------------------


def batched_scores(W_Q, W_K):
    A = torch.einsum("lhdi,lhdj->lhij", W_Q, W_Q)
    B = torch.einsum("lhdi,lhdj->lhij", W_K, W_K)
    C = torch.einsum("lhdi,lhdj->lhij", W_K, W_Q)
    return 0.5 * (1 + torch.einsum("lhij,lhji->lh", C, C) / torch.einsum("lhij,lhji->lh", A, B))


def test_check_batched_symmetry_scores(capsys, tmp_path_factory, monkeypatch):
    def heads_and_layers_swapped(W_Q, W_K):
        return batched_scores(W_Q, W_K).T

    def layer_average(W_Q, W_K):
        return batched_scores(W_Q, W_K).mean(dim=1, keepdim=True).expand(W_Q.shape[0], W_Q.shape[1])

    def by_definition_builds_m(W_Q, W_K):
        M = W_Q @ W_K.transpose(-1, -2)
        return ((M + M.transpose(-1, -2)) / 2).pow(2).sum((-1, -2)) / M.pow(2).sum((-1, -2))

    def loop_building_each_m(W_Q, W_K):  # the wrong answer of issue 12: one d x d M per head
        out = torch.empty(W_Q.shape[:2], dtype=torch.float64)
        for layer in range(W_Q.shape[0]):
            for head in range(W_Q.shape[1]):
                out[layer, head] = score_by_definition(W_Q[layer, head], W_K[layer, head])
        return out

    def loop_over_heads_trace_form(W_Q, W_K):  # never builds M, but not batched
        return torch.stack([torch.stack([score_by_trace(q, k) for q, k in zip(Ql, Kl, strict=True)])
                            for Ql, Kl in zip(W_Q, W_K, strict=True)])

    def numpy_loop_over_heads(W_Q, W_K):
        Q, K = W_Q.numpy(), W_K.numpy()
        out = np.empty(Q.shape[:2])
        for index in np.ndindex(*Q.shape[:2]):
            A, B, C = Q[index].T @ Q[index], K[index].T @ K[index], K[index].T @ Q[index]
            out[index] = 0.5 * (1 + np.trace(C @ C) / np.trace(A @ B))
        return out

    def numpy_batched_definition(W_Q, W_K):  # M for every head, in NumPy (escapes torch's watch)
        Q, K = W_Q.numpy(), W_K.numpy()
        M = Q @ K.swapaxes(-1, -2)
        return ((M + M.swapaxes(-1, -2)) ** 2 / 4).sum((-1, -2)) / (M**2).sum((-1, -2))

    def wrong_einsum_pairs_heads(W_Q, W_K):  # C built from heads h and h' (a full cross product), then summed
        C = torch.einsum("lhdi,lgdj->lhij", W_K, W_Q)
        A = torch.einsum("lhdi,lhdj->lhij", W_Q, W_Q)
        B = torch.einsum("lhdi,lhdj->lhij", W_K, W_K)
        return 0.5 * (1 + torch.einsum("lhij,lhji->lh", C, C) / torch.einsum("lhij,lhji->lh", A, B))

    def signed(W_Q, W_K):
        return 2 * batched_scores(W_Q, W_K) - 1

    def four_operand_einsum(W_Q, W_K):  # batched and M-free on the surface: M is built inside einsum
        tr_mm = torch.einsum("lhia,lhja,lhjb,lhib->lh", W_Q, W_K, W_Q, W_K)
        norm2 = torch.einsum("lhia,lhja,lhib,lhjb->lh", W_Q, W_K, W_Q, W_K)
        return 0.5 * (1 + tr_mm / norm2)

    def library(W_Q, W_K):
        return symmetry_score(W_Q, W_K)

    verify_check(
        checks.check_batched_symmetry_scores,
        batched_scores,
        [heads_and_layers_swapped, layer_average, by_definition_builds_m, loop_building_each_m,
         loop_over_heads_trace_form, numpy_loop_over_heads, numpy_batched_definition, wrong_einsum_pairs_heads,
         signed, four_operand_einsum, library],
        capsys,
        messages=["[heads, layers]", "layer's mean head score", BUILDS_M, BUILDS_M, LOOP, IN_TORCH, IN_TORCH, None, SIGNED,
                  TOO_MUCH_WORK, CALLS + "symmetry_score`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_batched_check_accepts_other_batched_methods(capsys):
    def with_matmul(W_Q, W_K):
        Qt, Kt = W_Q.transpose(-1, -2), W_K.transpose(-1, -2)
        A, B, C = Qt @ W_Q, Kt @ W_K, Kt @ W_Q
        return 0.5 * (1 + (C * C.transpose(-1, -2)).sum((-1, -2)) / (A * B).sum((-1, -2)))

    def with_vmap(W_Q, W_K):
        return torch.vmap(torch.vmap(score_by_trace))(W_Q, W_K)

    for fn in (with_matmul, with_vmap):
        checks.check_batched_symmetry_scores(fn)
    assert capsys.readouterr().out.count("PASSED") == 2


# -- Exercise 5: one score per layer ----------------------------------------------------------------


def layer_score(W_Q, W_K):
    M = (W_Q @ W_K.transpose(-1, -2)).sum(0)
    return ((M + M.T) / 2).pow(2).sum() / M.pow(2).sum()


def test_check_layer_symmetry_score(capsys, tmp_path_factory, monkeypatch):
    def mean_of_head_scores(W_Q, W_K):
        return batched_scores(W_Q[None], W_K[None]).mean()

    def weighted_mean_of_head_scores(W_Q, W_K):  # the layer score if there were no cross terms
        weights = (W_Q @ W_K.transpose(-1, -2)).pow(2).sum((-1, -2))
        return (batched_scores(W_Q[None], W_K[None])[0] * weights).sum() / weights.sum()

    def per_head_scores(W_Q, W_K):
        return batched_scores(W_Q[None], W_K[None])[0]

    def signed(W_Q, W_K):
        return 2 * layer_score(W_Q, W_K) - 1

    def heads_stacked_along_d_model(W_Q, W_K):
        H, d, dh = W_Q.shape
        return score_by_definition(W_Q.reshape(H * d, dh), W_K.reshape(H * d, dh))

    def sum_of_small_products(W_Q, W_K):  # sum_h W_Q[h]^T W_K[h]: d_head x d_head
        M = (W_Q.transpose(-1, -2) @ W_K).sum(0)
        return ((M + M.T) / 2).pow(2).sum() / M.pow(2).sum()

    def library(W_Q, W_K):
        return S.layer_symmetry_score(W_Q, W_K)

    verify_check(
        checks.check_layer_symmetry_score,
        layer_score,
        [mean_of_head_scores, weighted_mean_of_head_scores, per_head_scores, signed, heads_stacked_along_d_model,
         sum_of_small_products, library],
        capsys,
        messages=["mean of the per-head scores", "weighted mean", "expected one number", SIGNED, "stacked along d_model",
         "sum_h W_Q[h]^T W_K[h]", CALLS + "layer_symmetry_score`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


# -- The guards themselves --------------------------------------------------------------------------


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
        checks.check_symmetry_score_trace(score_by_trace)  # must neither fail nor switch the profiler off
        still_profiling = sys.getprofile() is profiler
    finally:
        profiler.disable()
    assert still_profiling
    assert "PASSED" in capsys.readouterr().out
