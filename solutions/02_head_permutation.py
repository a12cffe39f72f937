# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 2 problem set: permute heads, then find them again
#
# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*
#
# **Learning goals.** After this problem set you can
# 1. permute the heads of a fused QKV weight with one clear convention, and undo it;
# 2. turn heads into feature vectors and match two sets of heads optimally, and show where greedy
#    matching goes wrong;
# 3. recover an unknown permutation from a noisy copy, with the right convention;
# 4. build head features that a rotation inside a head cannot change, and say which features are
#    not enough;
# 5. shuffle the heads of `torch.nn.MultiheadAttention` without changing what it computes, and
#    explain why a partial shuffle does change it.
#
# After each exercise comes a question: answer it before you run the cell below it. Hints are folded
# away under "Hint": try without them first.
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
from toyattn.heads.matching import greedy_match
from toyattn.heads.permutations import random_permutation
from toyattn.heads.weights import HeadWeights, rotate_within_heads

gen = seed_everything(0)

# %% [markdown]
# ## Exercise 1: permute the heads of a fused QKV weight
#
# Write `permute_heads(qkv, perm, n_heads)` for a fused weight `[d_in, 3 * n_heads * d_head]`: the
# same shape, with new head `i` = old head `perm[i]`. Remember what a head is in this matrix.

# %% [markdown]
# <details><summary>Hint (open it if you are stuck)</summary>
#
# `d_head = qkv.shape[1] // (3 * n_heads)`. Reshape the columns into `[3, n_heads, d_head]` (in that
# order: that is how they are laid out), index the head axis with `perm`, reshape back. Use
# `qkv.shape[0]` for `d_in`, never `n_heads * d_head`.
# </details>

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
# **Predict first:** in a weight whose columns hold their own head's number (head 0's columns are all
# 0, head 1's all 1, ...), what does the first row look like after `perm = [1, 2, 0]`? Where did old
# head 0 go? Run the next cell.

# %%
labelled = torch.arange(3).repeat_interleave(2).repeat(3).float().expand(2, -1)  # 3 heads, d_head 2
print("before:", labelled[0].int().tolist())
print("after: ", permute_heads(labelled, torch.tensor([1, 2, 0]), 3)[0].int().tolist())

# %% [markdown]
# Each of the Q, K and V blocks now reads heads 1, 2, 0: old head 0 is new head 2, because
# `perm[2] = 0`. All three blocks moved the same way: a head is its Q, K and V together.
#
# ## Exercise 2: the inverse permutation
#
# Write `invert_permutation(perm)`: the permutation that undoes `perm`, so that permuting by `perm`
# and then by the result gives the original back. Careful: for a swap such as `[1, 0]` the inverse
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

# %% [markdown]
# **Predict first:** for `perm = [1, 2, 3, 0]`, does permuting by `perm` and then by your inverse give
# the original weight back? Does permuting by `perm` and then by `perm` again? Run the next cell.

# %%
qkv = torch.randn(5, 3 * 4 * 2, generator=gen)  # d_in 5, 4 heads of width 2
perm = torch.tensor([1, 2, 3, 0])
round_trip = permute_heads(permute_heads(qkv, perm, 4), invert_permutation(perm), 4)
twice = permute_heads(permute_heads(qkv, perm, 4), perm, 4)
print("perm, then its inverse gives the original:", torch.equal(round_trip, qkv))
print("perm, then perm again gives the original: ", torch.equal(twice, qkv))

# %% [markdown]
# The inverse undoes the shuffle; the same permutation applied twice does not (it would only for a
# permutation made of swaps).
#
# ## Exercise 3: one feature vector per head
#
# To compare heads we turn each head into one vector holding all of its weights (its Q, K and V
# blocks, `[d_in, d_head]` each). Write `head_features(qkv, n_heads)` returning
# `[n_heads, 3 * d_in * d_head]`, row `h` = every weight of head `h`. The order inside a row is your
# choice, as long as every head uses the same order (distances between rows then compare the same
# weight with the same weight).

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
# **Predict first:** `client` below is `qkv` with its heads permuted by `perm = [1, 2, 3, 0]`. In the
# matrix of distances between the client's heads (rows) and the reference's heads (columns), where
# are the zeros? Run the next cell.

# %%
client = permute_heads(qkv, perm, 4)
print(torch.cdist(head_features(client, 4), head_features(qkv, 4)).round(decimals=2))

# %% [markdown]
# Row `i` has its zero in column `perm[i]`: client head `i` *is* reference head `perm[i]`. Reading the
# permutation off a distance matrix is the idea of the next two exercises.
#
# ## Exercise 4: the optimal matching
#
# Given a square cost matrix, assign every row its own column so that the **total** cost is as
# small as possible. Return `match` (a LongTensor) with `match[i]` = the column given to row `i`.
# Taking the cheapest free column row by row (greedy) is not enough: the check gives you matrices on
# which it goes wrong.

# %% [markdown]
# <details><summary>Hint (open it if you are stuck)</summary>
#
# This is the linear assignment problem, and SciPy solves it: `scipy.optimize.linear_sum_assignment`
# (imported above) takes a NumPy array and returns `(row_indices, column_indices)`.
# </details>

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
# **Predict first:** on 200 random 8 x 8 cost matrices (entries uniform in [0, 1]), how often does
# greedy matching (`toyattn.heads.matching.greedy_match`) find the optimal total, and how much more does it
# cost on average? Run the next cell.

# %%
rows = torch.arange(8)
extra, optimal_count = [], 0
for _ in range(200):
    cost = torch.rand(8, 8, generator=gen)
    best, greedy = cost[rows, optimal_match(cost)].sum(), cost[rows, greedy_match(cost)].sum()
    extra.append(float(greedy / best - 1))
    optimal_count += bool(greedy <= best + 1e-6)
print(f"greedy is optimal on {optimal_count} of 200 matrices; it costs {100 * sum(extra) / 200:.0f}% more on average")

# %% [markdown]
# The printout shows how rarely greedy is optimal on random matrices, and what that costs. The optimal
# matching is never worse, by definition.
#
# ## Exercise 5: recover an unknown permutation
#
# Now combine exercises 3 and 4. Given the reference weight and a client, a copy of it with its heads
# permuted, return `perm`, so that `client ≈ permute_heads(ref, perm)`. The client may have been
# fine-tuned: its weights are then close to the reference's, not equal. You decide how to compare
# heads and which way round to build the cost matrix.

# %% [markdown]
# <details><summary>Hint (open it if you are stuck)</summary>
#
# `torch.cdist(a, b)[i, j]` is the distance between row `i` of `a` and row `j` of `b`. `perm[i]` is,
# for client head `i`, the reference head it came from: so which heads should be the rows?
# </details>

# %%
def recover_permutation(ref_qkv: torch.Tensor, client_qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Both [d_in, 3*n_heads*d_head] -> perm with client_qkv ≈ permute_heads(ref_qkv, perm, n_heads)."""
    ### BEGIN SOLUTION
    cost = torch.cdist(head_features(client_qkv, n_heads), head_features(ref_qkv, n_heads))
    return optimal_match(cost)  # rows = client heads, so match[i] = the reference head of client head i
    ### END SOLUTION


checks.check_recover_permutation(recover_permutation)

# %% [markdown]
# **Predict first:** the research notebook this lesson grew out of put the *reference* heads in the
# rows of the cost matrix. On the fine-tuned client below, what would that return: `secret`, its
# inverse, or something else? Its tests only ever used swaps and reversals: would they have noticed?
# Run the next cell.

# %%
secret = random_permutation(8, gen)
big_ref = torch.randn(32, 3 * 8 * 4, generator=gen)
tuned = permute_heads(big_ref, secret, 8) + 0.3 * torch.randn(big_ref.shape, generator=gen)
ref_rows = optimal_match(torch.cdist(head_features(big_ref, 8), head_features(tuned, 8)))
print("secret:                   ", secret.tolist())
print("yours:                    ", recover_permutation(big_ref, tuned, 8).tolist())
print("reference heads as rows:  ", ref_rows.tolist())
print("inverse of secret:        ", invert_permutation(secret).tolist())
swap = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])
print("a swap is its own inverse:", torch.equal(invert_permutation(swap), swap))

# %% [markdown]
# With the reference in the rows you get, for each reference head, where it went: the inverse. For a
# swap or a reversal the inverse is the permutation itself, so tests that use only those cannot see
# the mistake. Test with a permutation that is not its own inverse.
#
# ## Exercise 6: features that survive a rotation inside a head
#
# For orthogonal `R` and `S`, the head with weights `W_Q R`, `W_K R`, `W_V S` and `S^T W_O` gives
# exactly the same attention scores and the same output as the head with `W_Q`, `W_K`, `W_V`, `W_O`,
# but different raw weights, so exercise 5 fails on such a client. Write
# `rotation_invariant_features(W_Q, W_K, W_V, W_O)` for per-head weights (`[n_heads, d_in, d_head]`
# for Q, K and V, `[n_heads, d_head, d_out]` for O) returning `[n_heads, n_features]` features that
# (a) do not change under such a rotation and (b) still tell apart heads that compute different
# things. Which features is your decision; the check tries both (a) and (b), including heads that
# have the same weight norms and singular values but compute different things.

# %% [markdown]
# <details><summary>Hint (open it if you are stuck)</summary>
#
# A head's scores are $x_q W_Q W_K^\top x_k^\top$ and its output is $\text{weights} \cdot x W_V W_O$:
# in which products does $R$ (or $S$) meet its own transpose and cancel? Batched matrix products
# (`@` on 3-D tensors) do all heads at once; flatten and concatenate per head.
# </details>

# %%
def rotation_invariant_features(W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    """Per-head features [n_heads, n_features] that a rotation inside a head does not change."""
    ### BEGIN SOLUTION
    n_heads = W_Q.shape[0]
    W_QK = W_Q @ W_K.transpose(1, 2)  # [n_heads, d_in, d_in]
    W_OV = W_V @ W_O  # [n_heads, d_in, d_out]
    return torch.cat([W_QK.reshape(n_heads, -1), W_OV.reshape(n_heads, -1)], dim=1)
    ### END SOLUTION


checks.check_invariant_features(rotation_invariant_features)

# %% [markdown]
# Now use your features on a shuffled **and rotated** client and compare with raw features.
#
# **Predict first:** what fraction of 8 heads will each method recover? Run the next cell.

# %%
ref_heads = HeadWeights(*(torch.randn(8, 16, 4, generator=gen) for _ in range(3)), W_O=torch.randn(8, 4, 16, generator=gen))
client_heads = rotate_within_heads(ref_heads.permute(secret), gen)


def features_of(h: HeadWeights) -> torch.Tensor:
    return rotation_invariant_features(h.W_Q, h.W_K, h.W_V, h.W_O)


def raw_of(h: HeadWeights) -> torch.Tensor:
    return torch.cat([h.W_Q.flatten(1), h.W_K.flatten(1), h.W_V.flatten(1), h.W_O.flatten(1)], dim=1)


for name, fn in (("raw weights", raw_of), ("your features", features_of)):
    found = optimal_match(torch.cdist(fn(client_heads), fn(ref_heads)))
    print(f"{name:>13}: {(found == secret).float().mean():.0%} of heads recovered")

# %% [markdown]
# The printout compares the two: raw weights see the rotation, your features do not.
#
# ## Exercise 7: shuffle the heads of `nn.MultiheadAttention` without changing what it computes
#
# PyTorch stores `in_proj_weight` as `[3 * embed_dim, embed_dim]` (the `"out_in"` layout: the layer
# computes `x @ W.T`), so `in_proj_weight.T` is in the layout of exercise 1; `in_proj_bias`,
# `[3 * embed_dim]`, is laid out like one row of it. The output projection `out_proj.weight` is
# `[embed_dim, n_heads * d_head]`: head `h`'s output is multiplied by its group of `d_head` **columns**.
#
# Write `permute_mha_weights(in_proj_weight, in_proj_bias, out_proj_weight, perm, n_heads)` returning
# the three tensors of the layer with its heads reordered (new head `i` = old head `perm[i]`), in
# their original layouts: everything that belongs to a head must move with it.

# %%
def permute_mha_weights(
    in_proj_weight: torch.Tensor, in_proj_bias: torch.Tensor, out_proj_weight: torch.Tensor, perm: torch.Tensor, n_heads: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(in_proj_weight, in_proj_bias, out_proj_weight) with new head i = old head perm[i], same shapes."""
    ### BEGIN SOLUTION
    w_in = permute_heads(in_proj_weight.T, perm, n_heads).T
    b_in = permute_heads(in_proj_bias[None, :], perm, n_heads)[0]
    d_out = out_proj_weight.shape[0]
    w_out = out_proj_weight.reshape(d_out, n_heads, -1)[:, perm].reshape(d_out, -1)  # [d_out, head, d_head]
    return w_in, b_in, w_out
    ### END SOLUTION


checks.check_permute_mha(permute_mha_weights)

# %% [markdown]
# **Predict first:** load the permuted weights into a layer and feed it the same input. How much does
# its output change (a) when you load all three tensors, (b) when you load only the permuted
# `in_proj_weight` and `in_proj_bias` and keep the old `out_proj`? Run the next cell.

# %%
torch.manual_seed(0)
mha = torch.nn.MultiheadAttention(embed_dim=12, num_heads=4, batch_first=True)
with torch.no_grad():
    mha.in_proj_bias.normal_()
x = torch.randn(2, 6, 12)
before, _ = mha(x, x, x)
w_in, b_in, w_out = permute_mha_weights(
    mha.in_proj_weight.detach(), mha.in_proj_bias.detach(), mha.out_proj.weight.detach(), torch.tensor([2, 3, 1, 0]), 4
)
with torch.no_grad():
    mha.in_proj_weight.copy_(w_in)
    mha.in_proj_bias.copy_(b_in)
    partial = (mha(x, x, x)[0] - before).abs().max()
    mha.out_proj.weight.copy_(w_out)
    joint = (mha(x, x, x)[0] - before).abs().max()
print(f"max |output change|, all three permuted : {joint:.1e}")
print(f"max |output change|, out_proj left as is: {partial:.1e}")
print(f"max |output| itself                     : {before.abs().max():.1e}")

# %% [markdown]
# Permuting everything that belongs to the heads changes the output by a rounding error at most: the
# layer adds up its heads' contributions, and the sum does not care about their order. Leaving
# `out_proj` behind changes the output on the scale of the output itself: now head `i`'s output is
# multiplied by the block that belonged to another head. This is why two copies of one model can
# hold their heads in different orders, and why matching heads has to come first when comparing them.
#
# ## What you practised, and what to try next
#
# * Reshape to expose the head axis, index it, reshape back: that is all a head permutation is, as long
#   as you know the layout.
# * The cost matrix's orientation decides whether you get `perm` or its inverse: test with a
#   permutation that is **not** its own inverse.
# * Optimal matching (`linear_sum_assignment`) never loses to greedy on total cost; greedy loses
#   whenever an early row takes the column a later row needed more.
# * Features built from $W_{QK}$ and $W_{OV}$ see what a head *does*, not how its coordinates happen
#   to be arranged; norms and singular values alone cannot tell every two heads apart.
#
# **Try next:** raise the noise on the fine-tuned client in exercise 5 (`0.3` -> `1.0`, `2.0`) and
# compare your `optimal_match` with `greedy_match` over many trials; or compute your
# `rotation_invariant_features` for the 12 heads of a real layer (the lesson notebook shows how to load
# all-MiniLM-L6-v2).
