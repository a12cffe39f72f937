"""Every lesson-4 check accepts the solution, rejects the stub and plausible wrong answers, in class and in
grading, and names the mistake where it is recognisable."""

from __future__ import annotations

import math

import numpy as np
import torch
from check_helpers import verify_check

from toyattn import checks
from toyattn.circuits import matching as circuit_matching
from toyattn.circuits.matching import qk_ov_matching  # imported before the check runs
from toyattn.heads.weights import HeadWeights

CALLS = "calls `toyattn.circuits.matching."


def qk_ov(model):
    l1, l2 = model.blocks[0].attn, model.blocks[1].attn
    W_qk = l2.W_Q[0] @ l2.W_K[0].T / math.sqrt(l2.W_Q.shape[-1])
    return W_qk.detach(), (l1.W_V[0] @ l1.W_O[0]).detach()


def test_check_qk_ov_from_model(capsys, tmp_path_factory, monkeypatch):
    def no_scale(model):
        W_qk, W_ov = qk_ov(model)
        return W_qk * math.sqrt(model.blocks[1].attn.W_Q.shape[-1]), W_ov

    def wrong_layers(model):  # QK of layer 1 and OV of layer 2
        l1, l2 = model.blocks[0].attn, model.blocks[1].attn
        return (l1.W_Q[0] @ l1.W_K[0].T / math.sqrt(l1.W_Q.shape[-1])).detach(), (l2.W_V[0] @ l2.W_O[0]).detach()

    def transposed_qk(model):
        W_qk, W_ov = qk_ov(model)
        return W_qk.T, W_ov

    def transposed_ov(model):  # the column-vector (nn.Linear) convention
        W_qk, W_ov = qk_ov(model)
        return W_qk, W_ov.T

    def scale_by_d_model(model):
        W_qk, W_ov = qk_ov(model)
        return W_qk / math.sqrt(model.cfg.d_model) * math.sqrt(model.blocks[1].attn.W_Q.shape[-1]), W_ov

    def last_head(model):  # head -1 instead of head 0
        l1, l2 = model.blocks[0].attn, model.blocks[1].attn
        return ((l2.W_Q[-1] @ l2.W_K[-1].T / math.sqrt(l2.W_Q.shape[-1])).detach(),
                (l1.W_V[-1] @ l1.W_O[-1]).detach())

    def only_qk(model):
        return qk_ov(model)[0]

    def library(model):
        l1, l2 = HeadWeights.from_model(model, 0), HeadWeights.from_model(model, 1)
        return circuit_matching.qk_circuit(l2.W_Q[0], l2.W_K[0]), circuit_matching.ov_circuit(l1.W_V[0], l1.W_O[0])

    verify_check(
        checks.check_qk_ov_from_model,
        qk_ov,
        [no_scale, wrong_layers, transposed_qk, transposed_ov, scale_by_d_model, last_head, only_qk, library],
        capsys,
        messages=["without the 1/sqrt(d_head)", "layer 1's QK circuit", "W_K W_Q^T", "W_O^T W_V^T", "1/sqrt(d_model)",
         "head 1's", "expected a pair", CALLS + "qk_circuit`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def matching(W_qk, W_ov, rank):
    V_qk = np.linalg.svd(W_qk)[2][:rank].T
    V_ov = np.linalg.svd(W_ov)[2][:rank].T
    return np.linalg.svd(V_qk.T @ V_ov, compute_uv=False).max()


def test_check_matching_score(capsys, tmp_path_factory, monkeypatch):
    def left_vectors_of_qk(W_qk, W_ov, rank):  # the query side instead of the key side
        return matching(W_qk.T, W_ov, rank)

    def left_vectors_of_ov(W_qk, W_ov, rank):  # what OV reads, not what it writes
        return matching(W_qk, W_ov.T, rank)

    def left_vectors_of_both(W_qk, W_ov, rank):  # the paper's column-vector recipe applied to row-vector weights
        return matching(W_qk.T, W_ov.T, rank)

    def rms_instead(W_qk, W_ov, rank):
        V_qk = np.linalg.svd(W_qk)[2][:rank].T
        V_ov = np.linalg.svd(W_ov)[2][:rank].T
        return np.sqrt(np.mean(np.linalg.svd(V_qk.T @ V_ov, compute_uv=False) ** 2))

    def rows_not_columns(W_qk, W_ov, rank):  # forgot to transpose Vt: takes coordinates, not vectors
        A = np.linalg.svd(W_qk)[2][:, :rank]
        B = np.linalg.svd(W_ov)[2][:, :rank]
        return np.linalg.svd(A.T @ B, compute_uv=False).max()

    def smallest_cosine(W_qk, W_ov, rank):
        V_qk = np.linalg.svd(W_qk)[2][:rank].T
        V_ov = np.linalg.svd(W_ov)[2][:rank].T
        return np.linalg.svd(V_qk.T @ V_ov, compute_uv=False)[-1]

    def library(W_qk, W_ov, rank):
        return qk_ov_matching(W_qk, W_ov, rank)

    verify_check(
        checks.check_matching_score,
        matching,
        [left_vectors_of_qk, left_vectors_of_ov, left_vectors_of_both, rms_instead, rows_not_columns,
         smallest_cosine, library],
        capsys,
        messages=["query side", "what W_ov reads", "left singular vectors of both", "RMS", "columns of Vt", "smallest",
         CALLS + "qk_ov_matching`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_matching_check_accepts_torch_and_a_largest_first_svd(capsys):
    def in_torch(W_qk, W_ov, rank):
        V_qk = torch.linalg.svd(torch.as_tensor(W_qk))[2][:rank].T
        V_ov = torch.linalg.svd(torch.as_tensor(W_ov))[2][:rank].T
        return torch.linalg.svdvals(V_qk.T @ V_ov)[0]

    checks.check_matching_score(in_torch)
    assert "PASSED" in capsys.readouterr().out


def principal_cosines_of_random_pairs(d, rank, n_runs, seed=0):
    """Cosines [n_runs, rank] of pairs of random subspaces, vectorised (the tests run this many times).
    The QR basis of a Gaussian [d, rank] block spans a uniformly random subspace, as the top singular
    vectors of a Gaussian [d, d] matrix do."""
    rng = np.random.default_rng(seed)
    U1 = np.linalg.qr(rng.standard_normal((n_runs, d, rank)))[0]
    U2 = np.linalg.qr(rng.standard_normal((n_runs, d, rank)))[0]
    return np.linalg.svd(U1.swapaxes(-1, -2) @ U2, compute_uv=False)


def baseline(d, rank, n_runs):
    return float(principal_cosines_of_random_pairs(d, rank, n_runs)[:, 0].mean())


def test_check_random_matching_baseline(capsys, tmp_path_factory, monkeypatch):
    def same_matrix_twice(d, rank, n_runs):
        return 1.0

    def rms_instead(d, rank, n_runs):
        return float(np.sqrt((principal_cosines_of_random_pairs(d, rank, n_runs) ** 2).mean(axis=1)).mean())

    def single_vectors(d, rank, n_runs):  # rank ignored: cosine of two random vectors
        return baseline(d, 1, n_runs)

    def raw_gaussian_columns(d, rank, n_runs):  # not orthonormal: "cosines" far above 1
        rng = np.random.default_rng(0)
        A, B = rng.standard_normal((n_runs, d, rank)), rng.standard_normal((n_runs, d, rank))
        return float(np.linalg.svd(A.swapaxes(-1, -2) @ B, compute_uv=False)[:, 0].mean())

    def one_loop_with_left_vectors(d, rank, n_runs):  # the notebook's loop, for one slow but right version
        rng = np.random.default_rng(0)
        scores = []
        for _ in range(n_runs):
            U1 = np.linalg.svd(rng.standard_normal((d, d)))[0][:, :rank]
            U2 = np.linalg.svd(rng.standard_normal((d, d)))[0][:, :rank]
            scores.append(np.linalg.svd(U1.T @ U2, compute_uv=False).max())
        return float(np.mean(scores))

    def library(d, rank, n_runs):
        return circuit_matching.random_baseline(d, rank, n_runs)[0]

    checks.check_random_matching_baseline(one_loop_with_left_vectors)
    verify_check(
        checks.check_random_matching_baseline,
        baseline,
        [same_matrix_twice, rms_instead, single_vectors, raw_gaussian_columns, library],
        capsys,
        messages=["with itself", "RMS", "rank 1", "cannot exceed 1", CALLS + "random_baseline`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_baseline_check_accepts_other_seeds_and_random_subspaces(capsys):
    def qr_subspaces(d, rank, n_runs):  # a random subspace straight from QR: the same distribution
        rng = np.random.default_rng(2024)
        A = np.linalg.qr(rng.standard_normal((n_runs, d, rank)))[0]
        B = np.linalg.qr(rng.standard_normal((n_runs, d, rank)))[0]
        return float(np.linalg.svd(A.swapaxes(-1, -2) @ B, compute_uv=False)[:, 0].mean())

    for seed in range(1, 6):
        checks.check_random_matching_baseline(
            lambda d, r, n, seed=seed: float(principal_cosines_of_random_pairs(d, r, n, seed)[:, 0].mean()))
    checks.check_random_matching_baseline(qr_subspaces)
    assert capsys.readouterr().out.count("PASSED") == 6


def zscore(M):
    return (np.diag(M).mean() - M.mean()) / M.std()


def test_check_diagonal_zscore(capsys, tmp_path_factory, monkeypatch):
    def in_torch_with_its_default_std(M):
        M = torch.as_tensor(M)
        return (M.diagonal().mean() - M.mean()) / M.std()

    verify_check(
        checks.check_diagonal_zscore,
        zscore,
        [
            lambda M: (np.diag(M).mean() - M.mean()) / np.diag(M).std(),  # std of the diagonal
            lambda M: (np.diag(M).mean() - M.mean()) / M[~np.eye(len(M), dtype=bool)].std(),  # std off the diagonal
            lambda M: np.diag(M).mean() / M.std(),  # forgot to subtract the mean
            lambda M: (np.diag(M).mean() - M[~np.eye(len(M), dtype=bool)].mean()) / M.std(),  # off-diagonal mean
            lambda M: (np.diag(M).mean() - M.mean()) / M.std(ddof=1),  # sample std
            in_torch_with_its_default_std,  # the same mistake: torch.std is the sample std
            lambda M: (np.trace(M) - M.mean()) / M.std(),  # the trace, not the mean of the diagonal
            lambda M: circuit_matching.diagonal_zscore(M),
        ],
        capsys,
        messages=["diagonal only", "off-diagonal entries only", "without subtracting", "off-diagonal mean", "sample standard deviation",
         "sample standard deviation", "trace", CALLS + "diagonal_zscore`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_check_token_mismatch_ratio(capsys, tmp_path_factory, monkeypatch):
    verify_check(
        checks.check_token_mismatch_ratio,
        lambda M: np.mean(M.argmax(axis=1) != np.arange(len(M))),
        [
            lambda M: np.mean(M.argmax(axis=0) != np.arange(len(M))),  # columns instead of rows
            lambda M: np.mean(M.argmax(axis=1) == np.arange(len(M))),  # the match ratio
            lambda M: float(np.sum(M.argmax(axis=1) != np.arange(len(M)))),  # a count, not a share
            lambda M: np.mean(M.argmin(axis=1) != np.arange(len(M))),  # argmin
            lambda M: circuit_matching.token_mismatch_ratio(M),
        ],
        capsys,
        messages=["*columns*", "that match", "a count", "argmin", CALLS + "token_mismatch_ratio`"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )
