# %% [markdown]
# # Lesson 2 problem set: permute heads, then find them again
#
# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*
#
# **Learning goals.** By the end of this problem set you have written, yourself,
# 1. a head permutation for a fused QKV weight, and its inverse;
# 2. per-head feature vectors and an optimal matching of two sets of heads;
# 3. a function that recovers an unknown permutation, with the right convention;
# 4. rotation-invariant head features $W_{QK}$ and $W_{OV}$;
# 5. (bonus) a head shuffle of `torch.nn.MultiheadAttention` that leaves its output unchanged.
#
# Read `notebooks/02_head_permutation` first: it explains the ideas and the plots. Here you write the
# code. Each exercise cell has `# YOUR CODE HERE` and `raise NotImplementedError()`; replace them,
# run the cell, and the check right below it tells you whether your answer matches the reference.
#
# **Conventions used in every exercise.**
# * A fused QKV weight has the layout of GPT-2's `c_attn`: shape `[d_in, 3 * n_heads * d_head]`, the
#   layer computes `x @ qkv`; columns are the Q block, then the K block, then the V block, and inside
#   each block head 0's `d_head` columns, then head 1's, and so on. `d_in` need **not** equal
#   `n_heads * d_head`.
# * A permutation `perm` is a `LongTensor` holding each head index once, and applying it means
#   **new head i = old head `perm[i]`**.

# %%
import torch
from scipy.optimize import linear_sum_assignment

from toyattn import checks, seed_everything
from toyattn.heads import HeadWeights, random_permutation, rotate_within_heads

gen = seed_everything(0)

# %% [markdown]
# ## Exercise 1: permute the heads of a fused QKV weight
#
# Hint: `d_head = qkv.shape[1] // (3 * n_heads)`. Reshape the columns into `[3, n_heads, d_head]`
# (in that order: that is how they are laid out), index the head axis with `perm`, reshape back.
# Use `qkv.shape[0]` for `d_in`, never `n_heads * d_head`.
#
# **Predict first:** for `perm = [1, 2, 0]`, where does old head 0 end up?

# %%
def permute_heads(qkv: torch.Tensor, perm: torch.Tensor, n_heads: int) -> torch.Tensor:
    """qkv: [d_in, 3*n_heads*d_head] -> same shape, new head i = old head perm[i] in Q, K and V."""
    ### BEGIN SOLUTION
    d_in = qkv.shape[0]
    d_head = qkv.shape[1] // (3 * n_heads)
    blocks = qkv.reshape(d_in, 3, n_heads, d_head)
    return blocks[:, :, perm, :].reshape(d_in, 3 * n_heads * d_head)
    ### END SOLUTION


checks.check_permute_heads(permute_heads)

# %% [markdown]
# (Old head 0 becomes new head 2, because `perm[2] = 0`.)
#
# ## Exercise 2: the inverse permutation
#
# Write `invert_permutation(perm)` returning `inv` with `inv[perm[i]] = i`, so that permuting by
# `perm` and then by `inv` gives the original back. Careful: for a swap such as `[1, 0]` the inverse
# is the permutation itself, which makes it easy to write something that only works for swaps.

# %%
def invert_permutation(perm: torch.Tensor) -> torch.Tensor:
    """perm: [n] LongTensor -> inv: [n] LongTensor with inv[perm[i]] = i."""
    ### BEGIN SOLUTION
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm), device=perm.device)
    return inv
    ### END SOLUTION


checks.check_invert_permutation(invert_permutation)

# %%
qkv = torch.randn(5, 3 * 4 * 2, generator=gen)  # d_in 5, 4 heads of width 2
perm = torch.tensor([1, 2, 3, 0])
round_trip = permute_heads(permute_heads(qkv, perm, 4), invert_permutation(perm), 4)
print("permute, then un-permute gives back the original:", torch.equal(round_trip, qkv))

# %% [markdown]
# ## Exercise 3: one feature vector per head
#
# To compare heads we turn each head into one vector holding all of its weights: its Q block
# `[d_in, d_head]`, then its K block, then its V block, each flattened. Return `[n_heads, 3 * d_in * d_head]`.
# (Any fixed order inside a row works for distances, as long as every head uses the same order;
# the check accepts that.)

# %%
def head_features(qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
    """qkv: [d_in, 3*n_heads*d_head] -> [n_heads, 3*d_in*d_head], row h = all weights of head h."""
    ### BEGIN SOLUTION
    d_in = qkv.shape[0]
    d_head = qkv.shape[1] // (3 * n_heads)
    blocks = qkv.reshape(d_in, 3, n_heads, d_head)  # [d_in, Q/K/V, head, d_head]
    return blocks.permute(2, 1, 0, 3).reshape(n_heads, 3 * d_in * d_head)
    ### END SOLUTION


checks.check_head_features(head_features)

# %% [markdown]
# ## Exercise 4: the optimal matching
#
# Given a square cost matrix, assign every row its own column so that the **total** cost is as
# small as possible. Return `match` with `match[i]` = the column given to row `i`. Taking the
# cheapest free column row by row (greedy) is not enough: the check includes a matrix where that
# costs 11.05 instead of 3.35. Use `scipy.optimize.linear_sum_assignment` (imported above); it
# takes a NumPy array and returns `(row_indices, column_indices)`.

# %%
def optimal_match(cost: torch.Tensor) -> torch.Tensor:
    """cost: [n, n] -> match: [n] LongTensor, a permutation minimising sum_i cost[i, match[i]]."""
    ### BEGIN SOLUTION
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    match = torch.empty(len(rows), dtype=torch.long)
    match[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
    return match
    ### END SOLUTION


checks.check_optimal_match(optimal_match)

# %% [markdown]
# ## Exercise 5: recover an unknown permutation
#
# Now combine exercises 3 and 4. Given the reference weight and a client `= permute_heads(ref, perm)`,
# return `perm`. Build the cost matrix with `torch.cdist` between head features.
#
# **Predict first:** should the rows of the cost matrix be the reference heads or the client heads?
# (Think of what `perm[i]` means: for client head `i`, the reference head it came from. The research
# notebook this lesson grew out of put the reference in the rows, and returned the inverse; it only
# ever tested swaps and reversals, which are their own inverse. The check tells you if you fall into
# the same trap.)

# %%
def recover_permutation(ref_qkv: torch.Tensor, client_qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Both [d_in, 3*n_heads*d_head] -> perm with client_qkv == permute_heads(ref_qkv, perm, n_heads)."""
    ### BEGIN SOLUTION
    cost = torch.cdist(head_features(client_qkv, n_heads), head_features(ref_qkv, n_heads))
    return optimal_match(cost)  # rows = client heads, so match[i] = the reference head of client head i
    ### END SOLUTION


checks.check_recover_permutation(recover_permutation)

# %%
secret = random_permutation(8, gen)
big_ref = torch.randn(32, 3 * 8 * 4, generator=gen)
print("secret:   ", secret.tolist())
print("recovered:", recover_permutation(big_ref, permute_heads(big_ref, secret, 8), 8).tolist())

# %% [markdown]
# ## Exercise 6: features that survive a rotation inside a head
#
# For an orthogonal `R`, the weights `W_Q[h] @ R` and `W_K[h] @ R` give exactly the same attention
# scores as `W_Q[h]` and `W_K[h]`, but different raw weights, so exercise 5 fails on such a client.
# The products $W_{QK} = W_Q W_K^\top$ (`[d_in, d_in]`) and $W_{OV} = W_V W_O$ (`[d_in, d_out]`) do not
# change. Write `qk_ov_features(W_Q, W_K, W_V, W_O)` for per-head weights (shapes
# `[n_heads, d_in, d_head]` for Q, K, V and `[n_heads, d_head, d_out]` for O) returning, per head,
# `W_Q[h] @ W_K[h].T` flattened followed by `W_V[h] @ W_O[h]` flattened: `[n_heads, d_in*d_in + d_in*d_out]`.
# Batched matrix products (`@` on 3-D tensors) do all heads at once.

# %%
def qk_ov_features(W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    """Per-head W_QK and W_OV, flattened and concatenated: [n_heads, d_in*d_in + d_in*d_out]."""
    ### BEGIN SOLUTION
    n_heads = W_Q.shape[0]
    W_QK = W_Q @ W_K.transpose(1, 2)  # [n_heads, d_in, d_in]
    W_OV = W_V @ W_O  # [n_heads, d_in, d_out]
    return torch.cat([W_QK.reshape(n_heads, -1), W_OV.reshape(n_heads, -1)], dim=1)
    ### END SOLUTION


checks.check_qk_ov_features(qk_ov_features)

# %% [markdown]
# Now use your features on a shuffled **and rotated** client and compare with raw features.
#
# **Predict first:** what fraction of 8 heads will each method recover?

# %%
ref_heads = HeadWeights(*(torch.randn(8, 16, 4, generator=gen) for _ in range(3)), W_O=torch.randn(8, 4, 16, generator=gen))
client_heads = rotate_within_heads(ref_heads.permute(secret), gen)


def features_of(h: HeadWeights) -> torch.Tensor:
    return qk_ov_features(h.W_Q, h.W_K, h.W_V, h.W_O)


def raw_of(h: HeadWeights) -> torch.Tensor:
    return torch.cat([h.W_Q.flatten(1), h.W_K.flatten(1), h.W_V.flatten(1), h.W_O.flatten(1)], dim=1)


for name, fn in (("raw weights", raw_of), ("W_QK / W_OV", features_of)):
    found = optimal_match(torch.cdist(fn(client_heads), fn(ref_heads)))
    print(f"{name:>12}: {(found == secret).float().mean():.0%} of heads recovered")

# %% [markdown]
# ## Bonus exercise 7: shuffle the heads of `nn.MultiheadAttention` without changing its output
#
# PyTorch stores `in_proj_weight` as `[3 * embed_dim, embed_dim]` (the `"out_in"` layout: the layer
# computes `x @ W.T`), so `in_proj_weight.T` is in the layout of exercise 1. Its output projection
# `out_proj.weight` is `[embed_dim, n_heads * d_head]`: head h's block is a group of `d_head` **columns**.
# Write `shuffle_mha(mha, perm)` that changes `mha` in place: permute the heads of `in_proj_weight`,
# `in_proj_bias` (`[3 * embed_dim]`, laid out like one row of the fused weight) and the column blocks of
# `out_proj.weight`. The cell after it verifies the result itself (the course's reference is
# `toyattn.heads.permute_mha`).

# %%
def shuffle_mha(mha: torch.nn.MultiheadAttention, perm: torch.Tensor) -> None:
    """Reorder the heads of `mha` in place (new head i = old head perm[i]) without changing its output."""
    n_heads = mha.num_heads
    with torch.no_grad():
        ### BEGIN SOLUTION
        mha.in_proj_weight.copy_(permute_heads(mha.in_proj_weight.T, perm, n_heads).T)
        mha.in_proj_bias.copy_(permute_heads(mha.in_proj_bias[None, :], perm, n_heads)[0])
        d_model = mha.out_proj.weight.shape[0]
        out_blocks = mha.out_proj.weight.reshape(d_model, n_heads, -1)  # [d_model, head, d_head]
        mha.out_proj.weight.copy_(out_blocks[:, perm].reshape(d_model, -1))
        ### END SOLUTION


torch.manual_seed(0)
mha = torch.nn.MultiheadAttention(embed_dim=12, num_heads=4, batch_first=True)
with torch.no_grad():
    mha.in_proj_bias.normal_()
x = torch.randn(2, 6, 12)
before, _ = mha(x, x, x)
original_weight = mha.in_proj_weight.detach().clone()
shuffle_mha(mha, torch.tensor([2, 3, 1, 0]))
after, _ = mha(x, x, x)
change = (after - before).abs().max()
print(f"max |output change| after your shuffle: {change:.1e}")
assert change < 1e-5, "the output changed: did you permute the bias and the out_proj columns with the same perm?"
assert not torch.equal(mha.in_proj_weight, original_weight), "the weights did not change: shuffle_mha must work in place"

# %% [markdown]
# ## What you practised, and what to try next
#
# * Reshape to expose the head axis, index it, reshape back: that is all a head permutation is, as long
#   as you know the layout.
# * The cost matrix's orientation decides whether you get `perm` or its inverse: test with a
#   permutation that is **not** its own inverse.
# * Optimal matching (`linear_sum_assignment`) costs almost nothing more than greedy and never loses
#   on total cost.
# * Features built from $W_{QK}$ and $W_{OV}$ see what a head *does*, not how its coordinates happen
#   to be arranged.
#
# **Try next:** add noise to the client in exercise 5 (`client + 2.0 * torch.randn_like(client)`) and
# compare your `optimal_match` with a greedy matcher over many trials; or compute `qk_ov_features`
# for the 12 heads of a real layer (the lesson notebook shows how to load all-MiniLM-L6-v2).
