"""Every lesson-4 check accepts the solution, rejects the stub and plausible wrong answers."""

from __future__ import annotations

import math

import numpy as np
from check_helpers import verify_check

from toyattn import checks


def qk_ov(model):
    l1, l2 = model.blocks[0].attn, model.blocks[1].attn
    W_qk = l2.W_Q[0] @ l2.W_K[0].T / math.sqrt(l2.W_Q.shape[-1])
    return W_qk, l1.W_V[0] @ l1.W_O[0]


def test_check_qk_ov_from_model(capsys):
    def no_scale(model):
        W_qk, W_ov = qk_ov(model)
        return W_qk * math.sqrt(model.blocks[1].attn.W_Q.shape[-1]), W_ov

    def wrong_layers(model):  # QK of layer 1 and OV of layer 2
        l1, l2 = model.blocks[0].attn, model.blocks[1].attn
        return l1.W_Q[0] @ l1.W_K[0].T / math.sqrt(l1.W_Q.shape[-1]), l2.W_V[0] @ l2.W_O[0]

    def transposed_qk(model):
        W_qk, W_ov = qk_ov(model)
        return W_qk.T, W_ov

    def scale_by_d_model(model):
        W_qk, W_ov = qk_ov(model)
        d_head, d_model = model.blocks[1].attn.W_Q.shape[-1], model.cfg.d_model
        return W_qk * math.sqrt(d_head / d_model), W_ov

    verify_check(checks.check_qk_ov_from_model, qk_ov, [no_scale, wrong_layers, transposed_qk, scale_by_d_model], capsys)


def matching(W_qk, W_ov, rank):
    V_qk = np.linalg.svd(W_qk)[2][:rank].T
    V_ov = np.linalg.svd(W_ov)[2][:rank].T
    return np.linalg.svd(V_qk.T @ V_ov, compute_uv=False).max()


def test_check_matching_score(capsys):
    def left_vectors_of_qk(W_qk, W_ov, rank):  # the query side instead of the key side
        return matching(W_qk.T, W_ov, rank)

    def left_vectors_of_ov(W_qk, W_ov, rank):  # what OV reads, not what it writes
        return matching(W_qk, W_ov.T, rank)

    def rms_instead(W_qk, W_ov, rank):
        V_qk = np.linalg.svd(W_qk)[2][:rank].T
        V_ov = np.linalg.svd(W_ov)[2][:rank].T
        return np.sqrt(np.mean(np.linalg.svd(V_qk.T @ V_ov, compute_uv=False) ** 2))

    def rows_not_columns(W_qk, W_ov, rank):  # forgot to transpose Vt: takes coordinates, not vectors
        A = np.linalg.svd(W_qk)[2][:, :rank]
        B = np.linalg.svd(W_ov)[2][:, :rank]
        return np.linalg.svd(A.T @ B, compute_uv=False).max()

    verify_check(checks.check_matching_score, matching,
                 [left_vectors_of_qk, left_vectors_of_ov, rms_instead, rows_not_columns], capsys)


def baseline(d, rank, n_runs):
    rng = np.random.default_rng(0)
    scores = []
    for _ in range(n_runs):
        U1 = np.linalg.svd(rng.standard_normal((d, d)))[0][:, :rank]
        U2 = np.linalg.svd(rng.standard_normal((d, d)))[0][:, :rank]
        scores.append(np.linalg.svd(U1.T @ U2, compute_uv=False).max())
    return float(np.mean(scores))


def test_check_random_matching_baseline(capsys):
    def same_matrix_twice(d, rank, n_runs):
        return 1.0

    def rms_instead(d, rank, n_runs):
        rng = np.random.default_rng(0)
        out = []
        for _ in range(n_runs):
            U1 = np.linalg.svd(rng.standard_normal((d, d)))[0][:, :rank]
            U2 = np.linalg.svd(rng.standard_normal((d, d)))[0][:, :rank]
            out.append(np.sqrt(np.mean(np.linalg.svd(U1.T @ U2, compute_uv=False) ** 2)))
        return float(np.mean(out))

    def single_vectors(d, rank, n_runs):  # rank ignored: cosine of two random vectors
        return baseline(d, 1, n_runs)

    verify_check(checks.check_random_matching_baseline, baseline, [same_matrix_twice, rms_instead, single_vectors], capsys)


def zscore(M):
    return (np.diag(M).mean() - M.mean()) / M.std()


def test_check_diagonal_zscore(capsys):
    verify_check(
        checks.check_diagonal_zscore,
        zscore,
        [
            lambda M: (np.diag(M).mean() - M.mean()) / np.diag(M).std(),  # std of the diagonal
            lambda M: np.diag(M).mean() / M.std(),  # forgot to subtract the mean
            lambda M: (np.diag(M).mean() - M[~np.eye(len(M), dtype=bool)].mean()) / M.std(),  # off-diagonal mean
        ],
        capsys,
    )


def test_check_token_mismatch_ratio(capsys):
    verify_check(
        checks.check_token_mismatch_ratio,
        lambda M: np.mean(M.argmax(axis=1) != np.arange(len(M))),
        [
            lambda M: np.mean(M.argmax(axis=0) != np.arange(len(M))),  # columns instead of rows
            lambda M: np.mean(M.argmax(axis=1) == np.arange(len(M))),  # the match ratio
            lambda M: float(np.sum(M.argmax(axis=1) != np.arange(len(M)))),  # a count, not a share
        ],
        capsys,
    )
