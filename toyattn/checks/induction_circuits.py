"""Checks for lesson 5 (``solutions/05_induction_circuits``), in the problem set's order: ablating a head
(exercise 1), patching a head's output and the share recovered (2), a QK circuit's key subspace and removing a
subspace (3), K-composition (4), and scoring heads on repeated tokens (5).

Every check draws fresh inputs from its seed, refuses answers that call the course's own answer
(:mod:`toyattn.circuits.ablation`, :mod:`toyattn.circuits.composition`, :mod:`toyattn.circuits.detection`) and names
the common mistakes (the whole layer instead of one head, a mean over positions too, a patch in the wrong
direction or layer, a share normalised from the wrong end, Vh's columns instead of its rows, a projection
onto non-orthonormal directions or onto the subspace instead of off it, Q- instead of K-composition, a
missing normalisation, a duplicate-token offset, the prefix forgotten, the second copy's first query left
out).
"""

from __future__ import annotations

import numpy as np
import torch

from toyattn.checks.answers import Returned
from toyattn.checks.core import Case, CheckFailed, assert_close, exercise_check, torch_generator
from toyattn.checks.guards import forbid_calls_into, no_hooks_left
from toyattn.circuits import ablation, composition, detection, head_circuits, matching
from toyattn.models.transformer import Transformer, TransformerConfig

__all__ = ["check_ablate_head", "check_k_composition", "check_head_scores", "check_patch_head", "check_share_recovered",
           "check_key_subspace", "check_remove_subspace"]


def _no_library(*modules, what: str):
    where = " and ".join(m.__name__ for m in modules)
    return forbid_calls_into(*modules, hint=f"{where} holds the course's answer; the exercise is to {what} yourself.")


def _same(a, b, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def _name_the_mistake(got, expected, mistakes: dict[str, object], rtol: float = 1e-5, atol: float = 1e-6) -> str:
    matched = [m for m, v in mistakes.items() if _same(got, v, rtol, atol) and not _same(v, expected, rtol, atol)]
    return f" That is {' or '.join(matched)}." if matched else ""


# --------------------------------------------------------------------------------------------------
# Exercise 1: ablate one head
# --------------------------------------------------------------------------------------------------


def _model(seed: int, n_heads: int) -> Transformer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(TransformerConfig(vocab_size=11, max_len=10, d_model=12, n_heads=n_heads, d_head=6))
        for p in model.parameters():  # biases and norms away from their 0/1 init, so nothing hides
            p.data.normal_(0.0, 0.5)
    return model.eval()


def _ablation_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for n_heads, layer, head, mode in ((2, 0, 1, "zero"), (2, 1, 0, "mean"), (1, 0, 0, "zero"), (3, 0, 2, "mean")):
        model = _model(int(rng.integers(2**31)), n_heads)
        tokens = torch.randint(0, 11, (6, 10), generator=g)
        cases.append(Case(f"{mode} ablation of layer {layer} head {head} ({n_heads} heads per layer)",
                          (model, tokens, layer, head, mode)))
    return cases


def _ablation_mistakes(model: Transformer, tokens, layer: int, head: int, mode: str) -> dict[str, object]:
    attn_out = f"blocks.{layer}.hook_attn_out"
    z_name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(tokens, names_filter=[attn_out, z_name])

    def run(name, fn):
        with torch.no_grad():
            return model.run_with_hooks(tokens, fwd_hooks=[(name, fn)]).numpy()

    def set_head(value):
        def hook(z, hook):
            z = z.clone()
            z[:, :, head] = value
            return z
        return hook

    out = {
        "the whole layer's output silenced (every head, and the output bias), not one head":
            run(attn_out, lambda x, hook: torch.zeros_like(x)),
        "the whole layer's output replaced by its mean, not one head's":
            run(attn_out, lambda x, hook: cache[attn_out].mean(0).expand_as(x).clone()),
        "the head's output replaced by one mean over the batch and all positions (the mean is per position)":
            run(z_name, set_head(cache[z_name][:, :, head].mean(dim=(0, 1)))),
        "the mean taken over positions within each sequence, not over the batch at each position":
            run(z_name, set_head(cache[z_name][:, :, head].mean(dim=1, keepdim=True))),
        "the head indexed on the wrong axis (hook_z is [batch, pos, head, d_head])":
            run(z_name, lambda z, hook: torch.cat([z[:, :head], 0 * z[:, head:head + 1], z[:, head + 1:]], dim=1)),
    }
    if mode == "zero":
        out["the mean ablation; this case asks for zero"] = ablation.ablate_head(model, tokens, layer, head, "mean").numpy()
    else:
        out["the zero ablation; this case asks for mean"] = ablation.ablate_head(model, tokens, layer, head, "zero").numpy()
    return out


@exercise_check(cases=_ablation_cases, during=[no_hooks_left(), _no_library(ablation, what="ablate the head")])
def check_ablate_head(case: Case, got: Returned) -> None:
    """``fn(model, tokens, layer, head, mode) -> logits``: one head silenced, by zero or by its per-position batch mean."""
    model, tokens, layer, head, mode = case.args
    expected = ablation.ablate_head(model, tokens, layer, head, mode)
    try:
        assert_close(got, expected, what=case.name, rtol=1e-4, atol=1e-5, check_type=False)
    except CheckFailed as err:
        raise CheckFailed(f"{err}{_name_the_mistake(got.value, expected.numpy(), _ablation_mistakes(*case.args), 1e-4, 1e-5)}") from None


# --------------------------------------------------------------------------------------------------
# Exercise 4: K-composition
# --------------------------------------------------------------------------------------------------


def _low_rank(rng: np.random.Generator, d: int, r: int) -> np.ndarray:
    return rng.standard_normal((d, r)) @ rng.standard_normal((r, d))


def _composition_cases(rng: np.random.Generator) -> list[Case]:
    d = int(rng.integers(8, 13))
    # A writer whose output lies in the reader's key directions, not its query directions: K-composition
    # is high, Q-composition low, so the two cannot be confused.
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    keys, queries = basis[:, :2], basis[:, 2:4]
    writer = rng.standard_normal((d, 2)) @ keys.T
    reader = queries @ rng.standard_normal((2, 2)) @ keys.T
    return [
        Case("a writer that writes exactly what the reader's keys read", (writer, reader)),
        Case(f"two random rank-3 circuits, d_model {d}", (_low_rank(rng, d, 3), _low_rank(rng, d, 3))),
        Case(f"a rank-2 writer and a full-rank reader, d_model {d}", (3.0 * _low_rank(rng, d, 2), _low_rank(rng, d, d))),
    ]


@exercise_check(cases=_composition_cases, during=[_no_library(composition, what="compute the score")])
def check_k_composition(case: Case, got: Returned) -> None:
    """``fn(W_ov_writer, W_qk_reader) -> float``: the K-composition score in the course's row convention."""
    W_ov, W_qk = case.args
    if got.is_tuple or got.value.size != 1:
        raise CheckFailed(f"{case.name}: expected one number, got {'a tuple' if got.is_tuple else 'shape ' + str(got.value.shape)}.")
    value = float(got.value.reshape(()))
    expected = composition.k_composition(W_ov, W_qk)
    if _same(value, expected):
        return
    norms = np.linalg.norm(W_ov) * np.linalg.norm(W_qk)
    mistakes = {
        "Q-composition: the reader's queries, not its keys, read the writer (use W_qk transposed)":
            composition.q_composition(W_ov, W_qk),
        "||W_qk W_ov||: the product in the wrong order (the writer's output feeds the reader's key side)":
            np.linalg.norm(W_qk @ W_ov) / norms,
        "the norm of the product without dividing by the two norms":
            np.linalg.norm(W_ov @ W_qk.T),
        "V-composition-style ||W_ov W_qk^T|| divided by the spectral norms, not the Frobenius norms":
            np.linalg.norm(W_ov @ W_qk.T) / (np.linalg.norm(W_ov, 2) * np.linalg.norm(W_qk, 2)),
    }
    raise CheckFailed(f"{case.name}: expected {expected:.6g}, got {value:.6g}.{_name_the_mistake(value, expected, mistakes)}")


# --------------------------------------------------------------------------------------------------
# Exercise 5: previous-token and induction scores
# --------------------------------------------------------------------------------------------------


def _patterns(rng: np.random.Generator, n_layers: int, n_heads: int, T: int, L: int) -> torch.Tensor:
    """Random causal attention patterns ``[n_layers, batch, n_heads, T, T]`` with some heads leaning on
    the previous token, the induction offset or the duplicate token, so every mistake changes the scores."""
    scores = rng.standard_normal((n_layers, 3, n_heads, T, T))
    q, k = np.arange(T)[:, None], np.arange(T)[None, :]
    for offset, strength in ((1, 3.0), (L - 1, 4.0), (L, 2.0)):
        lean = rng.uniform(0, strength, (n_layers, 1, n_heads, 1, 1))
        scores = scores + lean * (q - k == offset)
    scores = np.where(k <= q, scores, -np.inf)
    return torch.softmax(torch.tensor(scores, dtype=torch.float32), dim=-1)


def _score_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for n_layers, n_heads, L in ((2, 3, 5), (3, 2, 7)):
        T = 2 * L + 1
        cases.append(Case(f"{n_layers} layers x {n_heads} heads, one prefix token then {L} tokens repeated twice",
                          (_patterns(rng, n_layers, n_heads, T, L), L)))
    return cases


def _reference_scores(patterns: torch.Tensor, L: int, q: torch.Tensor, prev_off: int = 1, ind_off: int | None = None):
    ind_off = L - 1 if ind_off is None else ind_off
    prev = patterns[:, :, :, q, q - prev_off].mean(dim=(1, 3))
    ind = patterns[:, :, :, q, q - ind_off].mean(dim=(1, 3))
    return prev.numpy(), ind.numpy()


@exercise_check(cases=_score_cases, during=[_no_library(detection, what="compute the scores")])
def check_head_scores(case: Case, got: Returned) -> None:
    """``fn(patterns, length) -> (previous_token [n_layers, n_heads], induction [n_layers, n_heads])`` on
    patterns ``[n_layers, batch, n_heads, T, T]`` of one prefix token followed by ``length`` tokens repeated twice."""
    patterns, L = case.args
    if not got.is_tuple or len(got.arrays) != 2:
        raise CheckFailed(f"{case.name}: expected a pair (previous_token_scores, induction_scores).")
    T = patterns.shape[-1]
    second = torch.arange(T - L, T)
    expected = _reference_scores(patterns, L, second)
    wrong_start = torch.arange(L, T)  # forgets the prefix token
    no_first = torch.arange(T - L + 1, T)  # leaves out the second copy's first query
    first_left_out = ("averaged over the second copy's queries without its first token; the scores use all `length` "
                      "queries of the second copy, its first token included")
    mistakes_ind = {
        "the attention to the earlier occurrence itself (t - L, a duplicate-token head), not to the token after it":
            _reference_scores(patterns, L, second, ind_off=L)[1],
        "scored as if the second copy started at position `length` (the prefix token shifts it by one)":
            _reference_scores(patterns, L, wrong_start)[1],
        first_left_out: _reference_scores(patterns, L, no_first)[1],
    }
    mistakes_prev = {
        "averaged over every query from position 1 on; the scores average over the second copy's queries":
            _reference_scores(patterns, L, torch.arange(1, T))[0],
        "the attention to t - 2, not to the previous token": _reference_scores(patterns, L, second, prev_off=2)[0],
        "scored as if the second copy started at position `length` (the prefix token shifts it by one)":
            _reference_scores(patterns, L, wrong_start)[0],
        first_left_out: _reference_scores(patterns, L, no_first)[0],
    }
    for i, (name, mistakes) in enumerate((("previous-token scores", mistakes_prev), ("induction scores", mistakes_ind))):
        value = got.arrays[i]
        if not _same(value, expected[i], 1e-4, 1e-5):
            shape_note = "" if value.shape == expected[i].shape else f" (shape {value.shape}, expected {expected[i].shape}: [n_layers, n_heads])"
            raise CheckFailed(f"{case.name}: the {name} differ from the expected ones{shape_note}."
                              + _name_the_mistake(value, expected[i], mistakes, 1e-4, 1e-5))


# --------------------------------------------------------------------------------------------------
# Exercise 2: patch one head's output from another run, and the share recovered
# --------------------------------------------------------------------------------------------------


def _run_with_z(model: Transformer, tokens, layer: int, edit) -> np.ndarray:
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", edit)]).numpy()


def _patched(model: Transformer, tokens, source, layer: int, heads, where) -> np.ndarray:
    """The reference: run ``tokens``; at ``where [batch, pos]``, ``heads``' z comes from the run on ``source``."""
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(source, names_filter=name)

    def edit(z, hook):
        z, part = z.clone(), z[:, :, heads].clone()  # [batch, pos, n_patched, d_head]
        part[where] = cache[name][:, :, heads][where]
        z[:, :, heads] = part
        return z

    return _run_with_z(model, tokens, layer, edit)


def _patch_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for n_heads, layer, head in ((2, 0, 1), (3, 1, 0), (1, 1, 0), (2, 1, 1)):
        model = _model(int(rng.integers(2**31)), n_heads)
        tokens, source = torch.randint(0, 11, (2, 6, 10), generator=g)
        where = torch.rand(6, 10, generator=g) < 0.4  # other positions in every sequence
        cases.append(Case(f"layer {layer} head {head} ({n_heads} heads per layer), {int(where.sum())} of 60 positions patched",
                          (model, tokens, source, layer, head, where)))
    return cases


def _patch_mistakes(model, tokens, source, layer: int, head: int, where) -> dict[str, object]:
    every = torch.ones_like(where)
    out = {
        "the other direction: the run on `source_tokens` with `tokens`' activation patched in":
            _patched(model, source, tokens, layer, [head], where),
        "every head of the layer patched, not only `head`": _patched(model, tokens, source, layer, slice(None), where),
        "every position patched, not only those where `where` is True": _patched(model, tokens, source, layer, [head], every),
        "the other layer patched (layers are numbered from 0: `layer` 0 is blocks.0)":
            _patched(model, tokens, source, 1 - layer, [head], where),
    }
    return out


@exercise_check(cases=_patch_cases, during=[no_hooks_left(), _no_library(ablation, what="patch the head")])
def check_patch_head(case: Case, got: Returned) -> None:
    """``fn(model, tokens, source_tokens, layer, head, where) -> logits``: a run on ``tokens`` in which one
    head's output at the positions ``where [batch, pos]`` comes from the run on ``source_tokens``."""
    model, tokens, source, layer, head, where = case.args
    expected = _patched(model, tokens, source, layer, [head], where)
    try:
        assert_close(got, expected, what=case.name, rtol=1e-4, atol=1e-5, check_type=False)
    except CheckFailed as err:
        raise CheckFailed(f"{err}{_name_the_mistake(got.value, expected, _patch_mistakes(*case.args), 1e-4, 1e-5)}") from None


def _share_cases(rng: np.random.Generator) -> list[Case]:
    clean, corrupted = rng.uniform(0.8, 1.0, 5), rng.uniform(0.0, 0.2, 5)
    patched = corrupted + rng.uniform(-0.3, 1.3, 5) * (clean - corrupted)  # some below 0, some above 1
    loss_clean, loss_corrupted = rng.uniform(0.3, 1.0), rng.uniform(3.0, 4.5)
    return [
        Case("accuracies (the metric rises from corrupted to clean), one patch per entry, some overshooting",
             (patched, corrupted, clean)),
        Case("a loss (it falls from corrupted to clean)",
             (float(loss_corrupted + 0.7 * (loss_clean - loss_corrupted)), float(loss_corrupted), float(loss_clean))),
        Case("a patch that changes nothing (patched == corrupted)", (float(loss_corrupted), float(loss_corrupted), float(loss_clean))),
    ]


@exercise_check(cases=_share_cases)
def check_share_recovered(case: Case, got: Returned) -> None:
    """``fn(patched, corrupted, clean) -> share``: 0 where ``patched`` equals ``corrupted``, 1 where it equals
    ``clean``, linear in between and beyond (elementwise on arrays)."""
    p, c, cl = (np.asarray(a, dtype=np.float64) for a in case.args)
    expected = (p - c) / (cl - c)
    mistakes = {
        "the share measured from the clean end (1 = corrupted, 0 = clean)": (p - cl) / (c - cl),
        "the patched metric divided by the clean one (ignores where the corrupted run starts)": p / cl,
        "clipped to [0, 1] (a patch can overshoot the clean run or make things worse: report it)": np.clip(expected, 0, 1),
        "divided by |clean - corrupted|: for a loss, which falls when the patch helps, the sign flips":
            (p - c) / np.abs(cl - c),
    }
    try:
        assert_close(got, expected, what=case.name, rtol=1e-6, atol=1e-9, check_type=False)
    except CheckFailed as err:
        raise CheckFailed(f"{err}{_name_the_mistake(got.value, expected, mistakes, 1e-6, 1e-9)}") from None


# --------------------------------------------------------------------------------------------------
# Exercise 3: the key subspace of a QK circuit, and removing a subspace from what a layer writes
# --------------------------------------------------------------------------------------------------


def _projector(basis) -> np.ndarray:
    Q = np.linalg.qr(np.asarray(basis, dtype=np.float64))[0]
    return Q @ Q.T


def _key_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for d, r in ((8, 2), (12, 3), (10, 1)):
        # Separate query and key sides, distinct singular values: no mistake can hit the right subspace.
        U, V = (np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(2))
        s = np.sort(rng.uniform(0.1, 1.0, d))[::-1] * np.geomspace(4, 1, d)
        cases.append(Case(f"a {d} x {d} W_qk, r = {r}", (U @ np.diag(s) @ V.T, r)))
    return cases


@exercise_check(cases=_key_cases, during=[_no_library(head_circuits, matching, what="find the directions")])
def check_key_subspace(case: Case, got: Returned) -> None:
    """``fn(W_qk, r) -> [d_model, r]``: orthonormal columns spanning the r key-side directions that change
    the score ``x_q W_qk x_k^T`` (normed residuals ``x``) most: the top right singular vectors of ``W_qk``."""
    W_qk, r = case.args
    U, _, Vh = np.linalg.svd(W_qk)
    if got.is_tuple or got.value.shape != (W_qk.shape[0], r):
        shape = "a tuple" if got.is_tuple else f"shape {got.value.shape}"
        raise CheckFailed(f"{case.name}: expected {r} columns of length {W_qk.shape[0]}, [d_model, r], got {shape}.")
    B = got.value.astype(np.float64)
    if not np.allclose(B.T @ B, np.eye(r), atol=1e-5):
        raise CheckFailed(f"{case.name}: the columns are not orthonormal (B^T B is not the identity).")
    expected = Vh[:r].T
    if np.allclose(B @ B.T, expected @ expected.T, atol=1e-5):
        return
    mistakes = {
        "the query side: left singular vectors (U's columns), not the key side": U[:, :r],
        "the first r columns of Vh: numpy's svd returns V transposed, so the directions are its rows": Vh[:, :r],
        "the r weakest directions, not the strongest": Vh[-r:].T,
    }
    named = [m for m, v in mistakes.items() if np.allclose(B @ B.T, v @ v.T, atol=1e-5)]
    raise CheckFailed(f"{case.name}: the columns span another subspace than the top-{r} key directions."
                      + (f" That is {named[0]}." if named else ""))


def _layer_out_edit(model: Transformer, tokens, layer: int, edit, where: str = "hook_attn_out") -> np.ndarray:
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.{where}", lambda x, hook: edit(x))]).numpy()


def _remove_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for n_heads, layer, r in ((1, 0, 2), (2, 1, 3), (2, 0, 1)):
        model = _model(int(rng.integers(2**31)), n_heads)
        tokens = torch.randint(0, 11, (6, 10), generator=g)
        # Not orthonormal: correlated columns of different lengths, as a student's directions may be.
        directions = rng.standard_normal((12, r)) @ np.triu(rng.uniform(0.5, 2.0, (r, r)))
        cases.append(Case(f"layer {layer} ({n_heads} heads), {r} non-orthonormal directions [12, {r}]",
                          (model, tokens, layer, torch.tensor(directions, dtype=torch.float32))))
    return cases


@exercise_check(cases=_remove_cases, during=[no_hooks_left(), _no_library(ablation, what="remove the subspace")])
def check_remove_subspace(case: Case, got: Returned) -> None:
    """``fn(model, tokens, layer, directions) -> logits``: the span of ``directions``' columns removed
    (orthogonal projection) from what layer ``layer``'s attention writes, at every position."""
    model, tokens, layer, D = case.args
    P = torch.tensor(_projector(D.numpy()), dtype=torch.float32)
    Dt = D.float()
    expected = _layer_out_edit(model, tokens, layer, lambda x: x - x @ P)
    mistakes = {
        "x - (x D) D^T with the directions as given: they are not orthonormal, so that is no projection "
        "(orthonormalise them first, e.g. QR)": _layer_out_edit(model, tokens, layer, lambda x: x - x @ Dt @ Dt.T),
        "only the subspace kept (x P), not removed (x - x P)": _layer_out_edit(model, tokens, layer, lambda x: x @ P),
        "removed from the whole residual stream after the layer (embedding included), not from what the layer writes":
            _layer_out_edit(model, tokens, layer, lambda x: x - x @ P, "hook_resid_post"),
    }
    try:
        assert_close(got, expected, what=case.name, rtol=1e-4, atol=1e-5, check_type=False)
    except CheckFailed as err:
        raise CheckFailed(f"{err}{_name_the_mistake(got.value, expected, mistakes, 1e-4, 1e-5)}") from None
