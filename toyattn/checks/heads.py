"""Checks for lesson 2 (``solutions/02_head_permutation``): permuting heads, matching them, finding them again.

All fused weights here use the layout of GPT-2's ``c_attn``, ``[d_in, 3*n_heads*d_head]``
(``layout="in_out"``), except ``check_permute_mha`` (PyTorch's ``[3*n_heads*d_head, d_in]``), and the
course's permutation convention: new head i = old head ``perm[i]``. Cases are fresh for every seed,
and the permutation cases include noisy clients and heads built to trap greedy matching and
matching on one weight block alone (see :func:`_recover_cases`).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from .. import heads as ref
from .answers import Returned
from .core import Case, CheckFailed, assert_close, exercise_check, looks_like, torch_generator

__all__ = [
    "check_head_features",
    "check_invariant_features",
    "check_invert_permutation",
    "check_optimal_match",
    "check_permute_heads",
    "check_permute_mha",
    "check_recover_permutation",
]

BLOCKS = ("Q", "K", "V")


# ---------------------------------------------------------------------------------------------- helpers


def _perm(rng: np.random.Generator, n: int) -> torch.Tensor:
    """A random permutation of ``n`` that is not its own inverse when ``n >= 3`` (so the inverse shows)."""
    while True:
        p = rng.permutation(n)
        if n < 3 or not np.array_equal(p[p], np.arange(n)):
            return torch.as_tensor(p, dtype=torch.long)


def _permutation_answer(got: Returned, n: int, what: str) -> torch.Tensor:
    """The student's answer as a permutation of ``n``, or a CheckFailed saying what is wrong with it."""
    if got.is_tuple:
        raise CheckFailed(f"{what}: expected one tensor of indices, got a tuple of {len(got.arrays)}.")
    if not got.is_tensor():
        raise CheckFailed(f"{what}: expected a torch.Tensor of indices, got {got.kind} (wrap it: torch.as_tensor(...)).")
    try:
        return ref.as_permutation(torch.from_numpy(got.value.copy()), n)
    except (TypeError, ValueError) as err:
        raise CheckFailed(f"{what}: expected a permutation of 0..{n - 1}, got {got.value.tolist()}: {err}") from None


def _fused(g: torch.Generator, n_heads: int, d_in: int, d_head: int) -> torch.Tensor:
    return torch.randn(d_in, 3 * n_heads * d_head, generator=g)


def _fused_cases(rng: np.random.Generator) -> list[Case]:
    """Fused QKV weights with d_in != n_heads * d_head, and permutations that are not their own inverse."""
    g = torch_generator(rng)
    cases = []
    for n_heads, d_in, d_head in ((2, 4, 2), (3, 5, 2), (4, 3, 3), (6, 16, 2), (1, 4, 2)):
        perm = _perm(rng, n_heads)
        qkv = _fused(g, n_heads, d_in, d_head)
        cases.append(Case(f"{n_heads} heads, d_in {d_in}, d_head {d_head}, perm {perm.tolist()}", (qkv, perm, n_heads)))
    return cases


def _blocks(qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``[3, n_heads, d_in, d_head]`` per-head blocks of a fused in_out weight."""
    return ref.split_qkv(qkv, n_heads, layout="in_out")


def _features(qkv: torch.Tensor, n_heads: int, blocks: tuple[int, ...] = (0, 1, 2)) -> torch.Tensor:
    """Per head, the chosen blocks' weights flattened: ``[n_heads, ...]``."""
    b = _blocks(qkv, n_heads)[list(blocks)]  # [k, H, d_in, d_head]
    return b.transpose(0, 1).reshape(n_heads, -1).double()


# ---------------------------------------------------------------------------------------------- Ex 1


@exercise_check(cases=_fused_cases)
def check_permute_heads(case: Case, got: Returned) -> None:
    """``permute_fn(qkv, perm, n_heads)`` reorders the heads of ``qkv [d_in, 3*n_heads*d_head]``:
    new head i = old head ``perm[i]``, in the Q, K and V blocks alike."""
    qkv, perm, n_heads = case.args
    d_in, width = qkv.shape
    d_head = width // (3 * n_heads)

    def only_q() -> torch.Tensor:
        out = qkv.clone()
        out[:, : width // 3] = ref.permute_qkv(qkv, perm, n_heads, layout="in_out")[:, : width // 3]
        return out

    assert_close(
        got, ref.permute_qkv(qkv, perm, n_heads, layout="in_out"), what=f"permuted QKV for {case.name}", rtol=0, atol=0,
        mistakes={
            "the inverse convention (new head perm[i] = old head i): new head i must be old head perm[i]":
                lambda: ref.permute_qkv(qkv, ref.invert_permutation(perm), n_heads, layout="in_out"),
            "the columns were split as [3, d_head, n_heads]: inside each of Q, K, V the columns are head 0's "
            "d_head columns, then head 1's, so split them as [3, n_heads, d_head]":
                lambda: qkv.reshape(d_in, 3, d_head, n_heads)[:, :, :, perm].reshape(d_in, -1),
            "only the Q block moved: a head is its Q, K and V together, and all three must move":
                only_q,
            "the rows (inputs) were permuted, not the heads' columns": lambda: qkv[perm],
        },
    )


# ---------------------------------------------------------------------------------------------- Ex 2


def _inverse_cases(rng: np.random.Generator) -> list[Case]:
    cycle = [1, 2, 0] if rng.random() < 0.5 else [2, 0, 1]
    perms = [(f"{cycle} (a 3-cycle: not its own inverse)", torch.tensor(cycle)), ("the identity of 4", torch.arange(4))]
    for n in (int(rng.integers(5, 9)), 12):
        p = _perm(rng, n)
        perms.append((f"{p.tolist()}", p))
    # Last, so that a mistake that is right for swaps shows (and is named) on a longer permutation first.
    perms.append(("[1, 0] (a swap: its own inverse)", torch.tensor([1, 0])))
    return [Case(name, (p,)) for name, p in perms]


@exercise_check(cases=_inverse_cases)
def check_invert_permutation(case: Case, got: Returned) -> None:
    """``invert_fn(perm)`` returns ``inv`` with ``inv[perm[i]] = i``."""
    (perm,) = case.args
    what = f"inverse of {case.name}"
    answer = _permutation_answer(got, len(perm), what)
    assert_close(
        answer, ref.invert_permutation(perm), what=what, rtol=0, atol=0,
        mistakes={
            "the permutation itself: that is its inverse only when it is made of swaps": lambda: perm,
            "the permutation applied twice (perm[perm])": lambda: perm[perm],
            "the permutation reversed (perm.flip(0)): reversing the list is not undoing the shuffle":
                lambda: perm.flip(0),
        },
    )


# ---------------------------------------------------------------------------------------------- Ex 3


def _feature_cases(rng: np.random.Generator) -> list[Case]:
    return [Case(c.name.rsplit(", perm", 1)[0], (c.args[0], c.args[2])) for c in _fused_cases(rng)]


@exercise_check(cases=_feature_cases)
def check_head_features(case: Case, got: Returned) -> None:
    """``features_fn(qkv, n_heads)`` returns ``[n_heads, 3*d_in*d_head]``: row h holds every weight of head h
    (its Q, K and V blocks) and nothing else. Any fixed order inside a row is accepted."""
    qkv, n_heads = case.args
    expected = _features(qkv, n_heads).numpy()
    what = f"features for {case.name}"
    if got.is_tuple:
        raise CheckFailed(f"{what}: expected one tensor, got a tuple of {len(got.arrays)}.")
    if not got.is_tensor():
        raise CheckFailed(f"{what}: expected a torch.Tensor, got {got.kind}.")
    a = got.value.astype(np.float64)
    if a.shape != expected.shape:
        hint = ""
        if a.shape == (n_heads, expected.shape[1] // 3):
            hint = " It looks like one block per head (only Q?): a head's features are its Q, K and V weights."
        raise CheckFailed(
            f"{what}: expected shape {expected.shape} (one row per head, 3 * d_in * d_head = {expected.shape[1]} "
            f"numbers each), got {a.shape}.{hint}"
        )
    # Same multiset of numbers in each row = the row holds exactly that head's weights.
    try:
        assert_close(np.sort(a, axis=1), np.sort(expected, axis=1), check_type=False,
                     what=f"the weights in each row for {case.name}, sorted (row h must hold head h's weights)")
    except CheckFailed as err:
        hint = looks_like(a, {
            "qkv.reshape(n_heads, -1): that cuts the matrix into groups of rows (inputs), while every head's "
            "columns run through all rows": lambda: qkv.reshape(n_heads, -1),
        })
        raise CheckFailed(f"{err}{hint}") from None
    # The order inside a row must be the same for every head, so distances between heads are right.
    dist = np.linalg.norm(a[:, None] - a[None], axis=-1)
    ref_dist = np.linalg.norm(expected[:, None] - expected[None], axis=-1)
    assert_close(dist, ref_dist, what=f"distances between heads' features for {case.name}", check_type=False,
                 mistakes={"each row is in its own order (sorted?): use one order for every head, so that "
                           "entry k of every row is the same weight position": lambda: dist})


# ---------------------------------------------------------------------------------------------- Ex 4


def _greedy_rows(cost: np.ndarray) -> torch.Tensor:
    return ref.greedy_match(cost)


def _greedy_global(cost: np.ndarray) -> torch.Tensor:
    """Cheapest entry first, then the cheapest among free rows and columns, and so on."""
    n = len(cost)
    out = np.full(n, -1)
    used_cols: set[int] = set()
    for flat in np.argsort(cost, axis=None, kind="stable"):
        i, j = divmod(int(flat), n)
        if out[i] < 0 and j not in used_cols:
            out[i] = j
            used_cols.add(j)
    return torch.as_tensor(out)


def _greedy_trap(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random ``n x n`` cost matrix on which both kinds of greedy matching miss the optimum."""
    for _ in range(1000):
        cost = rng.random((n, n)).round(3)
        best = ref.hungarian_match(cost).numpy()
        rows = np.arange(n)
        total = cost[rows, best].sum()
        if all(cost[rows, g(cost).numpy()].sum() > total + 1e-3 for g in (_greedy_rows, _greedy_global)):
            return cost
    raise RuntimeError("no greedy trap found")  # pragma: no cover - tests run many seeds


def _cost_cases(rng: np.random.Generator) -> list[Case]:
    swap = rng.permutation(2)
    small = np.array([[1.0, 2.0], [0.0, 10.0]])[:, swap]
    return [
        Case("a random 5x5 where greedy goes wrong", (torch.tensor(_greedy_trap(rng, 5)),)),
        Case("a random 8x8 where greedy goes wrong", (torch.tensor(_greedy_trap(rng, 8)),)),
        Case("a random 12x12", (torch.tensor(rng.random((12, 12))),)),
        Case(f"{small.tolist()} (greedy row by row: 1 + 10, optimal: 2 + 0)", (torch.tensor(small),)),
    ]


@exercise_check(cases=_cost_cases)
def check_optimal_match(case: Case, got: Returned) -> None:
    """``match_fn(cost)`` returns ``match`` (a LongTensor) with ``match[i]`` = the column given to row i,
    with the smallest possible total ``sum_i cost[i, match[i]]``."""
    (cost,) = case.args
    what = f"match for {case.name}"
    c = cost.numpy()
    if got.is_tensor() and not got.is_tuple and got.value.shape == (len(c),):
        repeated = [j for j in range(len(c)) if (got.value == j).sum() > 1]
        if repeated:
            raise CheckFailed(
                f"{what}: expected every column once, got {got.value.tolist()}, which gives column(s) {repeated} to "
                f"several rows. It looks like each row took its cheapest column (argmin): every column may be used once."
            )
    answer = _permutation_answer(got, len(c), what)
    best = ref.hungarian_match(c)
    rows = np.arange(len(c))
    total, best_total = c[rows, answer.numpy()].sum(), c[rows, best.numpy()].sum()
    if total > best_total + 1e-9:
        hint = looks_like(answer, {
            "greedy matching (each row takes the cheapest column still free): an early row can take the column "
            "a later row needs much more; use scipy.optimize.linear_sum_assignment": lambda: _greedy_rows(c),
            "greedy matching (the cheapest entry first): it can still miss the best total; use "
            "scipy.optimize.linear_sum_assignment": lambda: _greedy_global(c),
            "the answer for the transposed matrix (for each column, its row): match[i] is the column given to "
            "row i": lambda: ref.hungarian_match(c.T),
            "the most expensive assignment (maximize=True?): the smallest total is asked for":
                lambda: ref.hungarian_match(-c),
        }, rtol=0, atol=0)
        raise CheckFailed(
            f"{what}: expected an assignment with total {best_total:.4g} (e.g. {best.tolist()}), got "
            f"{answer.tolist()}, which costs {total:.4g}.{hint}"
        )


# ---------------------------------------------------------------------------------------------- Ex 5


def _assemble(ref_heads: list[torch.Tensor], client_heads: list[torch.Tensor], ref_slot, client_slot):
    """Fused (ref, client, perm) from logical heads, head l sitting at ``ref_slot[l]`` / ``client_slot[l]``."""
    n = len(ref_heads)
    r = torch.empty(3, n, *ref_heads[0].shape[1:])
    c = torch.empty_like(r)
    perm = torch.empty(n, dtype=torch.long)
    for logical in range(n):
        r[:, ref_slot[logical]] = ref_heads[logical]
        c[:, client_slot[logical]] = client_heads[logical]
        perm[client_slot[logical]] = ref_slot[logical]
    return ref.merge_qkv(r, layout="in_out"), ref.merge_qkv(c, layout="in_out"), perm


def _chain_trap(rng: np.random.Generator, g: torch.Generator, d_in: int, d_head: int, noise: float):
    """Eight heads; six of them in two chains of three where nearby heads are easy to mistake.

    Chain 1 (reference heads at 0, 1, 2 along a direction, their clients at 0.6, 1.8, 2.1, the clients
    in increasing index order) fools greedy matching over client rows, in row order or cheapest entry
    first. Chain 2 (the roles swapped, the reference heads in increasing index order) fools greedy
    matching over reference rows. The optimal assignment is the truth by a wide margin (1.5 vs >= 1.9
    in units of the spacing, also with squared distances), and all other heads are far away.
    """
    shape = (3, d_in, d_head)
    step = 2.0

    def direction():
        u = torch.randn(shape, generator=g)
        return u / u.norm()

    refs, clients = [], []
    for ref_at, client_at in (((0.0, 1.0, 2.0), (0.6, 1.8, 2.1)), ((0.6, 1.8, 2.1), (0.0, 1.0, 2.0))):
        base, u = 4 * torch.randn(shape, generator=g), direction()
        refs += [base + step * t * u for t in ref_at]
        clients += [base + step * t * u for t in client_at]
    for _ in range(2):
        head = 4 * torch.randn(shape, generator=g)
        refs.append(head)
        clients.append(head.clone())
    clients = [c + noise * torch.randn(shape, generator=g) for c in clients]
    ref_slot, client_slot = rng.permutation(8), rng.permutation(8)
    client_slot[:3] = np.sort(client_slot[:3])  # chain 1: the client rows in order A < B < C
    ref_slot[3:6] = np.sort(ref_slot[3:6])  # chain 2: the reference rows in order
    return _assemble(refs, clients, ref_slot, client_slot)


def _misleading_blocks(rng: np.random.Generator, g: torch.Generator, d_in: int, d_head: int, noise: float):
    """Three pairs of heads; in each pair two of the Q, K, V blocks are nearly the same and the client
    swapped them, so any cost that leaves out a block points to the wrong head, while the full cost
    (the third block differs a lot) finds the truth."""
    refs, clients = [], []
    for swapped in ((0, 1), (0, 2), (1, 2)):
        a = torch.randn(3, d_in, d_head, generator=g)
        b = torch.randn(3, d_in, d_head, generator=g)
        for k in swapped:
            b[k] = a[k] + 0.1 * torch.randn(d_in, d_head, generator=g)
        ca, cb = a.clone(), b.clone()
        for k in swapped:
            ca[k], cb[k] = b[k], a[k]
        refs += [a, b]
        clients += [ca, cb]
    clients = [c + noise * torch.randn(c.shape, generator=g) for c in clients]
    return _assemble(refs, clients, rng.permutation(6), rng.permutation(6))


def _same_q(rng: np.random.Generator, g: torch.Generator, n: int, d_in: int, d_head: int, noise: float):
    """Heads that share one Q block: Q alone cannot tell them apart."""
    q = torch.randn(d_in, d_head, generator=g)
    refs = []
    for _ in range(n):
        h = torch.randn(3, d_in, d_head, generator=g)
        h[0] = q
        refs.append(h)
    clients = [h + noise * torch.randn(h.shape, generator=g) for h in refs]
    return _assemble(refs, clients, rng.permutation(n), rng.permutation(n))


def _recover_cases(rng: np.random.Generator) -> list[Case]:
    """Clean shuffles, a noisy client, and three traps (greedy, one-block costs, shared Q).

    Every case's true permutation is what Hungarian matching on the L2 distances of the heads' full
    Q, K, V weights finds (tests/test_checks_heads.py checks this for many seeds).
    """
    g = torch_generator(rng)
    cases = []
    for n_heads, d_in, d_head in ((2, 4, 2), (3, 5, 2), (5, 8, 2)):
        perm = _perm(rng, n_heads)
        qkv = _fused(g, n_heads, d_in, d_head)
        client = ref.permute_qkv(qkv, perm, n_heads, layout="in_out")
        cases.append(Case(f"{n_heads} heads, a clean shuffle {perm.tolist()}", (qkv, client, n_heads),
                          expect={"perm": perm, "noisy": False}))
    perm = _perm(rng, 6)
    qkv = _fused(g, 6, 16, 2)
    client = ref.permute_qkv(qkv, perm, 6, layout="in_out") + 0.3 * torch.randn(qkv.shape, generator=g)
    cases.append(Case(f"6 heads, a noisy client (fine-tuned: noise 0.3 on every weight), {perm.tolist()}",
                      (qkv, client, 6), expect={"perm": perm, "noisy": True}))
    qkv, client, perm = _chain_trap(rng, g, 4, 2, noise=0.01)
    cases.append(Case(f"8 heads, some so alike that greedy matching goes wrong, noisy, {perm.tolist()}",
                      (qkv, client, 8), expect={"perm": perm, "noisy": True}))
    qkv, client, perm = _misleading_blocks(rng, g, 4, 2, noise=0.02)
    cases.append(Case(f"6 heads where any two of Q, K, V alone point to the wrong head, noisy, {perm.tolist()}",
                      (qkv, client, 6), expect={"perm": perm, "noisy": True}))
    qkv, client, perm = _same_q(rng, g, 4, 4, 2, noise=0.02)
    cases.append(Case(f"4 heads with the same Q block, noisy, {perm.tolist()}",
                      (qkv, client, 4), expect={"perm": perm, "noisy": True}))
    return cases


def _cost(ref_qkv: torch.Tensor, client_qkv: torch.Tensor, n_heads: int, blocks=(0, 1, 2)) -> np.ndarray:
    """``cost[i, j]`` = L2 distance between client head i and reference head j (on the chosen blocks)."""
    return torch.cdist(_features(client_qkv, n_heads, blocks), _features(ref_qkv, n_heads, blocks)).numpy()


def recover_reference(ref_qkv: torch.Tensor, client_qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The reference answer: Hungarian matching on the distances of the heads' Q, K, V weights."""
    return ref.hungarian_match(_cost(ref_qkv, client_qkv, n_heads))


def _recover_mistakes(ref_qkv: torch.Tensor, client_qkv: torch.Tensor, n_heads: int, perm: torch.Tensor):
    full = _cost(ref_qkv, client_qkv, n_heads)
    mistakes = {
        "the inverse: with rows = reference heads you found, for each reference head, where it went; "
        "the convention asks, for each client head, where it came from":
            lambda: ref.invert_permutation(perm),
        "greedy matching (each client head takes the closest reference head still free): use the optimal "
        "matching of exercise 4": lambda: _greedy_rows(full),
        "greedy matching (the closest pair first): use the optimal matching of exercise 4":
            lambda: _greedy_global(full),
        "greedy matching over reference heads: use the optimal matching of exercise 4":
            lambda: ref.invert_permutation(_greedy_rows(full.T)),
    }
    for k in (1, 2):
        for blocks in itertools.combinations(range(3), k):
            names = " and ".join(BLOCKS[b] for b in blocks)
            mistakes[f"only {names} {'was' if k == 1 else 'were'} compared: a head is its Q, K and V together, "
                     f"and two heads can share one block"] = (
                lambda blocks=blocks: ref.hungarian_match(_cost(ref_qkv, client_qkv, n_heads, blocks)))
    return mistakes


@exercise_check(cases=_recover_cases)
def check_recover_permutation(case: Case, got: Returned) -> None:
    """``recover_fn(ref_qkv, client_qkv, n_heads)`` returns ``perm`` with
    ``client_qkv ≈ permute_heads(ref_qkv, perm, n_heads)`` (exactly, or up to noise)."""
    ref_qkv, client_qkv, n_heads = case.args
    perm = case.expect["perm"]
    what = f"recovered permutation for {case.name}"
    try:
        answer = _permutation_answer(got, n_heads, what)
    except CheckFailed as err:
        if case.expect["noisy"]:
            raise CheckFailed(
                f"{err} This client is noisy: no client head equals a reference head exactly, so look for the "
                f"closest reference head (a distance), not for an exact copy."
            ) from None
        raise
    if not torch.equal(answer, perm):
        hint = looks_like(answer, _recover_mistakes(ref_qkv, client_qkv, n_heads, perm), rtol=0, atol=0)
        raise CheckFailed(f"{what}: expected {perm.tolist()}, got {answer.tolist()}.{hint}")


# ---------------------------------------------------------------------------------------------- Ex 6


def _orthogonal(rng: np.random.Generator, n: int, count: int) -> torch.Tensor:
    """``count`` random orthogonal ``n x n`` matrices (NumPy's QR: much faster than torch's for tiny ones)."""
    q, r = np.linalg.qr(rng.standard_normal((count, n, n)))
    return torch.as_tensor(q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :], dtype=torch.float32)


def _rotated(h: ref.HeadWeights, rng: np.random.Generator) -> ref.HeadWeights:
    """The same heads rotated inside each head: ``W_Q R, W_K R, W_V S, S^T W_O`` (same scores, same output)."""
    R, S = _orthogonal(rng, h.d_head, h.n_heads), _orthogonal(rng, h.d_head, h.n_heads)
    return ref.HeadWeights(h.W_Q @ R, h.W_K @ R, h.W_V @ S, W_O=S.transpose(1, 2) @ h.W_O)


def _invariant_cases(rng: np.random.Generator) -> list[Case]:
    """Each case: some heads, two "twins" (another head turned by a rotation of the *input* space, so its
    norms and singular values are the same but it computes something else), and every head again
    rotated inside the head (same function, other weights), the rows shuffled.

    ``expect["same"]`` lists the pairs of rows that must get the same features.
    """
    g = torch_generator(rng)
    cases = []
    for n_base, d_in, d_head, d_out in ((3, 4, 2, 4), (4, 5, 2, 3), (5, 6, 3, 6)):
        Q, K, V = (torch.randn(n_base, d_in, d_head, generator=g) for _ in range(3))
        O = torch.randn(n_base, d_head, d_out, generator=g)
        P = _orthogonal(rng, d_in, 2)
        # Twin of head 0: W_Q turned in input space (W_QK changes, its singular values do not).
        # Twin of head 1: W_V turned likewise (W_OV changes, its singular values and W_QK do not).
        Q = torch.cat([Q, P[0] @ Q[:1], Q[1:2]])
        K = torch.cat([K, K[:1], K[1:2]])
        V = torch.cat([V, V[:1], P[1] @ V[1:2]])
        O = torch.cat([O, O[:1], O[1:2]])
        heads = ref.HeadWeights(Q, K, V, W_O=O)
        both = ref.HeadWeights(*(torch.cat([a, b]) for a, b in zip(
            _tensors(heads), _tensors(_rotated(heads, rng)), strict=True)))
        n = heads.n_heads
        order = rng.permutation(2 * n)
        group = [int(old) % n for old in order]  # row r holds head group[r] (itself or rotated)
        name = f"{n} heads (two of them twins) and their rotated copies, d_in {d_in}, d_head {d_head}, d_out {d_out}"
        expect = {"group": group, "twins": [{0, n_base}, {1, n_base + 1}]}
        cases.append(Case(name, _tensors(both.permute(torch.as_tensor(order))), expect=expect))
    return cases


def _tensors(h: ref.HeadWeights) -> tuple[torch.Tensor, ...]:
    return (h.W_Q, h.W_K, h.W_V, h.W_O)


@exercise_check(cases=_invariant_cases)
def check_invariant_features(case: Case, got: Returned) -> None:
    """``features_fn(W_Q, W_K, W_V, W_O)`` returns one row of features per head ``[n_heads, n_features]``
    that does not change when a head is rotated inside (``W_Q R, W_K R, W_V S, S^T W_O``) and tells apart
    heads that compute different things. Any such features are accepted."""
    W_Q = case.args[0]
    n = W_Q.shape[0]
    what = f"features for {case.name}"
    if got.is_tuple or not got.is_tensor():
        raise CheckFailed(f"{what}: expected one torch.Tensor [n_heads, n_features], got {got.kind}.")
    f = got.value.astype(np.float64)
    if f.ndim != 2 or f.shape[0] != n or f.shape[1] < 1:
        raise CheckFailed(f"{what}: expected shape ({n}, n_features), one row per head, got {f.shape}.")
    if not np.isfinite(f).all():
        raise CheckFailed(f"{what}: contains NaN or inf.")
    scale = float(np.abs(f).max()) or 1.0
    per_head = {W_Q[0].numel() * k for k in (1, 2, 3)} | {W_Q[0].numel() * 3 + case.args[3][0].numel()}
    group = case.expect["group"]
    for i, j in itertools.combinations(range(n), 2):
        gap = float(np.abs(f[i] - f[j]).max())
        if group[i] == group[j] and gap > 1e-4 * scale:
            hint = ""
            if f.shape[1] in per_head:
                hint = (" It looks like raw weights: a rotation inside the head changes them but not what the head "
                        "computes; build features from products in which the rotation cancels.")
            raise CheckFailed(
                f"{what}: rows {i} and {j} are the same head, once rotated inside the head (W_Q R, W_K R, W_V S, "
                f"S^T W_O: the same attention scores and the same output). Expected the same features, got "
                f"features that differ by up to {gap:.3g}.{hint}"
            )
        if group[i] != group[j] and gap <= 1e-4 * scale:
            hint = ""
            if {group[i], group[j]} in case.expect["twins"]:
                hint = (" These two heads have the same weight norms and singular values, but one reads its input "
                        "through a turned W_Q (or W_V), so its scores (or its output) differ. It looks like the "
                        "features are norms or singular values, or leave out W_QK or W_OV.")
            raise CheckFailed(
                f"{what}: rows {i} and {j} are heads that compute different things. Expected different features, "
                f"got the same.{hint}"
            )


# ---------------------------------------------------------------------------------------------- Ex 7


def _mha_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for n_heads, d_head in ((2, 3), (3, 2), (4, 4)):
        d_model = n_heads * d_head
        perm = _perm(rng, n_heads)
        w_in = torch.randn(3 * d_model, d_model, generator=g)
        b_in = torch.randn(3 * d_model, generator=g)
        w_out = torch.randn(d_model, d_model, generator=g)
        cases.append(Case(f"{n_heads} heads of width {d_head}, perm {perm.tolist()}", (w_in, b_in, w_out, perm, n_heads)))
    return cases


@exercise_check(cases=_mha_cases)
def check_permute_mha(case: Case, got: Returned) -> None:
    """``permute_fn(in_proj_weight, in_proj_bias, out_proj_weight, perm, n_heads)`` returns the three tensors
    of ``nn.MultiheadAttention`` with its heads reordered (new head i = old head ``perm[i]``)."""
    w_in, b_in, w_out, perm, n_heads = case.args
    if not got.is_tuple or len(got.arrays) != 3:
        raise CheckFailed(f"{case.name}: expected a tuple (in_proj_weight, in_proj_bias, out_proj_weight), got "
                          f"{'a tuple of ' + str(len(got.arrays)) if got.is_tuple else got.kind}.")
    expected = (
        ref.permute_qkv(w_in, perm, n_heads, layout="out_in"),
        ref.permute_qkv_bias(b_in, perm, n_heads),
        ref.permute_out_proj(w_out, perm, n_heads, layout="out_in"),
    )
    d_head = w_out.shape[1] // n_heads
    in_mistakes = {
        "in_proj_weight was permuted as if it were [d_in, 3*n_heads*d_head]: PyTorch stores it as "
        "[3*n_heads*d_head, d_in] (the layer computes x @ W.T), so the heads are groups of rows":
            lambda: ref.permute_qkv(w_in, perm, n_heads, layout="in_out"),
        "in_proj_weight was left as it was": lambda: w_in,
        "the inverse permutation": lambda: ref.permute_qkv(w_in, ref.invert_permutation(perm), n_heads, layout="out_in"),
    }
    out_mistakes = {
        "out_proj was left as it was: then head i's output meets the block of out_proj that belonged to another "
        "head, and the layer computes something else": lambda: w_out,
        "the rows of out_proj.weight were permuted: it is [d_out, n_heads*d_head], so a head's block is a group "
        "of d_head columns": lambda: w_out.reshape(n_heads, d_head, -1)[perm].reshape(w_out.shape),
    }
    bias_mistakes = {"the bias was left as it was: it belongs to the heads like the weight's rows": lambda: b_in}
    for i, (name, exp, mistakes) in enumerate((
        ("in_proj_weight", expected[0], in_mistakes),
        ("in_proj_bias", expected[1], bias_mistakes),
        ("out_proj_weight", expected[2], out_mistakes),
    )):
        item = Returned((got.arrays[i],), (got.kinds[i],))
        assert_close(item, exp, what=f"{name} for {case.name}", rtol=0, atol=0, mistakes=mistakes)
