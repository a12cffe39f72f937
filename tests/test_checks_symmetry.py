"""Lesson 3's exercise checks accept the solutions and reject the stub and plausible wrong answers,
in class and in grading, naming the mistake where it is recognisable."""

from __future__ import annotations

import numpy as np
import torch
from check_helpers import verify_check
from symmetry_helpers import batched_scores, score_by_trace_linear

from toyattn import checks
from toyattn.symmetry import scores
from toyattn.symmetry.scores import (  # imported before the check runs
    symmetry_score,
    symmetry_score_definition,
)

SIGNED = "s = 2r - 1"


CALLS = "calls `toyattn.symmetry.scores."


BUILDS_M = "as large as the d_model x d_model matrix M"


LOOP = "loop over the heads"


IN_TORCH = "compute in torch"


TOO_MUCH_WORK = "floating-point operations, more than"


def score_by_definition(W_q, W_k):
    M = W_q @ W_k.T
    return ((M + M.T) / 2).pow(2).sum() / M.pow(2).sum()


def signed_by_definition(W_q, W_k):
    M = W_q @ W_k.T
    return (M * M.T).sum() / M.pow(2).sum()  # tr(M M) / ||M||^2


def signed_with_gain(W_q, W_k, gamma):  # the head's form on normalised inputs: diag(gamma) M diag(gamma)
    return signed_by_definition(gamma[:, None] * W_q, gamma[:, None] * W_k)


def test_check_symmetry_score_definition(capsys, tmp_path_factory, monkeypatch):
    def ignores_the_gain(W_q, W_k, gamma):
        return signed_by_definition(W_q, W_k)

    def gain_on_the_query_side_only(W_q, W_k, gamma):
        return signed_by_definition(gamma[:, None] * W_q, W_k)

    def gain_squared_on_one_side(W_q, W_k, gamma):
        return signed_by_definition(gamma[:, None] ** 2 * W_q, W_k)

    def r_instead_of_s(W_q, W_k, gamma):  # the lecture's convention, transcribed
        return score_by_definition(gamma[:, None] * W_q, gamma[:, None] * W_k)

    def transpose_in_the_numerator(W_q, W_k, gamma):  # tr(M^T M) / ||M||^2 = 1 always
        M = W_q @ W_k.T
        return (M * M).sum() / M.pow(2).sum()

    def skew_minus_symmetric(W_q, W_k, gamma):
        return -signed_with_gain(W_q, W_k, gamma)

    def small_matrix(W_q, W_k, gamma):  # W_q^T W_k: d_head x d_head, not the head's bilinear form
        return signed_by_definition((gamma[:, None] * W_q).T, (gamma[:, None] * W_k).T)

    def ratio_of_norms(W_q, W_k, gamma):  # (||S|| - ||K||)/||M|| = sqrt(r) - sqrt(1 - r)
        M = (gamma[:, None] * W_q) @ (gamma[:, None] * W_k).T
        return (((M + M.T) / 2).norm() - ((M - M.T) / 2).norm()) / M.norm()

    def library(W_q, W_k, gamma):
        return 2 * symmetry_score_definition(gamma[:, None] * W_q, gamma[:, None] * W_k) - 1

    verify_check(
        checks.check_symmetry_score_definition,
        signed_with_gain,
        [ignores_the_gain, gain_on_the_query_side_only, gain_squared_on_one_side, r_instead_of_s,
         transpose_in_the_numerator, skew_minus_symmetric, small_matrix, ratio_of_norms, library],
        capsys,
        messages=["without the gain", "belongs on both sides", "diag(gamma^2)", "r = (1 + s)/2", "without a transpose",
                  "-s", "W_q^T W_k", "not of squared norms", CALLS + "symmetry_score_definition`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def score_by_trace(W_q, W_k):
    A, B, C = W_q.T @ W_q, W_k.T @ W_k, W_k.T @ W_q
    return 0.5 * (1 + torch.einsum("ij,ji->", C, C) / torch.einsum("ij,ji->", A, B))


def test_check_symmetry_score_trace(capsys, tmp_path_factory, monkeypatch):
    def lecture_layout_transcribed(W_q, W_k):  # treats [d_head, d_model] as [d_model, d_head]
        return score_by_trace(W_q, W_k)

    def trace_of_c_transpose_c(W_q, W_k):  # tr(C^T C) = ||C||^2 is not tr(C C)
        A, B, C = W_q @ W_q.T, W_k @ W_k.T, W_k @ W_q.T
        return 0.5 * (1 + torch.einsum("ij,ij->", C, C) / torch.einsum("ij,ji->", A, B))

    def forgot_the_half(W_q, W_k):
        A, B, C = W_q @ W_q.T, W_k @ W_k.T, W_k @ W_q.T
        return 1 + torch.einsum("ij,ji->", C, C) / torch.einsum("ij,ji->", A, B)

    def right_value_but_builds_m(W_q, W_k):
        return score_by_definition(W_q.T, W_k.T)

    def numpy_port_of_the_definition(W_q, W_k):
        Wq, Wk = W_q.numpy(), W_k.numpy()
        M = Wq.T @ Wk
        return float((((M + M.T) / 2) ** 2).sum() / (M**2).sum())

    def builds_m_a_row_at_a_time(W_q, W_k):  # never holds M, but does all of its d^2 d_h work
        num, den = 0.0, 0.0
        for i in range(W_q.shape[1]):
            row, col = W_q[:, i] @ W_k, W_k[:, i] @ W_q  # row i of M and column i of M
            num, den = num + (row * col).sum(), den + (row * row).sum()
        return 0.5 * (1 + num / den)

    def builds_m_in_blocks_by_broadcasting(W_q, W_k):  # no matrix product, no M, 7 loop turns: d^2 d_h work
        d = W_q.shape[1]
        num, den = 0.0, 0.0
        for i in range(0, d, 150):
            rows = (W_q[:, i:i + 150, None] * W_k[:, None, :]).sum(0)  # rows i.. of M = W_q^T W_k
            cols = (W_k[:, i:i + 150, None] * W_q[:, None, :]).sum(0)  # the same rows of M^T
            num, den = num + (rows * cols).sum(), den + (rows * rows).sum()
        return 0.5 * (1 + num / den)

    def four_operand_einsum(W_q, W_k):  # torch contracts left to right: M is built inside einsum
        tr_mm = torch.einsum("ai,aj,bj,bi->", W_q, W_k, W_q, W_k)
        norm2 = torch.einsum("ai,aj,bi,bj->", W_q, W_k, W_q, W_k)
        return 0.5 * (1 + tr_mm / norm2)

    def numpy_einsum_unoptimised(W_q, W_k):  # O(d^2 d_h^2) in C, no large array
        Wq, Wk = np.asarray(W_q), np.asarray(W_k)
        tr_mm = np.einsum("ai,aj,bj,bi->", Wq, Wk, Wq, Wk, optimize=False)
        norm2 = np.einsum("ai,aj,bi,bj->", Wq, Wk, Wq, Wk, optimize=False)
        return 0.5 * (1 + tr_mm / norm2)

    def calls_the_library(W_q, W_k):  # imported with `from toyattn.symmetry.scores import symmetry_score`
        return symmetry_score(W_q.T, W_k.T)

    def calls_the_library_traces(W_q, W_k):  # the traces' own module, not toyattn.symmetry.scores itself
        from toyattn.symmetry.traces import traces

        norm2, trace_cc = traces(W_q[None].double(), W_k[None].double(), 1)
        return float(0.5 * (1 + trace_cc[0] / norm2[0]))

    verify_check(
        checks.check_symmetry_score_trace,
        score_by_trace_linear,
        [lecture_layout_transcribed, trace_of_c_transpose_c, forgot_the_half, right_value_but_builds_m,
         numpy_port_of_the_definition, builds_m_a_row_at_a_time, builds_m_in_blocks_by_broadcasting,
         four_operand_einsum, numpy_einsum_unoptimised, calls_the_library, calls_the_library_traces],
        capsys,
        messages=["nn.Linear layout", "tr(C^T C)", "2r", BUILDS_M, IN_TORCH, "loop over the rows of W_q",
                  "tensor entries in all", TOO_MUCH_WORK, IN_TORCH, CALLS + "symmetry_score`", "calls `toyattn.symmetry.traces.traces`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_trace_solution_in_float32_and_by_other_cheap_orders_passes(capsys):
    def float32_trace(W_q, W_k):
        return score_by_trace_linear(W_q.float(), W_k.float())

    def cheap_einsum_order(W_q, W_k):  # one product at a time, each d_head x d_head
        C = torch.einsum("ai,bi->ab", W_k, W_q)
        A, B = torch.einsum("ai,bi->ab", W_q, W_q), torch.einsum("ai,bi->ab", W_k, W_k)
        return 0.5 * (1 + torch.trace(C @ C) / (A * B).sum())

    def trace_of_products(W_q, W_k):  # torch.trace of A @ B, and .item() at the end
        A, B, C = W_q @ W_q.T, W_k @ W_k.T, W_k @ W_q.T
        return 0.5 * (1 + torch.trace(C @ C).item() / torch.trace(A @ B).item())

    def three_operand_einsums(W_q, W_k):  # each contracts a d_h x d_h product with two thin maps
        A, C = W_q @ W_q.T, W_k @ W_q.T
        return 0.5 * (1 + torch.einsum("ij,ja,ia->", C, W_k, W_q) / torch.einsum("ij,ja,ia->", A, W_k, W_k))

    def matmul_chains_with_a_debug_print(W_q, W_k):
        tr_mm = torch.trace(W_k @ W_q.T @ W_k @ W_q.T)  # left to right: every product stays d_h x d_h
        norm2 = torch.trace(W_q @ W_q.T @ W_k @ W_k.T)
        print("debug:", tr_mm, norm2)
        return 0.5 * (1 + tr_mm / norm2)

    def multi_dot(W_q, W_k):
        tr_mm = torch.trace(torch.linalg.multi_dot([W_k, W_q.T, W_k, W_q.T]))
        norm2 = torch.trace(torch.linalg.multi_dot([W_q, W_q.T, W_k, W_k.T]))
        return 0.5 * (1 + tr_mm / norm2)

    fns = (float32_trace, cheap_einsum_order, trace_of_products, three_operand_einsums,
           matmul_chains_with_a_debug_print, multi_dot)
    for fn in fns:
        checks.check_symmetry_score_trace(fn)
    checks.check_symmetry_score_definition(lambda W_q, W_k, gamma: signed_with_gain(W_q.float(), W_k.float(), gamma.float()))
    assert capsys.readouterr().out.count("PASSED") == len(fns) + 1


def key_with_score(W_q, r, generator):
    X = torch.randn(W_q.shape[1], W_q.shape[1], generator=generator, dtype=W_q.dtype)
    skew = X - X.T
    a = r**0.5 / (W_q @ W_q.T).norm()  # symmetric part W_q W_q^T, weight a
    b = (1 - r) ** 0.5 / (W_q @ skew @ W_q.T).norm()  # skew part W_q S W_q^T, weight b
    return W_q @ (a * torch.eye(W_q.shape[1], dtype=W_q.dtype) + b * skew).T


def test_check_key_with_score(capsys, tmp_path_factory, monkeypatch):
    def skew_key_only(W_q, r, generator):  # the lecture's skew-symmetric key, whatever r
        X = torch.randn(W_q.shape[1], W_q.shape[1], generator=generator, dtype=W_q.dtype)
        return W_q @ (X - X.T).T

    def weights_r_and_one_minus_r(W_q, r, generator):  # ignores the two parts' norms
        X = torch.randn(W_q.shape[1], W_q.shape[1], generator=generator, dtype=W_q.dtype)
        return W_q @ (r * torch.eye(W_q.shape[1], dtype=W_q.dtype) + (1 - r) * (X - X.T)).T

    def normalised_parts_weights_r(W_q, r, generator):  # parts of equal norm, weights r and 1 - r: r^2/(r^2 + (1-r)^2)
        X = torch.randn(W_q.shape[1], W_q.shape[1], generator=generator, dtype=W_q.dtype)
        skew = X - X.T
        a = r / (W_q @ W_q.T).norm()
        b = (1 - r) / (W_q @ skew @ W_q.T).norm()
        return W_q @ (a * torch.eye(W_q.shape[1], dtype=W_q.dtype) + b * skew).T

    def weights_swapped(W_q, r, generator):
        return key_with_score(W_q, 1 - r, generator)

    def zero_key(W_q, r, generator):
        return torch.zeros_like(W_q)

    def wrong_shape(W_q, r, generator):
        return key_with_score(W_q, r, generator).T

    def library(W_q, r, generator):
        return scores.symmetric_key(W_q, generator=generator) * r**0.5 + scores.skew_symmetric_key(W_q, generator=generator)

    verify_check(
        checks.check_key_with_score,
        key_with_score,
        [skew_key_only, weights_r_and_one_minus_r, normalised_parts_weights_r, weights_swapped, zero_key, wrong_shape,
         library],
        capsys,
        messages=["ignores the target", "share of squared norms", "use weights sqrt(r) and sqrt(1 - r)", "swapped", "(almost) zero", "must have W_q's shape",
                  CALLS],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_check_batched_symmetry_scores(capsys, tmp_path_factory, monkeypatch):
    def heads_and_layers_swapped(W_Q, W_K):
        return batched_scores(W_Q, W_K).T

    def layer_average(W_Q, W_K):
        return batched_scores(W_Q, W_K).mean(dim=1, keepdim=True).expand(W_Q.shape[0], W_Q.shape[1])

    def by_definition_builds_m(W_Q, W_K):
        M = W_Q @ W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1).transpose(-1, -2)
        return ((M + M.transpose(-1, -2)) / 2).pow(2).sum((-1, -2)) / M.pow(2).sum((-1, -2))

    def loop_building_each_m(W_Q, W_K):  # the wrong answer of issue 12: one d x d M per head
        W_K = W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1)
        out = torch.empty(W_Q.shape[:2], dtype=torch.float64)
        for layer in range(W_Q.shape[0]):
            for head in range(W_Q.shape[1]):
                out[layer, head] = score_by_definition(W_Q[layer, head], W_K[layer, head])
        return out

    def loop_over_heads_trace_form(W_Q, W_K):  # never builds M, but not batched
        W_K = W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1)
        return torch.stack([torch.stack([score_by_trace(q, k) for q, k in zip(Ql, Kl, strict=True)])
                            for Ql, Kl in zip(W_Q, W_K, strict=True)])

    def loop_over_query_heads_layers_batched(W_Q, W_K):  # one loop, over the query heads only
        group = W_Q.shape[1] // W_K.shape[1]
        return torch.stack([batched_scores(W_Q[:, h:h + 1], W_K[:, h // group:h // group + 1])[:, 0]
                            for h in range(W_Q.shape[1])], 1)

    def helper_called_per_head(W_Q, W_K):  # a three-line helper, called once per query head
        def one(q, k):
            A, B, C = q.transpose(-1, -2) @ q, k.transpose(-1, -2) @ k, k.transpose(-1, -2) @ q
            return 0.5 * (1 + (C * C.transpose(-1, -2)).sum((-1, -2)) / (A * B).sum((-1, -2)))

        group = W_Q.shape[1] // W_K.shape[1]
        return torch.stack([one(W_Q[:, h], W_K[:, h // group]) for h in range(W_Q.shape[1])], 1)

    def numpy_loop_over_heads(W_Q, W_K):
        Q, K = W_Q.numpy(), W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1).numpy()
        out = np.empty(Q.shape[:2])
        for index in np.ndindex(*Q.shape[:2]):
            A, B, C = Q[index].T @ Q[index], K[index].T @ K[index], K[index].T @ Q[index]
            out[index] = 0.5 * (1 + np.trace(C @ C) / np.trace(A @ B))
        return out

    def numpy_batched_definition(W_Q, W_K):  # M for every head, in NumPy
        Q, K = W_Q.numpy(), W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1).numpy()
        M = Q @ K.swapaxes(-1, -2)
        return ((M + M.swapaxes(-1, -2)) ** 2 / 4).sum((-1, -2)) / (M**2).sum((-1, -2))

    def wrong_einsum_pairs_heads(W_Q, W_K):  # C built from heads h and h' (a full cross product), then summed
        W_K = W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1)
        C = torch.einsum("lhdi,lgdj->lhij", W_K, W_Q)
        A = torch.einsum("lhdi,lhdj->lhij", W_Q, W_Q)
        B = torch.einsum("lhdi,lhdj->lhij", W_K, W_K)
        return 0.5 * (1 + torch.einsum("lhij,lhji->lh", C, C) / torch.einsum("lhij,lhji->lh", A, B))

    def signed(W_Q, W_K):
        return 2 * batched_scores(W_Q, W_K) - 1

    def four_operand_einsum(W_Q, W_K):  # batched and M-free on the surface: M is built inside einsum
        W_K = W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1)
        tr_mm = torch.einsum("lhia,lhja,lhjb,lhib->lh", W_Q, W_K, W_Q, W_K)
        norm2 = torch.einsum("lhia,lhja,lhib,lhjb->lh", W_Q, W_K, W_Q, W_K)
        return 0.5 * (1 + tr_mm / norm2)

    def interleaved_groups(W_Q, W_K):  # query head h with key head h % n_kv
        index = torch.arange(W_Q.shape[1]) % W_K.shape[1]
        return batched_scores(W_Q, W_K[:, index])

    def library(W_Q, W_K):
        return symmetry_score(W_Q, W_K)

    verify_check(
        checks.check_batched_symmetry_scores,
        batched_scores,
        [heads_and_layers_swapped, layer_average, by_definition_builds_m, loop_building_each_m,
         loop_over_heads_trace_form, loop_over_query_heads_layers_batched, helper_called_per_head,
         numpy_loop_over_heads, numpy_batched_definition, wrong_einsum_pairs_heads,
         signed, four_operand_einsum, interleaved_groups, library],
        capsys,
        messages=["[heads, layers]", "layer's mean head score", BUILDS_M, BUILDS_M, LOOP, LOOP, LOOP, IN_TORCH, IN_TORCH, None, SIGNED,
                  TOO_MUCH_WORK, "interleaved", CALLS + "symmetry_score`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_batched_check_accepts_other_batched_methods(capsys):
    def without_copying_keys(W_Q, W_K):  # query heads as [layers, key heads, group, ...]
        L, H, d, dh = W_Q.shape
        Q = W_Q.reshape(L, W_K.shape[1], H // W_K.shape[1], d, dh)
        A = torch.einsum("lkgdi,lkgdj->lkgij", Q, Q)
        B = torch.einsum("lkdi,lkdj->lkij", W_K, W_K)
        C = torch.einsum("lkdi,lkgdj->lkgij", W_K, Q)
        return (0.5 * (1 + torch.einsum("lkgij,lkgji->lkg", C, C) / torch.einsum("lkgij,lkji->lkg", A, B))).reshape(L, H)

    def with_matmul(W_Q, W_K):
        W_K = W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1)
        Qt, Kt = W_Q.transpose(-1, -2), W_K.transpose(-1, -2)
        A, B, C = Qt @ W_Q, Kt @ W_K, Kt @ W_Q
        return 0.5 * (1 + (C * C.transpose(-1, -2)).sum((-1, -2)) / (A * B).sum((-1, -2)))

    def with_vmap(W_Q, W_K):
        W_K = W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1)
        return torch.vmap(torch.vmap(score_by_trace))(W_Q, W_K)

    def loop_over_key_head_groups(W_Q, W_K):  # a loop over the kv_heads groups, each batched
        group = W_Q.shape[1] // W_K.shape[1]
        parts = []
        for k in range(W_K.shape[1]):
            Q, K = W_Q[:, k * group:(k + 1) * group], W_K[:, k:k + 1]
            A, B, C = Q.transpose(-1, -2) @ Q, K.transpose(-1, -2) @ K, K.transpose(-1, -2) @ Q
            parts.append(0.5 * (1 + (C * C.transpose(-1, -2)).sum((-1, -2)) / (A * B).sum((-1, -2))))
        return torch.cat(parts, 1)

    def loop_over_layers(W_Q, W_K):
        return torch.stack([batched_scores(q[None], k[None])[0] for q, k in zip(W_Q, W_K, strict=True)])

    def diagonal_sum(W_Q, W_K):
        W_K = W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1)
        Qt, Kt = W_Q.transpose(-1, -2), W_K.transpose(-1, -2)
        A, B, C = Qt @ W_Q, Kt @ W_K, Kt @ W_Q
        return 0.5 * (1 + (C @ C).diagonal(dim1=-2, dim2=-1).sum(-1) / (A @ B).diagonal(dim1=-2, dim2=-1).sum(-1))

    fns = (without_copying_keys, with_matmul, with_vmap, loop_over_key_head_groups, loop_over_layers, diagonal_sum)
    for fn in fns:
        checks.check_batched_symmetry_scores(fn)
    assert capsys.readouterr().out.count("PASSED") == len(fns)


def layer_score(W_Q, W_K):  # heads side by side: M_layer = Q K^T, then the trace form
    Q, K = W_Q.transpose(0, 1).flatten(1), W_K.transpose(0, 1).flatten(1)  # [d_model, heads * d_head]
    return score_by_trace(Q, K)


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

    def reshaped_without_transpose(W_Q, W_K):  # [heads, d, dh] -> [d, heads * dh]: rows of heads mixed
        H, d, dh = W_Q.shape
        return score_by_trace(W_Q.reshape(d, H * dh), W_K.reshape(d, H * dh))

    def builds_the_layers_m(W_Q, W_K):
        M = (W_Q @ W_K.transpose(-1, -2)).sum(0)
        return ((M + M.T) / 2).pow(2).sum() / M.pow(2).sum()

    def four_operand_einsum(W_Q, W_K):
        Q, K = W_Q.transpose(0, 1).flatten(1), W_K.transpose(0, 1).flatten(1)
        return 0.5 * (1 + torch.einsum("ia,ja,jb,ib->", Q, K, Q, K) / torch.einsum("ia,ja,ib,jb->", Q, K, Q, K))

    def sum_of_small_products(W_Q, W_K):  # sum_h W_Q[h]^T W_K[h]: d_head x d_head
        M = (W_Q.transpose(-1, -2) @ W_K).sum(0)
        return ((M + M.T) / 2).pow(2).sum() / M.pow(2).sum()

    def library(W_Q, W_K):
        return scores.layer_symmetry_score(W_Q, W_K)

    verify_check(
        checks.check_layer_symmetry_score,
        layer_score,
        [mean_of_head_scores, weighted_mean_of_head_scores, per_head_scores, signed, heads_stacked_along_d_model,
         reshaped_without_transpose, sum_of_small_products, builds_the_layers_m, four_operand_einsum, library],
        capsys,
        messages=["mean of the per-head scores", "weighted mean", "expected one number", SIGNED, "stacked along d_model",
         "transpose(0, 1) first", "sum_h W_Q[h]^T W_K[h]", BUILDS_M, TOO_MUCH_WORK, CALLS + "layer_symmetry_score`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_layer_check_accepts_other_methods(capsys):
    def loop_over_pairs_of_heads(W_Q, W_K):  # sum over pairs (h, h') of the cross traces
        num, den = 0.0, 0.0
        for h in range(W_Q.shape[0]):
            for k in range(W_Q.shape[0]):
                C1, C2 = W_K[h].T @ W_Q[k], W_K[k].T @ W_Q[h]
                num = num + torch.trace(C1 @ C2)
                den = den + ((W_Q[h].T @ W_Q[k]) * (W_K[h].T @ W_K[k])).sum()
        return 0.5 * (1 + num / den)

    def einsum_over_pairs_of_heads(W_Q, W_K):
        A = torch.einsum("hdi,kdj->hkij", W_Q, W_Q)  # W_Q[h]^T W_Q[k]
        B = torch.einsum("hdi,kdj->hkij", W_K, W_K)
        C = torch.einsum("hdi,kdj->hkij", W_K, W_Q)  # W_K[h]^T W_Q[k]
        num = torch.einsum("hkij,khji->", C, C)
        return 0.5 * (1 + num / (A * B).sum())

    for fn in (layer_score, loop_over_pairs_of_heads, einsum_over_pairs_of_heads):
        checks.check_layer_symmetry_score(fn)
    assert capsys.readouterr().out.count("PASSED") == 3
