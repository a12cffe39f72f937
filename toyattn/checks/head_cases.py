"""The cases of lesson 2's checks (:mod:`toyattn.checks.heads`): fused weights, permutations, and traps.

Every builder takes the check's ``np.random.Generator``, so each seed gives fresh cases. The cases of
``check_recover_permutation`` include a noisy client, heads arranged so that greedy matching goes
wrong, and heads where any one or two of Q, K, V point to the wrong head (:func:`recover_cases`).
"""

from __future__ import annotations

import numpy as np
import torch

from toyattn.checks.core import Case, torch_generator
from toyattn.heads.fused_qkv import merge_qkv, permute_qkv, split_qkv
from toyattn.heads.matching import greedy_match, hungarian_match
from toyattn.heads.weights import HeadWeights


def random_perm(rng: np.random.Generator, n: int) -> torch.Tensor:
    """A random permutation of ``n`` that is not its own inverse when ``n >= 3`` (so the inverse shows)."""
    while True:
        p = rng.permutation(n)
        if n < 3 or not np.array_equal(p[p], np.arange(n)):
            return torch.as_tensor(p, dtype=torch.long)


def _fused(g: torch.Generator, n_heads: int, d_in: int, d_head: int) -> torch.Tensor:
    return torch.randn(d_in, 3 * n_heads * d_head, generator=g)


def fused_cases(rng: np.random.Generator) -> list[Case]:
    """Fused QKV weights with d_in != n_heads * d_head, and permutations that are not their own inverse."""
    g = torch_generator(rng)
    cases = []
    for n_heads, d_in, d_head in ((2, 4, 2), (3, 5, 2), (4, 3, 3), (6, 16, 2), (1, 4, 2)):
        perm = random_perm(rng, n_heads)
        qkv = _fused(g, n_heads, d_in, d_head)
        cases.append(Case(f"{n_heads} heads, d_in {d_in}, d_head {d_head}, perm {perm.tolist()}", (qkv, perm, n_heads)))
    return cases


def _blocks(qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``[3, n_heads, d_in, d_head]`` per-head blocks of a fused in_out weight."""
    return split_qkv(qkv, n_heads, layout="in_out")


def features(qkv: torch.Tensor, n_heads: int, blocks: tuple[int, ...] = (0, 1, 2)) -> torch.Tensor:
    """Per head, the chosen blocks' weights flattened: ``[n_heads, ...]``."""
    b = _blocks(qkv, n_heads)[list(blocks)]  # [k, H, d_in, d_head]
    return b.transpose(0, 1).reshape(n_heads, -1).double()


def inverse_cases(rng: np.random.Generator) -> list[Case]:
    cycle = [1, 2, 0] if rng.random() < 0.5 else [2, 0, 1]
    perms = [(f"{cycle} (a 3-cycle: not its own inverse)", torch.tensor(cycle)), ("the identity of 4", torch.arange(4))]
    for n in (int(rng.integers(5, 9)), 12):
        p = random_perm(rng, n)
        perms.append((f"{p.tolist()}", p))
    # Last, so that a mistake that is right for swaps shows (and is named) on a longer permutation first.
    perms.append(("[1, 0] (a swap: its own inverse)", torch.tensor([1, 0])))
    return [Case(name, (p,)) for name, p in perms]


def feature_cases(rng: np.random.Generator) -> list[Case]:
    return [Case(c.name.rsplit(", perm", 1)[0], (c.args[0], c.args[2])) for c in fused_cases(rng)]


def greedy_rows(cost: np.ndarray) -> torch.Tensor:
    return greedy_match(cost)


def greedy_global(cost: np.ndarray) -> torch.Tensor:
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
        best = hungarian_match(cost).numpy()
        rows = np.arange(n)
        total = cost[rows, best].sum()
        if all(cost[rows, g(cost).numpy()].sum() > total + 1e-3 for g in (greedy_rows, greedy_global)):
            return cost
    raise RuntimeError("no greedy trap found")  # pragma: no cover - tests run many seeds


def cost_cases(rng: np.random.Generator) -> list[Case]:
    swap = rng.permutation(2)
    small = np.array([[1.0, 2.0], [0.0, 10.0]])[:, swap]
    return [
        Case("a random 5x5 where greedy goes wrong", (torch.tensor(_greedy_trap(rng, 5)),)),
        Case("a random 8x8 where greedy goes wrong", (torch.tensor(_greedy_trap(rng, 8)),)),
        Case("a random 12x12", (torch.tensor(rng.random((12, 12))),)),
        Case(f"{small.tolist()} (greedy row by row: 1 + 10, optimal: 2 + 0)", (torch.tensor(small),)),
    ]


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
    return merge_qkv(r, layout="in_out"), merge_qkv(c, layout="in_out"), perm


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


def recover_cases(rng: np.random.Generator) -> list[Case]:
    """Clean shuffles, a noisy client, and three traps (greedy, one-block costs, shared Q).

    Every case's true permutation is what Hungarian matching on the L2 distances of the heads' full
    Q, K, V weights finds (tests/test_checks_heads.py checks this for many seeds).
    """
    g = torch_generator(rng)
    cases = []
    for n_heads, d_in, d_head in ((2, 4, 2), (3, 5, 2), (5, 8, 2)):
        perm = random_perm(rng, n_heads)
        qkv = _fused(g, n_heads, d_in, d_head)
        client = permute_qkv(qkv, perm, n_heads, layout="in_out")
        cases.append(Case(f"{n_heads} heads, a clean shuffle {perm.tolist()}", (qkv, client, n_heads),
                          expect={"perm": perm, "noisy": False}))
    perm = random_perm(rng, 6)
    qkv = _fused(g, 6, 16, 2)
    client = permute_qkv(qkv, perm, 6, layout="in_out") + 0.3 * torch.randn(qkv.shape, generator=g)
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


def head_cost(ref_qkv: torch.Tensor, client_qkv: torch.Tensor, n_heads: int, blocks=(0, 1, 2)) -> np.ndarray:
    """``cost[i, j]`` = L2 distance between client head i and reference head j (on the chosen blocks)."""
    return torch.cdist(features(client_qkv, n_heads, blocks), features(ref_qkv, n_heads, blocks)).numpy()


def _orthogonal(rng: np.random.Generator, n: int, count: int) -> torch.Tensor:
    """``count`` random orthogonal ``n x n`` matrices (NumPy's QR: much faster than torch's for tiny ones)."""
    q, r = np.linalg.qr(rng.standard_normal((count, n, n)))
    return torch.as_tensor(q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :], dtype=torch.float32)


def _rotated(h: HeadWeights, rng: np.random.Generator) -> HeadWeights:
    """The same heads rotated inside each head: ``W_Q R, W_K R, W_V S, S^T W_O`` (same scores, same output)."""
    R, S = _orthogonal(rng, h.d_head, h.n_heads), _orthogonal(rng, h.d_head, h.n_heads)
    return HeadWeights(h.W_Q @ R, h.W_K @ R, h.W_V @ S, W_O=S.transpose(1, 2) @ h.W_O)


def invariant_cases(rng: np.random.Generator) -> list[Case]:
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
        heads = HeadWeights(Q, K, V, W_O=O)
        both = HeadWeights(*(torch.cat([a, b]) for a, b in zip(
            tensors(heads), tensors(_rotated(heads, rng)), strict=True)))
        n = heads.n_heads
        order = rng.permutation(2 * n)
        group = [int(old) % n for old in order]  # row r holds head group[r] (itself or rotated)
        name = f"{n} heads (two of them twins) and their rotated copies, d_in {d_in}, d_head {d_head}, d_out {d_out}"
        expect = {"group": group, "twins": [{0, n_base}, {1, n_base + 1}]}
        cases.append(Case(name, tensors(both.permute(torch.as_tensor(order))), expect=expect))
    return cases


def tensors(h: HeadWeights) -> tuple[torch.Tensor, ...]:
    return (h.W_Q, h.W_K, h.W_V, h.W_O)


def mha_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for n_heads, d_head in ((2, 3), (3, 2), (4, 4)):
        d_model = n_heads * d_head
        perm = random_perm(rng, n_heads)
        w_in = torch.randn(3 * d_model, d_model, generator=g)
        b_in = torch.randn(3 * d_model, generator=g)
        w_out = torch.randn(d_model, d_model, generator=g)
        cases.append(Case(f"{n_heads} heads of width {d_head}, perm {perm.tolist()}", (w_in, b_in, w_out, perm, n_heads)))
    return cases
