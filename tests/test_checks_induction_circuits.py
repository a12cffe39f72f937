"""Lesson 5's checks: each accepts a right answer (written differently from the course's), and rejects
plausible wrong ones in class and in grading, naming the mistake."""

from __future__ import annotations

import numpy as np
import torch
from check_helpers import verify_check

from toyattn import checks


def good_ablate(model, tokens, layer, head, mode):
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(tokens, names_filter=name)
    replacement = torch.zeros_like(cache[name][:, :, head]) if mode == "zero" else cache[name][:, :, head].mean(0).expand_as(cache[name][:, :, head])

    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = replacement
        return z

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])


def pattern_ablate(model, tokens, layer, head, mode):
    """Another right way for zero ablation: a zero attention row gives z = 0."""
    if mode == "mean":
        return good_ablate(model, tokens, layer, head, mode)

    def hook(p, hook):
        p = p.clone()
        p[:, head] = 0
        return p

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_pattern", hook)])


def whole_layer(model, tokens, layer, head, mode):
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_attn_out", lambda x, hook: 0 * x)])


def global_mean(model, tokens, layer, head, mode):
    if mode == "zero":
        return good_ablate(model, tokens, layer, head, mode)
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(tokens, names_filter=name)
    mean = cache[name][:, :, head].mean(dim=(0, 1))

    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = mean
        return z

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])


def wrong_axis(model, tokens, layer, head, mode):
    name = f"blocks.{layer}.attn.hook_z"

    def hook(z, hook):
        z = z.clone()
        z[:, head] = 0
        return z

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])


def always_zero(model, tokens, layer, head, mode):
    return good_ablate(model, tokens, layer, head, "zero")


def leaky_ablate(model, tokens, layer, head, mode):
    """Right numbers, but the hook is attached with add_hook and never removed."""
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(tokens, names_filter=name)
    own = cache[name][:, :, head]
    replacement = torch.zeros_like(own) if mode == "zero" else own.mean(0).expand_as(own)

    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = replacement
        return z

    model.hook_points[name].add_hook(hook)
    with torch.no_grad():
        return model(tokens)


def weights_zeroed(model, tokens, layer, head, mode):
    """Zero ablation by editing the weights: right numbers, but the model stays edited afterwards."""
    if mode == "mean":
        return good_ablate(model, tokens, layer, head, mode)
    with torch.no_grad():
        model.blocks[layer].attn.W_O[head] = 0
        return model(tokens)


def test_check_ablate_head(capsys, tmp_path_factory, monkeypatch):
    from toyattn.circuits.ablation import ablate_head

    verify_check(
        checks.check_ablate_head,
        good_ablate,
        [whole_layer, global_mean, wrong_axis, always_zero, lambda *a: ablate_head(*a), leaky_ablate,
         weights_zeroed],
        capsys,
        messages=["whole layer's output silenced", "one mean over the batch and all positions", "wrong axis",
                  "the zero ablation; this case asks for mean", "holds the course's answer",
                  "hooks still attached to ['blocks.", "your function changed the model"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )
    checks.check_ablate_head(pattern_ablate)
    assert "PASSED" in capsys.readouterr().out


def good_kcomp(W_ov, W_qk):
    W_ov, W_qk = np.asarray(W_ov), np.asarray(W_qk)
    return np.sqrt(np.sum((W_qk @ W_ov.T) ** 2)) / np.sqrt(np.sum(W_ov**2) * np.sum(W_qk**2))


def test_check_k_composition(capsys, tmp_path_factory, monkeypatch):
    from toyattn.circuits.composition import k_composition

    verify_check(
        checks.check_k_composition,
        good_kcomp,
        [
            lambda A, B: np.linalg.norm(A @ B) / (np.linalg.norm(A) * np.linalg.norm(B)),  # Q-composition
            lambda A, B: np.linalg.norm(A @ B.T),  # not normalised
            lambda A, B: np.linalg.norm(B @ A) / (np.linalg.norm(A) * np.linalg.norm(B)),  # wrong order
            lambda A, B: np.linalg.norm(A @ B.T) / (np.linalg.norm(A, 2) * np.linalg.norm(B, 2)),  # spectral norms
            lambda A, B: k_composition(A, B),
        ],
        capsys,
        messages=["Q-composition", "without dividing", "wrong order", "spectral norms", "holds the course's answer"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )
    checks.check_k_composition(lambda A, B: float(torch.linalg.matrix_norm(torch.tensor(A) @ torch.tensor(B).T)
                                                  / torch.linalg.matrix_norm(torch.tensor(A))
                                                  / torch.linalg.matrix_norm(torch.tensor(B))))


def good_scores(patterns, length):
    T = patterns.shape[-1]
    prev = np.zeros(patterns.shape[0:3:2])
    ind = np.zeros_like(prev)
    for t in range(T - length, T):
        prev += patterns[:, :, :, t, t - 1].mean(1).numpy() / length
        ind += patterns[:, :, :, t, t - length + 1].mean(1).numpy() / length
    return prev, ind


def offset_scores(prev_offset, ind_offset, start):
    def fn(patterns, length):
        T = patterns.shape[-1]
        q = torch.arange(start(T, length), T)
        return (patterns[..., q, q - prev_offset].mean(dim=(1, 3)),
                patterns[..., q, q - ind_offset(length)].mean(dim=(1, 3)))
    return fn


def test_check_head_scores(capsys, tmp_path_factory, monkeypatch):
    second = lambda T, L: T - L  # noqa: E731
    verify_check(
        checks.check_head_scores,
        good_scores,
        [
            offset_scores(1, lambda L: L, second),  # duplicate-token head
            offset_scores(1, lambda L: L - 1, lambda T, L: L),  # forgot the prefix
            offset_scores(2, lambda L: L - 1, second),  # t - 2
            offset_scores(1, lambda L: L - 1, lambda T, L: T - L + 1),  # the second copy's first query left out
            lambda p, L: tuple(s.T for s in good_scores(p, L)),  # [heads, layers]
            lambda p, L: good_scores(p, L)[::-1],  # swapped outputs
        ],
        capsys,
        messages=["duplicate-token head", "the prefix token shifts it", "t - 2", "its first token included", "expected (", None],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def good_patch(model, tokens, source_tokens, layer, head, where):
    """Written differently from the check: the head's output read from the source run, mixed in with torch.where."""
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(source_tokens, names_filter=name)

    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = torch.where(where[..., None], cache[name][:, :, head], z[:, :, head])
        return z

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])


def every_head(model, tokens, source_tokens, layer, head, where):
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(source_tokens, names_filter=name)

    def hook(z, hook):
        z = z.clone()
        z[where] = cache[name][where]  # [batch, pos] mask: all heads at those positions
        return z

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])


def leaky_patch(model, tokens, source_tokens, layer, head, where):
    """Right numbers, but registered on the module with torch's register_forward_hook and never removed."""
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(source_tokens, names_filter=name)

    def hook(module, inputs, z):
        z = z.clone()
        z[:, :, head] = torch.where(where[..., None], cache[name][:, :, head], z[:, :, head])
        return z

    model.hook_points[name].register_forward_hook(hook)
    with torch.no_grad():
        return model(tokens)


def test_check_patch_head(capsys, tmp_path_factory, monkeypatch):
    every_position = lambda m, t, s, layer, head, where: good_patch(m, t, s, layer, head, torch.ones_like(where))  # noqa: E731
    verify_check(
        checks.check_patch_head,
        good_patch,
        [
            lambda m, t, s, layer, head, where: good_patch(m, s, t, layer, head, where),  # corrupted into clean
            every_position,
            lambda m, t, s, layer, head, where: good_patch(m, t, s, 1 - layer, head, where),  # wrong layer
            every_head,
            leaky_patch,
        ],
        capsys,
        messages=["the other direction", "every position patched", "the other layer", "every head of the layer",
                  "hooks still attached to ['blocks."],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def good_share(patched, corrupted, clean):
    return 1 - (np.asarray(clean) - patched) / (np.asarray(clean) - corrupted)


def test_check_share_recovered(capsys, tmp_path_factory, monkeypatch):
    verify_check(
        checks.check_share_recovered,
        good_share,
        [
            lambda p, c, cl: (np.asarray(p) - cl) / (np.asarray(c) - cl),  # normalised the wrong way round
            lambda p, c, cl: np.asarray(p) / cl,  # relative to the clean run only
            lambda p, c, cl: np.clip((np.asarray(p) - c) / (np.asarray(cl) - c), 0, 1),  # clipped
            lambda p, c, cl: (np.asarray(p) - c) / np.abs(np.asarray(cl) - c),  # sign lost for a loss
            lambda p, c, cl: p,  # returns the input
            lambda p, c, cl: 0.5,  # a constant
        ],
        capsys,
        messages=["from the clean end", "divided by the clean one", "clipped", "the sign flips", None, None],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def good_keys(W_qk, r):
    # eigenvectors of W_qk^T W_qk, largest first: the same subspace as the top right singular vectors
    vals, vecs = np.linalg.eigh(np.asarray(W_qk).T @ np.asarray(W_qk))
    return vecs[:, ::-1][:, :r]


def test_check_key_subspace(capsys, tmp_path_factory, monkeypatch):
    from toyattn.circuits.head_circuits import key_directions
    from toyattn.heads.weights import HeadWeights

    verify_check(
        checks.check_key_subspace,
        good_keys,
        [
            lambda W, r: np.linalg.svd(W)[0][:, :r],  # query side
            lambda W, r: np.linalg.svd(W)[2][:, :r],  # columns of Vh
            lambda W, r: np.linalg.svd(W)[2][-r:].T,  # weakest
            lambda W, r: np.linalg.svd(W)[2][:r].T * 2.0,  # right span, not orthonormal
            lambda W, r: key_directions(HeadWeights(torch.as_tensor(W)[None], torch.eye(len(W), dtype=torch.float64)[None]))[:, :r],
        ],
        capsys,
        messages=["query side", "its rows", "weakest", "not orthonormal", "holds the course's answer"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def good_remove(model, tokens, layer, directions):
    U = torch.linalg.svd(directions.double(), full_matrices=False)[0].float()  # orthonormal, via SVD not QR

    def hook(x, hook):
        return x - (x @ U) @ U.T

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_attn_out", hook)])


def remove_with(transform, name="hook_attn_out"):
    def fn(model, tokens, layer, directions):
        with torch.no_grad():
            return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.{name}", lambda x, hook: transform(x, directions))])
    return fn


def leaky_remove(model, tokens, layer, directions):
    """Right numbers, but the hook stays attached: every later run of the model loses the subspace too."""
    Q = torch.linalg.qr(directions.double())[0].float()
    model.hook_points[f"blocks.{layer}.hook_attn_out"].add_hook(lambda x, hook: x - (x @ Q) @ Q.T)
    with torch.no_grad():
        return model(tokens)


def test_check_remove_subspace(capsys, tmp_path_factory, monkeypatch):
    from toyattn.circuits.ablation import orthonormal_basis

    Q = lambda D: torch.linalg.qr(D.double())[0].float()  # noqa: E731
    verify_check(
        checks.check_remove_subspace,
        good_remove,
        [
            remove_with(lambda x, D: x - x @ D @ D.T),  # not orthonormalised
            remove_with(lambda x, D: x @ Q(D) @ Q(D).T),  # keeps the subspace
            remove_with(lambda x, D: x - x @ Q(D) @ Q(D).T, "hook_resid_post"),  # residual stream
            remove_with(lambda x, D: x - x @ Q(D)[:, :1] @ Q(D)[:, :1].T),  # only the first direction
            remove_with(lambda x, D: x - x @ orthonormal_basis(D).float() @ orthonormal_basis(D).float().T),
            leaky_remove,
        ],
        capsys,
        messages=["not orthonormal, so that is no projection", "only the subspace kept", "whole residual stream", None,
                  "holds the course's answer", "hooks still attached to ['blocks."],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )
