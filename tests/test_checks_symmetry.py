"""Lesson 3's exercise checks accept the solutions and reject the stub and plausible wrong answers."""

from __future__ import annotations

import torch
from check_helpers import verify_check

from toyattn import checks


def score_by_definition(W_q, W_k):
    M = W_q @ W_k.T
    return ((M + M.T) / 2).pow(2).sum() / M.pow(2).sum()


def score_by_trace(W_q, W_k):
    A, B, C = W_q.T @ W_q, W_k.T @ W_k, W_k.T @ W_q
    return 0.5 * (1 + torch.einsum("ij,ji->", C, C) / torch.einsum("ij,ji->", A, B))


def batched_scores(W_Q, W_K):
    A = torch.einsum("lhdi,lhdj->lhij", W_Q, W_Q)
    B = torch.einsum("lhdi,lhdj->lhij", W_K, W_K)
    C = torch.einsum("lhdi,lhdj->lhij", W_K, W_Q)
    return 0.5 * (1 + torch.einsum("lhij,lhji->lh", C, C) / torch.einsum("lhij,lhji->lh", A, B))


def skew_key(W_q, generator):
    X = torch.randn(W_q.shape[1], W_q.shape[1], generator=generator, dtype=W_q.dtype)
    return W_q @ (X - X.T).T


def test_check_symmetry_score_definition(capsys):
    def forgot_squares(W_q, W_k):
        M = W_q @ W_k.T
        return ((M + M.T) / 2).norm() / M.norm()

    def symmetric_part_of_m_with_itself(W_q, W_k):
        M = W_q @ W_k.T
        return ((M + M) / 2).pow(2).sum() / M.pow(2).sum()  # always 1

    def signed_instead_of_r(W_q, W_k):
        return 2 * score_by_definition(W_q, W_k) - 1

    verify_check(
        checks.check_symmetry_score_definition,
        score_by_definition,
        [forgot_squares, symmetric_part_of_m_with_itself, signed_instead_of_r],
        capsys,
    )


def test_check_symmetry_score_trace(capsys):
    def trace_of_c_transpose_c(W_q, W_k):  # tr(C^T C) = ||C||^2 is not tr(C C)
        A, B, C = W_q.T @ W_q, W_k.T @ W_k, W_k.T @ W_q
        return 0.5 * (1 + torch.einsum("ij,ij->", C, C) / torch.einsum("ij,ji->", A, B))

    def right_value_but_builds_m(W_q, W_k):
        return score_by_definition(W_q, W_k)

    def forgot_the_half(W_q, W_k):
        A, B, C = W_q.T @ W_q, W_k.T @ W_k, W_k.T @ W_q
        return 1 + torch.einsum("ij,ji->", C, C) / torch.einsum("ij,ji->", A, B)

    verify_check(
        checks.check_symmetry_score_trace,
        score_by_trace,
        [trace_of_c_transpose_c, right_value_but_builds_m, forgot_the_half],
        capsys,
    )


def test_check_skew_symmetric_key(capsys):
    def symmetric_instead(W_q, generator):
        return W_q.clone()

    def s_not_skew(W_q, generator):
        X = torch.randn(W_q.shape[1], W_q.shape[1], generator=generator, dtype=W_q.dtype)
        return W_q @ X.T

    def zero_key(W_q, generator):
        return torch.zeros_like(W_q)

    def wrong_shape(W_q, generator):
        X = torch.randn(W_q.shape[0], W_q.shape[0], generator=generator, dtype=W_q.dtype)
        return (X - X.T) @ W_q @ torch.ones(W_q.shape[1], 1, dtype=W_q.dtype)

    verify_check(
        checks.check_skew_symmetric_key,
        skew_key,
        [symmetric_instead, s_not_skew, zero_key, wrong_shape],
        capsys,
    )


def test_check_batched_symmetry_scores(capsys):
    def heads_and_layers_swapped(W_Q, W_K):
        return batched_scores(W_Q, W_K).T

    def layer_average(W_Q, W_K):
        return batched_scores(W_Q, W_K).mean(dim=1, keepdim=True).expand(W_Q.shape[0], W_Q.shape[1])

    def by_definition_builds_m(W_Q, W_K):
        M = W_Q @ W_K.transpose(-1, -2)
        return ((M + M.transpose(-1, -2)) / 2).pow(2).sum((-1, -2)) / M.pow(2).sum((-1, -2))

    def wrong_einsum_pairs_heads(W_Q, W_K):  # C built from heads h and h' (a full cross product), then summed
        C = torch.einsum("lhdi,lgdj->lhij", W_K, W_Q)
        A = torch.einsum("lhdi,lhdj->lhij", W_Q, W_Q)
        B = torch.einsum("lhdi,lhdj->lhij", W_K, W_K)
        return 0.5 * (1 + torch.einsum("lhij,lhji->lh", C, C) / torch.einsum("lhij,lhji->lh", A, B))

    verify_check(
        checks.check_batched_symmetry_scores,
        batched_scores,
        [heads_and_layers_swapped, layer_average, by_definition_builds_m, wrong_einsum_pairs_heads],
        capsys,
    )
