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
# # Lesson 2: shuffling attention heads in a fused QKV matrix, and getting them back
#
# A multi-head attention layer keeps the query, key and value projections of **all** its heads in
# one big matrix. The heads inside it have no natural order: shuffle them (together with the output
# projection) and the layer computes exactly the same function. So when you compare two models, or
# merge them, or check a fine-tuned copy against its parent, you first have to find out **which head
# is which**. This lesson builds that tool from the ground up.
#
# **Learning goals.** After this lesson you can
# 1. read a fused QKV weight in both common layouts (GPT-2's `[d_in, 3*H*d_head]` and PyTorch's
#    `[3*H*d_head, d_in]`) and cut it into heads;
# 2. permute heads with one clear convention, and explain why the output projection must move too;
# 3. recover an unknown permutation by comparing heads (a cost matrix plus a matching), and say why
#    the optimal (Hungarian) matching beats the greedy one;
# 4. explain the second symmetry, a rotation *inside* a head, and match heads with features that
#    do not see it: $W_{QK} = W_Q W_K^\top$ and $W_{OV} = W_V W_O$;
# 5. apply all of it to a model you train here and to a real pretrained encoder layer.
#
# The problem set `exercises/02_head_permutation` has you write the key pieces yourself.

# %%
import copy
import time

import numpy as np
import plotly.graph_objects as go
import torch

from toyattn import seed_everything
from toyattn.heads.figures import cost_heatmap, head_blocks_figure, qkv_heatmap
from toyattn.heads.fused_qkv import permute_mha, permute_qkv, split_qkv
from toyattn.heads.matching import (
    cost_matrix,
    greedy_match,
    hungarian_match,
    invariant_cost_matrix,
    raw_features,
    recover_permutation,
    singular_value_features,
)
from toyattn.heads.permutations import invert_permutation, random_permutation, recovery_accuracy
from toyattn.heads.weights import HeadWeights, random_orthogonal, rotate_within_heads
from toyattn.models.transformer import Transformer, TransformerConfig
from toyattn.progress import progress
from toyattn.weights.bert import bert_attention_as_mha
from toyattn.weights.pretrained import PretrainedNotInstalled, minilm_path

NOTEBOOK_START = time.perf_counter()
gen = seed_everything(0)

# %% [markdown]
# ## 1. What a fused QKV weight looks like
#
# Take a layer with `n_heads = H` heads of width `d_head` reading a `d_in`-dimensional input. Its
# three projections are stacked along one axis of length `3 * H * d_head`: first the Q block, then
# the K block, then the V block, and inside each block head 0's `d_head` columns, then head 1's, ...
#
# Two layouts are common, and **the shape alone cannot tell them apart** whenever both sides are
# divisible by `3*H` (a square weight always is), so every function in `toyattn.heads.fused_qkv` takes the
# layout explicitly:
#
# | layout | shape | the layer computes | found in |
# | --- | --- | --- | --- |
# | `"in_out"` | `[d_in, 3*H*d_head]` | `x @ W` | GPT-2's `Conv1D` (`c_attn.weight`) |
# | `"out_in"` | `[3*H*d_head, d_in]` | `x @ W.T` | `nn.Linear`, `nn.MultiheadAttention.in_proj_weight` |
#
# To *see* the structure, we build a weight where every (block, head) pair is filled with its own
# integer: the Q block of head h holds h, the K block holds 3 + h, the V block 6 + h. Note that
# `d_in = 4` is **not** `H * d_head = 6`: nothing below assumes they are equal. Real models break
# that equation: Gemma 3 270M, which this course ships for lesson 3, reads a 640-dimensional
# residual stream with 4 query heads of 256 (1024 query columns; numbers from its GGUF file), and
# Gemma-7B, for example, has `d_model` 3072 with 16 heads of 256 (Gemma Team 2024, arXiv 2403.08295,
# Table 1). The research notebook this lesson grew from assumed `d_in = H * d_head`.

# %%
n_heads, d_head, d_in = 3, 2, 4


def labelled_qkv(n_heads: int, d_head: int, d_in: int) -> torch.Tensor:
    """[d_in, 3*n_heads*d_head] with block b (Q=0, K=1, V=2) of head h filled with 3*b + h."""
    values = torch.arange(3 * n_heads, dtype=torch.float32).repeat_interleave(d_head)  # one per column
    return values.expand(d_in, -1).clone()


qkv = labelled_qkv(n_heads, d_head, d_in)
qkv_heatmap(qkv, n_heads, layout="in_out", title="A fused QKV weight [d_in=4, 3*H*d_head=18], layout 'in_out'").show()

# %% [markdown]
# Each colour is one (block, head) pair; the thick white lines separate Q, K and V, the thin ones
# separate heads. Hover over a cell to read its label and value. The same layer stored the PyTorch
# way is the transpose, and `split_qkv` gives identical heads from both:

# %%
heads_in_out = split_qkv(qkv, n_heads, layout="in_out")  # [3, n_heads, d_in, d_head]
heads_out_in = split_qkv(qkv.T, n_heads, layout="out_in")
print("per-head blocks:", tuple(heads_in_out.shape), "= [Q/K/V, head, d_in, d_head]")
print("both layouts give the same heads:", torch.equal(heads_in_out, heads_out_in))

# %% [markdown]
# ## 2. Permuting heads: one convention
#
# The course uses one convention everywhere: a permutation `perm` is a tensor holding each head
# index once, and applying it means
#
# > **new head i = old head `perm[i]`** (a gather, `heads[perm]`).
#
# The Q, K and V blocks of a head move together, since a head *is* its (Q, K, V) triple.
#
# **Predict first:** with `perm = [2, 0, 1]`, which value fills the first two columns of the result
# (new Q head 0)? And the first two columns of the K block?

# %%
perm = torch.tensor([2, 0, 1])
qkv_permuted = permute_qkv(qkv, perm, n_heads, layout="in_out")
qkv_heatmap(qkv_permuted, n_heads, layout="in_out", title=f"After permute_qkv with perm = {perm.tolist()}").show()
print("first row before:", qkv[0].int().tolist())
print("first row after: ", qkv_permuted[0].int().tolist())

# %% [markdown]
# New Q head 0 holds 2 (it was old head 2), new K head 0 holds 5 = 3 + 2: the whole head moved.
# Two helpers complete the picture: `invert_permutation(perm)` undoes a permutation (here `[1, 2, 0]`,
# which is *not* `perm` itself: every permutation is a product of swaps, but only those made of
# *disjoint* swaps, each head trading places with at most one other (the involutions), are their
# own inverse; `[2, 0, 1]` moves three heads in a cycle), and `compose_permutations(p1, p2)`
# is applying `p1` then `p2` in one go (`p1[p2]`).

# %%
inv = invert_permutation(perm)
print("inverse of", perm.tolist(), "is", inv.tolist())
print("permute then un-permute gives the original:",
      torch.equal(permute_qkv(qkv_permuted, inv, n_heads, layout="in_out"), qkv))

# %% [markdown]
# ### Looking inside each head
#
# Constant blocks hide one thing: the *inside* of a head. Let us give the three heads the seed
# notebook's shapes (a checkerboard, stripes and a gradient; Q adds 0, K adds 4, V adds 8 so the
# blocks stay distinguishable) and draw every head's Q, K and V blocks `[d_in, d_head]` on a grid.

# %%
d_in_b, d_head_b = 5, 2
rows, cols = torch.meshgrid(torch.arange(d_in_b), torch.arange(d_head_b), indexing="ij")
patterns = [(rows + cols) % 2, (cols % 2) * 2 + 1, rows % 4]  # checkerboard, stripes, gradient: [d_in, d_head]
blocks = torch.stack([torch.stack([p + 4 * b for p in patterns]) for b in range(3)]).float()  # [3, H, d_in, d_head]
patterned = HeadWeights(blocks[0], blocks[1], blocks[2])
head_blocks_figure(patterned, title="Before: each row is one head, columns are its Q, K, V blocks").show()

# %%
shuffled = patterned.permute(perm)
head_blocks_figure(shuffled, title=f"After perm = {perm.tolist()}: whole rows moved, nothing inside changed").show()

# %% [markdown]
# Whole rows of the grid moved; no block changed inside. That is what makes recovery possible:
# every head still carries its own fingerprint.
#
# ## 3. Recovering the permutation: features, a cost matrix, a matching
#
# Suppose we are given the reference weight and a "client" copy whose heads were shuffled by an
# unknown `perm`. The recipe:
#
# 1. turn each head into a **feature vector** (here simply all its weights, flattened: `raw_features`);
# 2. build a **cost matrix** `cost[i, j]` = distance between client head `i` and reference head `j`;
# 3. **match** each client head to one reference head so that the total cost is smallest.
#
# Rows are *client* heads and columns *reference* heads on purpose: the reference head matched to
# client head `i` is then exactly `perm[i]`, our convention. (The research notebook this lesson
# grew from, not part of the course, built it the other way round, which returns the *inverse*
# permutation; its examples were swaps and reversals, which are their own inverse, so the bug never
# showed.)
#
# **Predict first:** in the cost matrix below, where are the zeros?

# %%
true_perm = random_permutation(5, gen)
ref_qkv = torch.randn(6, 3 * 5 * 2, generator=gen)  # d_in 6, 5 heads of width 2
client_qkv = permute_qkv(ref_qkv, true_perm, 5, layout="in_out")
ref_heads = HeadWeights.from_fused(ref_qkv, 5, layout="in_out")
client_heads = HeadWeights.from_fused(client_qkv, 5, layout="in_out")
cost = cost_matrix(raw_features(client_heads), raw_features(ref_heads), "l2")
found = hungarian_match(cost)
cost_heatmap(cost, title="L2 distance between client heads (rows) and reference heads (columns)", matched=found).show()
print("true perm:     ", true_perm.tolist())
print("recovered perm:", found.tolist())

# %% [markdown]
# Exactly one zero per row and per column (boxed): the client head and the reference head it came
# from have identical weights. `recover_permutation(ref, client)` wraps the three steps.
#
# ## 4. Why the output projection must move too
#
# After the heads, the layer concatenates their outputs `z_0, ..., z_{H-1}` and multiplies by the
# output projection $W_O$, which is the sum $\sum_h z_h W_O^{(h)}$ over per-head row blocks. If we
# shuffle only Q, K and V, head `perm[i]`'s output lands in slot `i` and meets the wrong block of
# $W_O$. If we shuffle $W_O$'s blocks with the same `perm`, every head meets its own block again and
# the sum just runs in another order.
#
# **Predict first:** for `torch.nn.MultiheadAttention`, how large is the change in output when we
# permute (a) Q, K, V only; (b) Q, K, V and the output projection together?

# %%
torch.manual_seed(0)
mha = torch.nn.MultiheadAttention(embed_dim=16, num_heads=4, batch_first=True)
with torch.no_grad():
    mha.in_proj_bias.normal_()  # PyTorch starts biases at 0; give them values so they are tested too
x = torch.randn(2, 7, 16)  # [batch, pos, d_model]
mha_perm = torch.tensor([3, 1, 0, 2])
out, _ = mha(x, x, x)
out_qkv_only, _ = permute_mha(mha, mha_perm, out_proj=False)(x, x, x)
out_joint, _ = permute_mha(mha, mha_perm, out_proj=True)(x, x, x)
print(f"largest |output change|, QKV only:           {(out_qkv_only - out).abs().max():.3f}")
print(f"largest |output change|, QKV + out_proj:     {(out_joint - out).abs().max():.1e}")
print(f"typical |output| for scale:                  {out.abs().mean():.3f}")

# %% [markdown]
# Permuting QKV alone changes the output by about as much as the output itself: a different
# function. The joint permutation changes it by float rounding only (around $10^{-7}$).
#
# The course's own `Transformer` (lesson 4) stores weights per head, `W_Q[h]`, ..., `W_O[h]`, so the
# same experiment is one line: `HeadWeights.from_attention(attn).permute(perm).write_to(attn)`.

# %%
torch.manual_seed(1)
cfg = TransformerConfig(vocab_size=12, max_len=10, d_model=24, n_layers=2, n_heads=4, positions="learned")
toy = Transformer(cfg).eval()
tokens = torch.randint(0, 12, (3, 10))
toy_shuffled = copy.deepcopy(toy)
HeadWeights.from_attention(toy.blocks[0].attn).permute(mha_perm).write_to(toy_shuffled.blocks[0].attn)
with torch.no_grad():
    print(f"course Transformer, layer 0 heads shuffled: max |logit change| = "
          f"{(toy_shuffled(tokens) - toy(tokens)).abs().max():.1e}")

# %% [markdown]
# ## 5. Greedy matching can fail; the Hungarian algorithm cannot
#
# That research notebook matched greedily: row by row, take the cheapest column not taken yet. That
# is fast, but an early row may grab a column that a later row needed much more.
#
# **Predict first:** for the cost matrix below, what does greedy pick, and what is the cheapest
# assignment overall?

# %%
trap = torch.tensor([[1.0, 1.1, 9.0], [1.2, 9.0, 9.0], [9.0, 1.0, 1.05]])
rows3 = torch.arange(3)
for name, fn in (("greedy", greedy_match), ("Hungarian", hungarian_match)):
    m = fn(trap)
    cost_heatmap(trap, title=f"{name}: {m.tolist()}, total cost {trap[rows3, m].sum():.2f}", matched=m).show()

# %% [markdown]
# Row 0's favourite is column 0 (cost 1.0), so greedy takes it; then row 1, whose only cheap option
# was column 0, must pay 9. The optimal assignment gives row 0 its second choice (1.1) and saves
# almost 8. `scipy.optimize.linear_sum_assignment` finds the optimum for any square cost matrix in
# $O(H^3)$ time: instant for a few hundred heads. It is what the model-merging literature uses
# (see *Research context* below).
#
# ## 6. Noise: how robust is matching?
#
# Real clients are never exact copies: a fine-tuned model has drifted. We add Gaussian noise to
# every client weight, with a standard deviation `noise` times that of the weights, and measure the
# fraction of heads put back in the right place, averaged over 20 random layers (16 heads, `d_in`
# 8, `d_head` 2, so each head has only 48 numbers and the task gets hard). A third curve uses the
# rotation-invariant features of section 7 (with the Hungarian matching); ignore it until then.
# These layers have no output projection, so for them the OV part of those features is
# $W_V W_V^\top$ (what `invariant_features` uses when no $W_O$ is given), not $W_V W_O$.
#
# **Predict first:** at what noise level do you expect errors to start? Which method degrades first?

# %%
noise_levels = np.round(np.arange(0.0, 4.01, 0.25), 2)
trials = 20
accuracy = {"greedy": [], "hungarian": [], "hungarian, W_QK/W_V W_V^T features": []}
for noise in progress(noise_levels, desc="noise levels"):
    acc = dict.fromkeys(accuracy, 0.0)
    for _ in range(trials):
        ref = HeadWeights.from_fused(torch.randn(8, 3 * 16 * 2, generator=gen), 16, layout="in_out")
        p = random_permutation(16, gen)
        client = ref.permute(p).add_noise(float(noise), gen)
        noisy_cost = cost_matrix(raw_features(client), raw_features(ref))
        acc["greedy"] += recovery_accuracy(greedy_match(noisy_cost), p) / trials
        acc["hungarian"] += recovery_accuracy(hungarian_match(noisy_cost), p) / trials
        invariant_cost = invariant_cost_matrix(client, ref)
        acc["hungarian, W_QK/W_V W_V^T features"] += recovery_accuracy(hungarian_match(invariant_cost), p) / trials
    for method in accuracy:
        accuracy[method].append(acc[method])

fig = go.Figure()
for method, dash in (("hungarian", "solid"), ("greedy", "dash"), ("hungarian, W_QK/W_V W_V^T features", "dot")):
    fig.add_trace(go.Scatter(x=noise_levels, y=accuracy[method], mode="lines+markers", name=method, line_dash=dash))
fig.add_hline(y=1 / 16, line_dash="dot", annotation_text="chance (1/16)")
fig.update_layout(title="Recovery accuracy vs noise (16 heads, 48 weights each, 20 trials per point)",
                  xaxis_title="noise std / weight std", yaxis_title="fraction of heads recovered",
                  yaxis_range=[0, 1.05], width=700, height=420)
fig.show()
for i, noise in enumerate(noise_levels):
    if noise in (1.0, 2.0, 3.0):
        print(f"noise {noise}: " + ", ".join(f"{m} {accuracy[m][i]:.2f}" for m in accuracy))

# %% [markdown]
# Read the curves against the printed rows. Both methods stay perfect while the noise is small
# compared with the distance *between* heads, which is surprisingly far: the noise vector spreads
# over 48 directions and a head-to-head difference does too. Up to what noise level are they still
# perfect here? When errors start, look for greedy degrading first and faster: each early mistake
# takes a column away from a later row, so errors cascade. The Hungarian matching always has the
# smallest *total* cost; that is not a promise of more correct heads in every single trial (the
# cheapest total can still pair some heads wrongly), so check whether, averaged over the 20 trials,
# its curve stays above greedy's wherever the two differ.
#
# The dotted curve comes back in section 7: features that ignore rotations inside a head pay for it
# with **more sensitivity to noise**, because noise enters a product twice:
# $(W_Q + N_Q)(W_K + N_K)^\top = W_Q W_K^\top + N_Q W_K^\top + W_Q N_K^\top + N_Q N_K^\top$.
# So use raw features when both models share their coordinates (a fine-tuned copy of one parent),
# and invariant features when they may not (models trained separately).
#
# ## 7. The second symmetry: rotations inside a head
#
# Attention scores only use the dot products $q \cdot k = x W_Q W_K^\top y^\top$. For any orthogonal
# $R$ of size `d_head`, replacing $W_Q, W_K$ by $W_Q R, W_K R$ leaves $W_Q R R^\top W_K^\top = W_Q W_K^\top$
# and so every score unchanged; likewise $W_V S$ with $S^\top W_O$ leaves the output unchanged. Two
# models can therefore compute identical heads with completely different raw weights (training
# from two seeds does this all the time).
#
# **Predict first:** we rotate inside every head of the shuffled client. How well does matching on
# raw weights do now? And on the products $W_{QK} = W_Q W_K^\top$ and $W_{OV} = W_V W_O$?

# %%
ref = HeadWeights.from_fused(torch.randn(16, 3 * 8 * 4, generator=gen), 8, layout="in_out",
                             out_weight=torch.randn(8 * 4, 16, generator=gen))
p = random_permutation(8, gen)
client = rotate_within_heads(ref.permute(p), gen)
raw_cost = cost_matrix(raw_features(client), raw_features(ref))
inv_cost = invariant_cost_matrix(client, ref)
for title, c in (("raw weights", raw_cost), ("W_QK and W_OV", inv_cost)):
    found = hungarian_match(c)
    cost_heatmap(c, title=f"Rotated client, {title}: {recovery_accuracy(found, p):.0%} of heads recovered",
                 matched=found).show()

# %% [markdown]
# On raw weights the cost matrix has no clear zeros any more and the matching is mostly wrong.
# With $W_{QK}$ and $W_{OV}$ each row has one exact zero again: these products are the head's actual
# function (what it attends to, and what it writes), so a rotation cannot hide them. They are even
# invariant to any invertible change of basis $W_Q A$, $W_K A^{-\top}$, not only rotations.
# Their price is the dotted curve of section 6: they are more sensitive to noise than raw weights.
#
# **Two practical notes.** (1) $W_{QK}$ is `d_in x d_in` per head: for `d_in = 4096` and 128 heads
# that is 2 billion numbers. `invariant_cost_matrix` never forms it: it uses
# $\langle Q_a K_a^\top, Q_b K_b^\top\rangle_F = \operatorname{tr}\big((Q_a^\top Q_b)(K_b^\top K_a)\big)$,
# which needs only `d_head x d_head` blocks (see `benchmarks/bench_heads.py`). (2) With rotary
# position embeddings the rotation symmetry is smaller: RoPE rotates pairs of query/key coordinates
# by position-dependent angles, and only rotations that commute with it leave scores unchanged.
# The models in this lesson use learned positions, where every rotation is a symmetry.
#
# ### What about singular values?
#
# TransFusion (see *Research context*) describes each head by the singular values of its Q, K and V
# weights. Singular values do not change under a rotation inside a head either, and they are tiny
# (`d_head` numbers per matrix instead of `d_in**2`). What do they miss?
#
# **Predict first:** we build a layer whose head 1 is head 0 with its *input side* rotated
# (`W[1] = P @ W[0]` for an orthogonal `P` of size `d_in`): it reads different directions of the
# residual stream, so it is a different head. Which features can tell heads 0 and 1 apart?

# %%
found_sv = hungarian_match(cost_matrix(singular_value_features(client), singular_value_features(ref)))
print(f"singular-value features on the rotated client: {recovery_accuracy(found_sv, p):.0%} of heads recovered")

P = random_orthogonal(16, 1, gen)[0]  # a rotation of the 16-dim input space
twin = HeadWeights(*(torch.cat([t[:1], (P @ t[:1]), t[2:]]) for t in (ref.W_Q, ref.W_K, ref.W_V)),
                   W_O=torch.cat([ref.W_O[:1], ref.W_O[:1] @ P, ref.W_O[2:]]))
sv = singular_value_features(twin)
print(f"heads 0 and 1: singular-value distance {torch.dist(sv[0], sv[1]):.1e}, "
      f"W_QK/W_OV distance {invariant_cost_matrix(twin, twin)[0, 1]:.1f}")
print(f"heads 0 and 2: singular-value distance {torch.dist(sv[0], sv[2]):.1f}, "
      f"W_QK/W_OV distance {invariant_cost_matrix(twin, twin)[0, 2]:.1f}")

# %% [markdown]
# Singular values recover the rotated client, but they see heads 0 and 1 as identical (distance 0
# up to rounding) although the two heads read and write different directions; $W_{QK}$/$W_{OV}$
# features put them as far apart as any other pair. With many similar heads, that blindness turns
# into wrong matches.
#
# ## 8. A trained model: shuffle its heads, get them back
#
# Now a model that learned something. We train the course's `Transformer` (1 layer, 4 heads,
# learned positions) for a few seconds on a small task: output the token seen **two positions
# back**. Then we shuffle its heads and rotate inside each one, check that it still computes the
# same thing, and recover the order.

# %%
seed_everything(0)
vocab, seq_len = 16, 16
cfg = TransformerConfig(vocab_size=vocab, max_len=seq_len, d_model=32, n_layers=1, n_heads=4, positions="learned")
model = Transformer(cfg)
optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
data_gen = torch.Generator().manual_seed(0)


def two_back_loss(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    logits = model(tokens)[:, 2:]  # positions 2.. predict the token two back
    return torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens[:, :-2].reshape(-1))


for _ in progress(range(150), desc="training"):
    batch = torch.randint(0, vocab, (64, seq_len), generator=data_gen)
    loss = two_back_loss(model, batch)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()

model.eval()
test_tokens = torch.randint(0, vocab, (256, seq_len), generator=data_gen)
with torch.no_grad():
    test_acc = (model(test_tokens)[:, 2:].argmax(-1) == test_tokens[:, :-2]).float().mean()
print(f"final training loss {loss.item():.3f}, test accuracy {test_acc:.1%}")

# %% [markdown]
# **Predict first:** after shuffling and rotating the trained heads, how much do the logits change?
# Which features recover the order?

# %%
trained = HeadWeights.from_attention(model.blocks[0].attn)
secret = random_permutation(4, gen)
disguised_heads = rotate_within_heads(trained.permute(secret), gen)
disguised = copy.deepcopy(model)
disguised_heads.write_to(disguised.blocks[0].attn)
with torch.no_grad():
    change = (disguised(test_tokens) - model(test_tokens)).abs().max()
print(f"max |logit change| after shuffle + rotation: {change:.1e}")
print(f"max |W_Q change|: {(disguised_heads.W_Q - trained.W_Q).abs().max():.2f}")
for features in ("raw", "invariant"):
    found = recover_permutation(trained, disguised_heads, features=features)
    print(f"{features:>9} features: recovered {found.tolist()}, true {secret.tolist()}, "
          f"accuracy {recovery_accuracy(found, secret):.0%}")

# %% [markdown]
# The disguised model is the same function (logits agree to float rounding) with visibly different
# weights. Raw features are fooled; $W_{QK}$/$W_{OV}$ features put every head back.
#
# ## 9. A real pretrained layer: all-MiniLM-L6-v2
#
# If the course's packaged checkpoint of the sentence encoder **all-MiniLM-L6-v2** is installed
# (`make pretrained`), we do the same with a real layer: 12 heads of width 32 reading a
# 384-dimensional residual stream. Its query, key and value are three separate `nn.Linear`
# weights `[384, 384]`; stacking them gives a fused `out_in` weight `[1152, 384]`, which
# `bert_attention_as_mha` loads into an `nn.MultiheadAttention` together with the output projection
# (BERT's self-attention computes exactly what that module does; the course's tests check it against
# the `transformers` implementation). `toyattn.weights.pretrained.minilm_path()` finds the file.

# %%
try:
    minilm_file = minilm_path()
except PretrainedNotInstalled as err:
    minilm = None
    print("all-MiniLM-L6-v2 is not installed here, so this section is skipped: run `make pretrained`, then "
          "this notebook again, to shuffle and recover a real layer's 12 heads.\n(" + str(err) + ")")
else:
    minilm = bert_attention_as_mha(minilm_file, layer=0, n_heads=12)
    print("MiniLM layer 0 as nn.MultiheadAttention: in_proj_weight", tuple(minilm.in_proj_weight.shape),
          "(layout 'out_in'), out_proj.weight", tuple(minilm.out_proj.weight.shape))

# %% [markdown]
# **Predict first:** a real model's heads were trained together and may look alike. Will raw
# features still find a shuffle without rotation? And with one?

# %%
if minilm is not None:
    x_real = torch.randn(2, 9, 384, generator=gen)  # stand-in for layer-normed hidden states
    real_perm = random_permutation(12, gen)
    with torch.no_grad():
        out_real, _ = minilm(x_real, x_real, x_real)
        out_shuffled, _ = permute_mha(minilm, real_perm)(x_real, x_real, x_real)
    print(f"MiniLM layer 0, 12 heads shuffled (QKV + out_proj): max |output change| {(out_shuffled - out_real).abs().max():.1e}")
    real_ref = HeadWeights.from_mha(minilm)
    real_client = real_ref.permute(real_perm)
    real_rotated = rotate_within_heads(real_client, gen)
    for label, c in (("shuffled", real_client), ("shuffled + rotated", real_rotated)):
        for features in ("raw", "invariant"):
            found = recover_permutation(real_ref, c, features=features)
            print(f"{label:>18}, {features:>9} features: {recovery_accuracy(found, real_perm):.0%} of 12 heads")
    real_cost = invariant_cost_matrix(real_rotated, real_ref, "cosine")
    real_match = hungarian_match(real_cost)
    cost_heatmap(real_cost, title="MiniLM layer 0, rotated client: cosine distance of W_QK/W_OV features",
                 matched=real_match).show()
    is_match = torch.zeros(12, 12, dtype=torch.bool)
    is_match[torch.arange(12), real_match] = True
    print(f"matched pairs: cosine distance at most {real_cost[is_match].max():.1e}; "
          f"other pairs: at least {real_cost[~is_match].min():.2f}, on average {real_cost[~is_match].mean():.2f}")
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s")

# %% [markdown]
# The story of the toy models holds on a real checkpoint: the joint shuffle leaves the layer's output
# unchanged up to float rounding, raw features see through a plain shuffle but not through a
# rotation, and $W_{QK}$/$W_{OV}$ features recover all 12 heads in both cases. The cosine cost
# matrix shows one zero (up to rounding) per row, and every other pair is far away (the last printed
# line gives the numbers): the heads of a real layer are far from interchangeable, so there is a wide
# margin before noise, such as fine-tuning, could confuse them.
#
# ## Research context
#
# * **Git Re-Basin** (Ainsworth et al., 2022, github.com/samuela/git-re-basin) aligns two whole
#   networks by *weight matching*: coordinate descent over the permutations of every layer, each step
#   a `scipy.optimize.linear_sum_assignment` on summed weight correlations, exactly the matching step
#   of section 3. It has no special handling for attention heads.
# * **TransFusion** (Rinaldi et al., arXiv 2505.22697) matches heads with `linear_sum_assignment` on the
#   L2 distance between per-head vectors of singular values of Q, K and V, then runs a second assignment
#   inside each matched pair. Singular values do not change when the head's coordinates are reordered
#   (nor, in fact, under any rotation inside the head), but they forget *which* input directions a head
#   reads: section 7 built two different heads with identical singular values. The $W_{QK}$/$W_{OV}$
#   features keep those directions and still ignore any change of basis inside the head; the
#   benchmark and section 6 show what that costs (more sensitivity to noise, more compute).
# * What this lesson measured itself (printed above, seeded): exact recovery on clean shuffles,
#   Hungarian ahead of greedy once noise bites, raw features failing and invariant features succeeding
#   after a rotation, on a trained toy model and on MiniLM's first layer.
#
# ## What to try next
#
# * Make the noise experiment harder by lowering `d_in` or raising the number of heads. Where does
#   the greedy curve start to drop?
# * Use `metric="cosine"` in `recover_permutation`: what changes if the client's heads are also
#   rescaled (multiply $W_Q$ by 2 and $W_K$ by 1/2: same function)?
# * Train **two** models from different seeds on the same task and match their heads with invariant
#   features. The cost matrix no longer has zeros: are the matches still clear?
# * Run `benchmarks/bench_heads.py` to see the matching at the scale of a 7B model's layer (32 or
#   128 heads, `d_in = 4096`).
# * Then go on to lesson 3, which measures how *symmetric* each head's $W_{QK}$ is.
