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
# # Lesson 3: how symmetric is an attention head?
#
# An attention head scores a query token against a key token with a **bilinear form**: the same
# matrix decides how much token $x$ wants to read token $y$, and how much $y$ wants to read $x$.
# Are those two numbers the same? In this lesson you measure it, first on matrices small enough to
# print, then on three real models (an encoder and two decoders), then on tiny models you train
# yourself, where you can ask whether and why training makes a head symmetric, and whether starting
# symmetric helps.
#
# **Learning goals.** After this lesson you can
# 1. define the symmetry score of a head from $M = W_q W_k^\top$, and say what 1, 0 and 0.5 mean;
# 2. build heads with score exactly 1 and exactly 0, and predict and explain where random heads score;
# 3. compute the score through the trace identity, and explain why it costs $O(d\,d_h^2)$ instead of
#    $O(d^2 d_h)$;
# 4. score every head of a model in one batched call, including grouped-query attention;
# 5. compare an encoder (MiniLM) with two decoders (SmolLM2, Gemma 3), per head and per layer, in both
#    conventions, relate the numbers to published ones, and say what folding Gemma's Q/K norms means;
# 6. read directionality off the row and column norms of a layer's $M$;
# 7. derive when $\partial L / \partial M$ is symmetric (the terms of a pair $(i, j)$ and of $(j, i)$), say
#    why a symmetric $\partial L / \partial M$ still does not make a training step change $M$
#    symmetrically, and test the argument on trained models;
# 8. measure whether a symmetric initialisation speeds up training, per seed and against a control, and
#    report the answer, whichever way it comes out.
#
# The exercises for this lesson are in `exercises/03_symmetry_scores.ipynb`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from toyattn import get_device, seed_everything
from toyattn.plotting import heatmap, heatmap_grid, heatmap_plotly
from toyattn.symmetry import (
    directionality_score,
    from_signed,
    kv_head_for_query,
    layer_bilinear,
    layer_symmetry_score,
    median,
    random_head,
    skew_symmetric_key,
    symmetric_key,
    symmetry_score,
    symmetry_score_definition,
    to_signed,
)
from toyattn.symmetry.report import score_model
from toyattn.symmetry.training import train_runs

g = seed_everything(0)
device = get_device()
print("computing on:", device)

# %% [markdown]
# ## 1. A head is a bilinear form
#
# With queries $q = x W_q$ and keys $k = y W_k$ (both maps are $[d, d_h]$: model width $d$, head
# width $d_h$), the attention score before the softmax is
#
# $$ q \cdot k = x W_q W_k^\top y^\top = x\, M\, y^\top, \qquad M = W_q W_k^\top \in \mathbb{R}^{d\times d}. $$
#
# Every matrix splits into a symmetric and a skew-symmetric part,
# $M = \underbrace{\tfrac12(M + M^\top)}_{\text{symmetric}} + \underbrace{\tfrac12(M - M^\top)}_{\text{skew}}$.
# The symmetric part gives $x$ and $y$ the same score in both directions; the skew part gives
# opposite scores ($+c$ one way, $-c$ the other). The two parts are orthogonal (their entrywise
# product sums to zero), so their squared Frobenius norms add up to $\|M\|_F^2$, like the two sides of
# a right triangle. That makes the **symmetry score**
#
# $$ r = \frac{\|\tfrac12(M + M^\top)\|_F^2}{\|M\|_F^2} \in [0, 1] $$
#
# the share of $M$'s "energy" in its symmetric part. Here is a random head with $d = 5$, $d_h = 2$.

# %%
d, d_head = 5, 2
W_q = torch.randn(d, d_head, generator=g)
W_k = torch.randn(d, d_head, generator=g)
M = W_q @ W_k.T
sym, skew = (M + M.T) / 2, (M - M.T) / 2
dims = [f"dim {i}" for i in range(d)]
fig = heatmap_grid(
    [M, sym, skew],
    ["M = W_q W_k^T", "symmetric part (M + M^T)/2", "skew part (M - M^T)/2"],
    row_labels=dims,
    col_labels=dims,
    center=0,
    cmap="RdBu_r",
    suptitle="One random head, split into its symmetric and skew-symmetric parts",
    figsize=(13, 4),
    xlabel="key-side direction",
    ylabel="query-side direction",
)
plt.show()
print(f"||M||^2 = {M.pow(2).sum():.3f}   ||sym||^2 + ||skew||^2 = {sym.pow(2).sum() + skew.pow(2).sum():.3f}")
print(f"symmetry score r = {sym.pow(2).sum() / M.pow(2).sum():.3f}")

# %% [markdown]
# Read the three panels: the middle one is a mirror image across its diagonal (entry $(i,j)$ equals
# $(j,i)$), the right one is a mirror image with the sign flipped, and its diagonal is zero. They add
# up to the left one. The printed norms confirm the right-triangle rule: the two parts' squared norms
# sum to $\|M\|^2$ exactly, so $r$ is a share between 0 and 1.
#
# **Two conventions.** This course (and the research notebooks it grew from, not part of the
# course) reports $r \in [0, 1]$.
# The paper behind this lesson, Saponati et al. 2025 (*The underlying structures of self-attention:
# symmetry, directionality, and emergent dynamics in Transformer training*, arXiv 2502.10927), publishes
# $s = 2r - 1 = \operatorname{tr}(MM) / \|M\|_F^2 \in [-1, 1]$. Same information, shifted: symmetric is
# $r = 1$ / $s = 1$, skew-symmetric $r = 0$ / $s = -1$, and the midpoint $r = 0.5$ is $s = 0$. Every number
# below says which one it is.

# %% [markdown]
# ## 2. Heads with a known score
#
# * **Symmetric:** take $W_k = W_q P$ with $P$ symmetric (simplest: $P = I$, i.e. $W_k = W_q$). Then
#   $M = W_q P W_q^\top$ and $M^\top = W_q P^\top W_q^\top = M$.
# * **Skew-symmetric:** take $W_k = W_q S^\top$ with $S$ skew-symmetric ($S^\top = -S$, e.g.
#   $S = X - X^\top$). Then $M = W_q S W_q^\top$ and $M^\top = W_q S^\top W_q^\top = -M$.
# * **Random:** independent Gaussian $W_q$, $W_k$.
#
# **Predict first:** what score will the random head get? Closer to 0, 0.5 or 1?

# %%
d, d_head = 6, 3
W_q = torch.randn(d, d_head, generator=g, dtype=torch.float64)
heads = {
    "symmetric (W_k = W_q P)": symmetric_key(W_q, generator=g),
    "skew (W_k = W_q S^T)": skew_symmetric_key(W_q, generator=g),
    "random": torch.randn(d, d_head, generator=g, dtype=torch.float64),
}
for name, W_k in heads.items():
    print(f"{name:26s} r = {float(symmetry_score_definition(W_q, W_k)):.4f}")
dims = [f"dim {i}" for i in range(d)]
fig = heatmap_grid(
    [W_q @ W_k.T for W_k in heads.values()],
    [f"{name}: r = {float(symmetry_score_definition(W_q, W_k)):.2f}" for name, W_k in heads.items()],
    row_labels=dims,
    col_labels=dims,
    center=0,
    cmap="RdBu_r",
    suptitle="M = W_q W_k^T for three constructed heads",
    figsize=(14, 4.2),
    xlabel="key-side direction",
    ylabel="query-side direction",
)
plt.show()

# %% [markdown]
# The symmetric head's matrix mirrors across the diagonal; the skew one mirrors with a sign flip and
# has a zero diagonal. More than that, $x M x^\top = 0$ for *every* vector $x$ when $M$ is skew, so a
# token's score for itself is exactly 0. Zero is not $-\infty$: after the softmax the token still
# gets weight $e^0 / \sum_j e^{s_j}$, small if other keys score high, large if they score low. The random head shows no pattern, and its score
# lands near the middle. Why the middle? Write $s = 2r - 1 = \operatorname{tr}(MM)/\|M\|^2$: the
# denominator is a sum of squares (all positive), the numerator $\sum_{ij} M_{ij} M_{ji}$ a sum of
# products of two entries that are unrelated for a random head, as often negative as positive. So
# the numerator is small next to the denominator: $s \approx 0$ and $r \approx 0.5$. **Predict first:** how does the spread of random heads' scores change with the
# model width $d$? And with the head width $d_h$?

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for d in (4, 16, 64, 256):
    Wq_many, Wk_many = random_head(d, 4, generator=g, n=400)
    r = symmetry_score(Wq_many, Wk_many).numpy()
    axes[0].hist(r, bins=np.linspace(0, 1, 101), histtype="step", linewidth=2,
                 label=f"d = {d}: mean {r.mean():.3f}, std {r.std():.3f}")
for dh in (1, 4, 16, 64):
    Wq_many, Wk_many = random_head(64, dh, generator=g, n=400)
    r = symmetry_score(Wq_many, Wk_many).numpy()
    axes[1].hist(r, bins=np.linspace(0.45, 0.6, 61), histtype="step", linewidth=2,
                 label=f"d_head = {dh}: mean {r.mean():.3f}, std {r.std():.3f}")
axes[0].set_title("400 random heads each, d_head = 4, growing model width d")
axes[1].set_title("400 random heads each, d = 64, growing head width d_head")
for ax in axes:
    ax.axvline(0.5, color="gray", linestyle=":")
    ax.set_xlabel("symmetry score r")
    ax.set_ylabel("number of heads")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Left: the model width $d$ decides the spread. At $d = 4$ random heads land anywhere from about 0.2
# to 1 (the legend prints mean and std; `tests/test_symmetry_scores.py` checks the values below); at $d = 256$ the printed std is about 0.003 (most heads within a few thousandths of 0.5; the std
# shrinks roughly like $0.7/d$). That answers the prediction: the numerator $\sum_{ij} M_{ij} M_{ji}$ is a
# sum of $d^2$ terms of random sign, and the more of them there are, the smaller it is next to the sum
# of squares. The mean is a little above 0.5, by about $1/(2d)$: the $d$ diagonal entries $M_{ii}$ (basis
# direction $i$ scored against itself) enter the numerator as squares, always positive. Right: the head
# width $d_h$ hardly changes the spread.
# One oddity: a rank-one head ($d_h = 1$) never scores below 0.5, since for vectors $w_q, w_k$ its
# score is $r = (1 + \cos^2\theta)/2$, with $\theta$ the angle between them. Real models
# have $d$ in the hundreds or thousands (MiniLM: 384), so a random head there scores 0.50 to two
# decimals, and a score of 0.6 is far outside what *independent, isotropic* Gaussian weights give:
# training put it there, pushing the head towards symmetric (reciprocal) pre-softmax scores; a score below
# 0.5 means a push towards skew (one-way) scores. The caveat matters: chance is 0.5 only for that null
# model. Trained weights are not isotropic, and if $W_q$ and $W_k$ merely share a scaling of the same
# few input directions (say 8 of 384 dimensions 8 times larger, as outlier dimensions of the residual
# stream are), $M$'s largest entries sit on the diagonal block of those dimensions and independent maps
# already score about 0.52, with nothing reciprocal learned. A score far from 0.5 says "not that null
# model", and section 5 compares it with models, not with chance alone.

# %% [markdown]
# ## 3. The trace form: the same number, much cheaper
#
# Building $M$ costs $d^2 d_h$ multiply-adds, $2 d^2 d_h$ flops, per head: for a Llama-2-7B layer
# ($d = 4096$, $d_h = 128$) that is 4.3 GFLOP per head, 137 GFLOP per layer. But both norms are traces, and a trace
# of a product does not change when its factors are rotated cyclically:
#
# $$ \|M\|_F^2 = \operatorname{tr}(M^\top M) = \operatorname{tr}(W_k W_q^\top W_q W_k^\top)
#   = \operatorname{tr}(\underbrace{W_q^\top W_q}_{A}\, \underbrace{W_k^\top W_k}_{B}),\qquad
#   \operatorname{tr}(MM) = \operatorname{tr}(W_q W_k^\top W_q W_k^\top) = \operatorname{tr}(C C),\ C = W_k^\top W_q. $$
#
# $A$, $B$, $C$ are only $d_h \times d_h$, and
# $r = \tfrac12\left(1 + \operatorname{tr}(CC)/\operatorname{tr}(AB)\right)$. **Predict first:** count the
# flops of forming $A$, $B$ and $C$; when $d$ doubles, how do the two timings change?

# %%
def time_it(fn, min_repeats=5, budget_s=0.3):
    """Best of several runs (at least `min_repeats`, more while under `budget_s` seconds in total)."""
    best, spent, n = float("inf"), 0.0, 0
    while n < min_repeats or spent < budget_s:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent, n = min(best, elapsed), spent + elapsed, n + 1
    return best


d_head = 64
sizes = [128, 256, 512, 1024, 2048]
t_definition, t_trace = [], []
threads = torch.get_num_threads()
torch.set_num_threads(1)  # time on one core: steadier when other programs share the machine
for d in sizes:
    Wq_d, Wk_d = (W.double() for W in random_head(d, d_head, generator=g))  # float64 for both methods
    t_definition.append(time_it(lambda Wq_d=Wq_d, Wk_d=Wk_d: symmetry_score_definition(Wq_d, Wk_d)))
    t_trace.append(time_it(lambda Wq_d=Wq_d, Wk_d=Wk_d: symmetry_score(Wq_d, Wk_d)))
    assert abs(float(symmetry_score_definition(Wq_d, Wk_d)) - float(symmetry_score(Wq_d, Wk_d))) < 1e-6
torch.set_num_threads(threads)

fig, ax = plt.subplots(figsize=(7, 4))
ax.loglog(sizes, t_definition, "o-", label="definition (build M): O(d^2 d_h)")
ax.loglog(sizes, t_trace, "s-", label="trace form (A, B, C): O(d d_h^2)")
ax.set_title(f"Time to score one head on one CPU core (d_head = {d_head}, float64)")
ax.set_xticks(sizes, [str(d) for d in sizes])
ax.minorticks_off()
ax.set_xlabel("model width d")
ax.set_ylabel("seconds (best of several runs)")
ax.legend()
plt.show()
print("speed-up of the trace form at each d:", [f"{a / b:.0f}x" for a, b in zip(t_definition, t_trace, strict=True)])

# %% [markdown]
# Each of $A$, $B$, $C$ costs $2 d\, d_h^2$ flops, so the score costs $6 d\, d_h^2$, against $2 d^2 d_h$
# for building $M$: a ratio of $d / (3 d_h)$, about 11 times fewer flops at the 7B shape. On a log-log
# plot a cost $\propto d^k$ is a straight line of slope $k$. The flop counts predict a
# definition line of slope 2 (doubling $d$ quadruples the work) and a trace-form line of slope 1, so
# the gap should widen with $d$. Check your plot: at small $d$ fixed overheads flatten both lines on
# the left, and once the $d \times d$ matrix no longer fits in the CPU's cache the definition can get
# steeper still. Compare the printed speed-ups with the flop ratio $d / (3 d_h)$: if they grow faster,
# memory traffic is a likely reason (the definition walks through the $d \times d$ matrix several times:
# $M + M^\top$, squares, sums). Your numbers depend on your machine. Both give the same score to 6
# digits; the assert in the cell checks it at every size. `benchmarks/bench_symmetry.py` measures this
# at the Llama-2-7B shape against the machine's own matrix-multiply speed.

# %% [markdown]
# ## 4. Every head of a model in one call
#
# A model's query maps stack into a tensor $[L, H, d, d_h]$ (layers, heads). `symmetry_score` works on
# any leading axes: internally it is three batched matrix products (in einsum notation
# `lhdi,lhdj->lhij`) and two batched traces (`lhij,lhji->lh`), giving $[L, H]$ scores at once, on
# whatever device the weights are on. (For large heads on a CPU it loops over heads instead: a head's
# $W_q$ and $W_k$ then stay in the cache between its three products, and the lower-left quarter block of
# the symmetric $A$ and $B$ is skipped, so 3/4 of each is computed: $5$ instead of $6\, d\, d_h^2$ flops per
# head. Same numbers, faster; `benchmarks/bench_symmetry.py` measures by how much.)
#
# **Grouped-query attention** (Llama-3, Mistral, SmolLM2): to save memory, several query heads share
# one key head. With 9 query heads and 3 key heads, query heads 0-2 use key head 0, 3-5 key head 1, and
# 6-8 key head 2. Each query head still has its own $M_h = W_q^{(h)} W_k^{(g(h))\top}$:

# %%
print("key head used by each of 9 query heads:", kv_head_for_query(9, 3).tolist())
W_Q = torch.randn(4, 9, 96, 16, generator=g)  # 4 layers, 9 query heads
W_K = torch.randn(4, 3, 96, 16, generator=g)  # 4 layers, 3 key heads
W_K[2, 1] = W_Q[2, 4]  # make query head 4 of layer 2 use its own weights as keys: symmetric
scores = symmetry_score(W_Q, W_K)
print("scores shape:", tuple(scores.shape))
print("layer 2:", np.round(scores[2].numpy(), 3))

# %% [markdown]
# In layer 2, query head 4 scores exactly 1 (its key head is a copy of its own query map), while its
# group-mates 3 and 5, which share that key head, do not: the score belongs to a (query head, key head)
# pair.
#
# **Per head or per layer?** Those research notebooks score each head. Saponati et al. publish one number
# per *layer*: the $d \times d$ form $M_\text{layer} = \sum_h W_q^{(h)} W_k^{(h)\top}$ (in `nn.Linear`
# terms $W_q^\top W_k$ of the whole layer, with key heads repeated under grouped-query attention);
# `layer_symmetry_score` computes it. How does it relate to the head scores? In the $s$ convention,
#
# $$ s_\text{layer} = \frac{\operatorname{tr}(M M)}{\|M\|^2}
#   = \frac{\sum_h \operatorname{tr}(M_h M_h) + \sum_{h \ne g} \operatorname{tr}(M_h M_g)}
#          {\sum_h \|M_h\|^2 + \sum_{h \ne g} \langle M_h, M_g \rangle}. $$
#
# Without the cross terms ($h \ne g$), for instance when different heads' query and key maps read separate
# sets of directions, this is $\sum_h \|M_h\|^2 s_h / \sum_h \|M_h\|^2$: the **$\|M_h\|^2$-weighted mean** of the head
# scores, so a large head counts more. With cross terms anything can happen. Two heads with
# $M_2 = M_1^\top$ (head 2's query map is head 1's key map and vice versa) add up to
# $M = M_1 + M_1^\top$, exactly symmetric: the layer scores $s = 1$ although each head, if random,
# scores $s \approx 0$. A symmetric *layer* does not mean symmetric *heads*. The next cell checks
# both statements. They also define a **directionality** score of $M_\text{layer}$
# (from their code): compare the norms of $M$'s rows (query-side directions) with those of its
# columns (key-side directions); negative means a few columns stand out, i.e. a few key directions
# that nearly every query reads.

# %%
# Two random heads that read separate directions: no cross terms, so the layer score is the weighted mean.
Wq_sep, Wk_sep = torch.zeros(2, 64, 8, dtype=torch.float64), torch.zeros(2, 64, 8, dtype=torch.float64)
for h, scale in ((0, 1.0), (1, 3.0)):  # head h's W_q and W_k read dims 32h..32h+31 only; head 1 is larger
    Wq_sep[h, 32 * h : 32 * h + 32] = scale * torch.randn(32, 8, generator=g, dtype=torch.float64)
    Wk_sep[h, 32 * h : 32 * h + 32] = scale * torch.randn(32, 8, generator=g, dtype=torch.float64)
s_heads = to_signed(symmetry_score(Wq_sep, Wk_sep))
norms2 = (Wq_sep @ Wk_sep.transpose(-1, -2)).pow(2).sum(dim=(-2, -1))  # ||M_h||^2
print(f"separate heads: head s {np.round(s_heads.numpy(), 3)}, weighted mean {float((norms2 * s_heads).sum() / norms2.sum()):+.3f}, "
      f"layer s {float(to_signed(layer_symmetry_score(Wq_sep, Wk_sep))):+.3f}")
# Two heads M and M^T: head 2 swaps head 1's query and key maps.
Wq1, Wk1 = random_head(64, 8, generator=g)
Wq_pair, Wk_pair = torch.stack([Wq1, Wk1]), torch.stack([Wk1, Wq1])
print(f"heads M and M^T: head s {np.round(to_signed(symmetry_score(Wq_pair, Wk_pair)).numpy(), 3)}, "
      f"layer s {float(to_signed(layer_symmetry_score(Wq_pair, Wk_pair))):+.3f}")

# %% [markdown]
# Back to the grouped-query example, all four layers:

# %%
layer_r, mean_head_r = layer_symmetry_score(W_Q, W_K).numpy(), scores.mean(dim=1).numpy()
gqa_directionality = directionality_score(layer_bilinear(W_Q, W_K)).numpy()
print("per-layer r           :", np.round(layer_r, 3))
print("mean of per-head r    :", np.round(mean_head_r, 3))
print("per-layer directionality:", np.round(gqa_directionality, 3))
others = [layer for layer in range(len(layer_r)) if layer != 2]
lift_layer = layer_r[2] - layer_r[others].mean()
lift_head = mean_head_r[2] - mean_head_r[others].mean()
print(f"In this run layer 2 sits above the other layers by {lift_layer:+.3f} per layer and {lift_head:+.3f} "
      f"in the mean per-head r ({'about the same' if abs(lift_layer - lift_head) < 0.01 else 'not the same'} lift); "
      f"directionality signs across the four layers: {int((gqa_directionality > 0).sum())} positive, "
      f"{int((gqa_directionality < 0).sum())} negative, {int((gqa_directionality == 0).sum())} zero.")

# %% [markdown]
# For random weights every layer should score near 0.5 both ways. Look at layer 2, which holds the one
# symmetric head out of nine: the printed sentence says by how much it lifts each number. There is no
# reason for the two lifts to agree: the mean per-head $r$ gives the symmetric head a ninth of the
# weight, while the layer form adds all nine heads into one matrix, where a head's weight depends on its
# norm and on how it overlaps the others.
#
# Directionality of random layers has no reason to take one sign: it adds up how far the few largest
# row (or column) norms exceed mean + 2 std, so with no real structure it is decided by a handful of
# outliers. Check the printed sign counts, and read directionality only where the same sign shows up
# layer after layer.

# %% [markdown]
# ## 5. An encoder against two decoders
#
# Three real models ship as packages (installed by `make pretrained`; the course finds their files,
# nothing is downloaded):
#
# * **all-MiniLM-L6-v2**: a BERT-family *encoder* (6 layers x 12 heads, $d = 384$, $d_h = 32$): every token
#   sees every other. It has no masked-token objective of its own: the sentence-transformers project
#   fine-tuned it with a contrastive objective on about a billion sentence pairs (its model card), starting
#   from `nreimers/MiniLM-L6-H384-uncased`, which its model card describes as a 6-layer version of the
#   12-layer `microsoft/MiniLM-L12-H384-uncased` made by keeping every second layer; that 12-layer MiniLM
#   (Wang et al. 2020, arXiv 2002.10957) was distilled from the self-attention of a larger teacher trained
#   on masked-token prediction;
# * **SmolLM2-135M-Instruct**: a Llama-family *decoder* (30 layers x 9 query heads sharing 3 key heads,
#   $d = 576$, $d_h = 64$), trained causally, each token sees only earlier ones. It ships as a GGUF file
#   quantized to 4 bits (Q4_1), so its weights are not exactly the published full-precision ones; the reader dequantizes it (and undoes llama.cpp's reordering of rows inside
#   each head, which would not change the scores anyway);
# * **Gemma 3 270M**: a second *decoder*, from another family (18 layers x 4 query heads sharing a single
#   key head, $d = 640$, and wide heads, $d_h = 256$), also a 4-bit (Q4_K_M) GGUF. Its attention normalises every
#   query and key before the dot product (Q/K norms, explained below the table).
#
# Quantization adds rounding noise with no structure to every weight, and unstructured noise pulls a
# score towards 0.5, so the two decoders' numbers may sit a little closer to 0.5 than their full-precision
# originals would (a hedge: we have not scored the originals; the 4-bit blocks keep most of each weight).
#
# `score_model` reads one layer at a time and returns per-head scores, per-layer scores and
# directionality. **Predict first:** which model will score most symmetric? Will the two decoders agree?
# And directionality: in the two decoders, would you expect a few rows of a layer's $M$ (query-side
# directions) or a few columns (key-side directions) to stand out? Does your reason apply to an encoder
# as well? (Section 5b looks at this directly.)

# %%
from toyattn.weights.pretrained import (
    GEMMA_NOTICE,
    PretrainedNotInstalled,
    gemma3_gguf_path,
    minilm_path,
    smollm2_gguf_path,
)

MODELS = {"MiniLM (encoder)": minilm_path, "SmolLM2 (decoder)": smollm2_gguf_path, "Gemma 3 (decoder)": gemma3_gguf_path}
reports = {}
for label, locate in MODELS.items():
    try:
        reports[label] = score_model(locate(), device=device)
    except PretrainedNotInstalled as err:
        print(f"Skipping {label}: {err}")
if "Gemma 3 (decoder)" in reports:
    print(GEMMA_NOTICE, "\n")
    gemma_raw = score_model(gemma3_gguf_path(), device=device, fold_qk_norm=False)  # Q/K norm gains left out
for report in reports.values():
    print(report.summary(), "\n")

# %%
if reports:
    widths = [report.n_heads for report in reports.values()]  # each heatmap as wide as its model has heads
    fig, axes = plt.subplots(1, len(reports), figsize=(17, 9), gridspec_kw={"width_ratios": widths})
    axes = np.atleast_1d(axes)
    for ax, (label, report) in zip(axes, reports.items(), strict=True):
        heatmap(
            report.head_scores,
            row_labels=[f"L{i}" for i in range(report.n_layers)],
            col_labels=[f"H{h}" for h in range(report.n_heads)],
            ax=ax,
            title=f"{label}: per-head r",
            xlabel="head",
            ylabel="layer",
            vmin=0.3,
            vmax=1.0,
            fmt="{:.2f}",
            colorbar=True,
        )
    plt.tight_layout()
    plt.show()

# %%
# The first model's map again, interactive: hover a head to read its layer, index and r.
if reports:
    first, report = next(iter(reports.items()))
    heatmap_plotly(report.head_scores, [f"L{i}" for i in range(report.n_layers)],
                   [f"H{h}" for h in range(report.n_heads)], title=f"{first}: per-head r (hover a head)",
                   xlabel="head", ylabel="layer", zmin=0.3, zmax=1.0).show()

# %% [markdown]
# Each cell is one head's $r$, on the same colour scale (0.3 to 1) for all three models, so brighter
# means more symmetric. Look for where the bright cells are, and how many there are in each model: a
# random head of these widths scores 0.50 to two decimals (section 2), so any cell visibly off 0.5 is
# structure that training put there. The next cell counts them.

# %%
for label, report in reports.items():
    share = float((report.head_scores > 0.6).double().mean())
    busiest = report.head_scores.gt(0.6).sum(dim=1)
    print(f"{label}: {share:.0%} of its {report.head_scores.numel()} heads score above 0.6 "
          f"(in {int((busiest > 0).sum())} of {report.n_layers} layers); median per-head r {median(report.head_scores):.3f}")

# %% [markdown]
# **The same scores in bfloat16.** On a GPU many runs compute in `torch.bfloat16`: 16 bits, of which only
# 8 carry the mantissa, so a number is rounded to about 2-3 significant digits. `symmetry_score` can do its
# Gram products in that precision (`dtype=torch.bfloat16`; `toyattn.device.check_dtype` refuses a device
# that cannot, with the fix). The next cell scores the first model's heads both ways and prints the
# largest difference. Look at its size next to the gaps this lesson reads: a random head's spread at these
# widths is a few thousandths, the differences between models a few hundredths. If the bfloat16 error is
# far below both, scores computed in bfloat16 can be compared with float32 ones.

# %%
from toyattn.device import check_dtype
from toyattn.weights.checkpoints import load_qk

if reports:
    first = next(iter(reports))
    W_Q_real, W_K_real = (W.to(device) for W in load_qk(MODELS[first]()))
    try:
        check_dtype(torch.bfloat16, device)
        r_fp32 = symmetry_score(W_Q_real.float(), W_K_real.float())
        r_bf16 = symmetry_score(W_Q_real.float(), W_K_real.float(), dtype=torch.bfloat16)
        gap = (r_bf16.double() - r_fp32.double()).abs()
        print(f"{first} on {device}: per-head r in bfloat16 against float32, largest |difference| {float(gap.max()):.1e}, "
              f"mean {float(gap.mean()):.1e} (over {gap.numel()} heads)")
    except RuntimeError as err:
        print(err)

# %% [markdown]
# Now the distributions side by side.

# %%
if reports:
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    bins = np.linspace(0.3, 1.0, 36)
    for label, report in reports.items():
        axes[0].hist(report.head_scores.flatten().numpy(), bins=bins, density=True, alpha=0.55, label=label)
        s_layer = to_signed(report.layer_scores).numpy()
        axes[1].plot(np.linspace(0, 1, report.n_layers), s_layer, "o-", label=label)
    axes[0].axvline(0.5, color="gray", linestyle=":")
    axes[0].set_title("Per-head symmetry score r (all heads)")
    axes[0].set_xlabel("r (0.5 = random head)")
    axes[0].set_ylabel("density")
    axes[0].legend()
    axes[1].axhline(0.0, color="gray", linestyle=":")
    axes[1].set_title("Per-layer score in the published convention s = 2r - 1")
    axes[1].set_xlabel("relative depth (first layer = 0, last = 1)")
    axes[1].set_ylabel("s")
    axes[1].legend()
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Left: look at where each model's mass sits relative to the dotted line at 0.5, and how far its right
# tail reaches. Right: per layer (the paper's granularity, in its $s$ convention), look at whether a model
# stays above 0 at every depth or hovers near it. The table below gives every model in both conventions, per head
# and per layer, next to the medians Saponati et al. publish (their results table, per layer, $s$
# convention; they did not measure these three models, so compare with the families). A median here is the ordinary one: the
# middle value, or the mean of the two middle values for an even count (MiniLM has 6 layers;
# `toyattn.symmetry.scores.median`; `torch.median` would return the lower of the two).

# %%
published = {
    "bert-tiny (enc)": 0.77, "bert-mini (enc)": 0.62, "bert-base (enc)": 0.51, "bert-large (enc)": 0.44,
    "roberta-base (enc)": 0.49, "gpt2 (dec)": 0.15, "Llama-2-7b (dec)": 0.12, "Llama-3-8B (dec)": 0.0,
    "Mistral-7B (dec)": 0.0, "phi-2 (dec)": 0.07,
}
rows = dict(reports)
if "Gemma 3 (decoder)" in reports:
    rows = {**reports, "Gemma 3 (decoder), raw W_Q, W_K": gemma_raw}
    rows["Gemma 3 (decoder), Q/K norms folded"] = rows.pop("Gemma 3 (decoder)")
print(f"{'':38s} {'median per head':^17s} {'median per layer':^17s}  {'mean r':>6s}  {'direction-':>10s}")
print(f"{'model':38s} {'r':>8s} {'s':>8s} {'r':>8s} {'s':>8s}  {'per head':>6s}  {'ality':>10s}")
for label, report in rows.items():
    r_head, r_layer = median(report.head_scores), median(report.layer_scores)
    print(
        f"{label + ' [here]':38s} {r_head:8.3f} {to_signed(r_head):+8.3f} {r_layer:8.3f} {to_signed(r_layer):+8.3f}  "
        f"{float(report.head_scores.mean()):6.3f}  {median(report.directionality):+10.2f}"
    )
for name, value in published.items():
    print(f"{name + ' [published]':38s} {'':17s} {from_signed(value):8.3f} {value:+8.2f}")
print("published directionality medians: bert-base -0.08, roberta-base -0.12; gpt2 -0.58, "
      "Llama-3.1-8B -0.57, Mistral-7B -0.58")

# %% [markdown]
# Compare the "measured here" rows with the published ones. In Saponati et al.'s table the
# BERT-family encoders span +0.44 (bert-large) to +0.77 (bert-tiny); ModernBERT, an encoder with a
# newer recipe, has +0.18; the decoders span 0.00 (Llama-3-8B, Mistral-7B) to +0.15 (gpt2). The next cell
# says, from the numbers above, which range each per-layer median falls in, whether each model's per-head
# median is closer to 0.5 than its per-layer one (the layer form adds the heads' cross terms, section 4,
# so it need not be), and how the median directionalities compare. These numbers come from fixed
# checkpoints, so every machine prints them to the digits shown (`tests/test_symmetry_report.py` and
# `tests/test_weights_checkpoints.py` check the ranges and the per-head/per-layer order of all three models).
# For directionality, look at whether the decoders' medians are more negative than the encoder's, the
# direction the paper reports (decoders clearly negative, encoders near 0), and whether Gemma's sign
# survives leaving out its Q/K norm gains; with three models that comparison is anecdotal either way.
# One caution: the directionality definition comes from the
# authors' code (mean + 2 std thresholds on row and column norms), so treat it as their operational
# choice, not a law.

# %%
BERT_FAMILY, DECODERS = (0.44, 0.77), (0.00, 0.15)  # published per-layer median s, Saponati et al.'s table


def where(s_value):
    for name, (low, high) in (("the BERT-family encoder range", BERT_FAMILY), ("the decoder range", DECODERS)):
        if low <= s_value <= high:
            return f"inside {name} [{low:+.2f}, {high:+.2f}]"
    return "outside both published ranges"


for label, report in rows.items():
    s_layer = float(to_signed(median(report.layer_scores)))
    r_head, r_layer = float(median(report.head_scores)), float(median(report.layer_scores))
    closer = "closer to" if abs(r_head - 0.5) < abs(r_layer - 0.5) else "not closer to"
    print(f"{label}: per-layer median s {s_layer:+.3f}, {where(s_layer)}; per-head median r {r_head:.3f} is "
          f"{closer} 0.5 than per-layer {r_layer:.3f}; median directionality {median(report.directionality):+.2f}")
if "MiniLM (encoder)" in rows:
    encoder_dir = float(median(rows["MiniLM (encoder)"].directionality))
    for label, report in rows.items():
        if "decoder" in label:
            dec_dir = float(median(report.directionality))
            print(f"  {label}: median directionality {dec_dir:+.2f}, "
                  f"{'more negative than' if dec_dir < encoder_dir else 'not more negative than'} the encoder's {encoder_dir:+.2f}")

# %% [markdown]
# **Gemma's Q/K norms, folded.** Gemma 3 normalises every head's query and key before the dot product
# (an RMSNorm with learned gains $g_q, g_k \in \mathbb{R}^{d_h}$):
# $\tilde q = g_q \odot q / \operatorname{rms}(q)$, $\tilde k = g_k \odot k / \operatorname{rms}(k)$. With
# $q = x_q W_Q$ and $k = x_k W_K$,
#
# $$ \tilde q \cdot \tilde k = \frac{x_q\, W_Q \operatorname{diag}(g_q \odot g_k)\, W_K^\top x_k^\top}{\operatorname{rms}(q)\,\operatorname{rms}(k)}. $$
#
# The numerator is a bilinear form, $W_Q \operatorname{diag}(g_q \odot g_k) W_K^\top$: **folding** multiplies
# the gains into $W_Q$ and $W_K$ before scoring (the reader's default; `fold_qk_norm=False` gives the raw
# projections). About the gains: Hugging Face's Gemma checkpoints store zero-centred gains $w$ and the
# norm multiplies by $1 + w$; llama.cpp's conversion adds the 1, so the GGUF read here already stores
# $g = 1 + w$, which is what gets folded. The denominator is positive, but it is *not* a constant of the
# pair: $\operatorname{rms}(q)\operatorname{rms}(k) = \|x_q W_Q\|\,\|x_k W_K\| / d_h$ depends on the weights, and it is
# not symmetric in the pair: swapping query and key gives $\|x_k W_Q\|\,\|x_q W_K\| / d_h$. So with Q/K norms a
# symmetric folded form does **not** mean reciprocal scores; $r$ of the folded form measures the numerator
# only (the cell below shows one pair). This also ignores RoPE, which rotates $\tilde q$ and $\tilde k$ by
# their positions after the norm, as it is ignored for SmolLM2.
#
# **Which space $M$ lives in.** $W_Q$ and $W_K$ read the output of a norm (RMSNorm in SmolLM2 and Gemma,
# LayerNorm in the toy models; in MiniLM, a post-norm BERT model, the LayerNorm that ends the previous
# sublayer), and that output includes the norm's own gain $\gamma$ (and LayerNorm's bias). This lesson scores
# $W_Q W_K^\top$ as stored: a form on the normed, gain-scaled vector. Lesson 5 (section 6) folds the whole
# LayerNorm map in instead, centring included: $C \operatorname{diag}(\gamma)\, M \operatorname{diag}(\gamma)\, C$, with
# $C = I - \tfrac1d \mathbf{1}\mathbf{1}^\top$ the centring matrix, a form on the raw vector $x$ up to its $1/\sigma(x)$.
# That keeps a symmetric $M$ symmetric, but the $r$ of a non-symmetric one can change, so say which space a
# number is in.
#
# The table shows Gemma both ways, and the gains are not a detail: they weigh the $d_h$ directions of each
# head unequally. Compare the raw and folded rows' per-layer median $s$ and directionality; the folded
# numerator is the one Gemma's attention computes.

# %%
# A symmetric form with Q/K norms: the numerators agree both ways, the normalised scores do not.
W_Qn = torch.randn(8, 4, generator=g, dtype=torch.float64)
W_Kn = W_Qn @ torch.diag(torch.tensor([3.0, 1.0, 0.5, 0.2], dtype=torch.float64))  # W_Q W_K^T symmetric, W_K != W_Q
x_a, x_b = torch.randn(2, 8, generator=g, dtype=torch.float64)


def normed_score(x_q, x_k):
    q, k = x_q @ W_Qn, x_k @ W_Kn
    return float((q / q.norm()) @ (k / k.norm()))


print(f"numerator x_a M x_b^T = {float(x_a @ W_Qn @ W_Kn.T @ x_b):+.3f}, x_b M x_a^T = {float(x_b @ W_Qn @ W_Kn.T @ x_a):+.3f}")
print(f"normalised score a->b = {normed_score(x_a, x_b):+.3f}, b->a = {normed_score(x_b, x_a):+.3f}")

# %% [markdown]
# ## 5b. Directionality, seen
#
# The directionality score compares the norms of $M$'s **rows** (one per query-side direction) with the
# norms of its **columns** (one per key-side direction). A column with a large norm is a key-side
# direction that many query directions score highly: whatever a token writes there gets read.
# Before you look, recall your prediction from the start of section 5 (rows or columns in the decoders?),
# and the reason you gave for it.

# %%
from toyattn.weights.checkpoints import iter_qk_layers

if reports:
    fig, axes = plt.subplots(1, len(reports) + 1, figsize=(4.6 * (len(reports) + 1), 3.8))
    for ax, (label, locate) in zip(axes, [(k, MODELS[k]) for k in reports], strict=False):
        layers = iter_qk_layers(locate())
        middle = layers.n_layers // 2  # one layer from the middle of the model
        layer = layers[middle]  # reads that layer only
        M = layer_bilinear(layer.W_Q.double(), layer.W_K.double())
        row_norms, col_norms = M.norm(dim=1), M.norm(dim=0)  # one norm per row, one per column
        scale = float(row_norms.mean())
        bins = np.linspace(0, float(torch.cat([row_norms, col_norms]).max()) / scale * 1.02, 40)
        for norms, name, color in ((row_norms, "rows (query side)", "tab:blue"), (col_norms, "columns (key side)", "tab:orange")):
            ax.hist((norms / scale).numpy(), bins=bins, alpha=0.55, color=color, label=name)
            ax.axvline(float(norms.mean() + 2 * norms.std()) / scale, color=color, linestyle="--")
            print(f"{label}, layer {middle}: {name:18s} std/mean {float(norms.std() / norms.mean()):.3f}, "
                  f"max/mean {float(norms.max() / norms.mean()):.2f}")
        print(f"{label}, layer {middle}: directionality {float(directionality_score(M)):+.2f}\n")
        ax.set_title(f"{label}, layer {middle}: directionality {float(directionality_score(M)):+.2f}", fontsize=9)
        ax.set_xlabel("norm / mean row norm")
        ax.set_ylabel("count")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    for label, report in reports.items():
        axes[-1].plot(np.linspace(0, 1, report.n_layers), report.directionality.numpy(), "o-", label=label)
    axes[-1].axhline(0, color="gray", linestyle=":")
    axes[-1].set_title("Directionality of every layer", fontsize=9)
    axes[-1].set_xlabel("relative depth")
    axes[-1].set_ylabel("directionality (negative: columns stand out)")
    axes[-1].legend(fontsize=8)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Each histogram holds the $d$ row norms (blue) and the $d$ column norms (orange) of one middle layer's
# $M$, divided by the mean row norm so that models of different scale share an axis; the count axis is
# logarithmic so that the few large norms show. The dashed lines are each set's mean + 2 std: the score
# adds up how far the norms beyond them reach, rows minus columns, divided by the total. Look for which
# colour has the longer right tail in each model (the printed max/mean and std/mean of rows and columns
# say it in numbers): a longer orange tail means a few key-side directions that many query directions
# score highly, and a negative score. The right panel shows that one layer is not the whole story:
# follow how much the score swings from layer to layer in each model, and in how many layers it is
# negative (the medians are printed in section 5); Saponati et al. report negative directionality for
# decoders and values near 0 for BERT and RoBERTa.
#
# Why would columns stand out in a decoder? The paper's hypothesis is that causal training produces
# it. Be careful with the easy explanation "every key serves all the queries after it": over a sequence
# there are exactly as many query roles as key roles, and in an encoder every key serves *every* query,
# so that argument would predict columns for encoders too. A mechanism only causal masking provides: the
# first token is visible to every query, the only key that is, so models can park
# attention on it (*attention sinks*, Xiao et al. 2023, arXiv 2309.17453), a few key directions that
# almost every query reads. Encoders have sink-like tokens too ([CLS], [SEP]; Clark et al. 2019, arXiv
# 1906.04341), so treat this as a hypothesis to test, not the explanation.

# %% [markdown]
# Why might encoders and decoders differ? Saponati et al.'s **hypothesis**: in an encoder trained on
# masked tokens (BERT), the objective rewards pairs of tokens that inform *each other* (reciprocal), which
# a symmetric $M$ expresses; in a decoder, information only flows from earlier to later tokens, so the
# objective has no use for reciprocity. It is a hypothesis, not a derivation: section 7 tests the part of
# it that can be tested on a small model, with mixed results. Can we watch the difference happen at all?

# %% [markdown]
# ## 6. Experiment: train an encoder and a decoder on the same text
#
# Two tiny transformers (the course's `Transformer`, 2 layers x 2 heads, $d = 32$, learned absolute
# positions as in BERT and GPT-2) start from *identical* weights and see the same 16-character windows
# of the same text (the *Zen of Python*, which ships with every Python), character by character:
#
# * **masked** (bidirectional, `causal=False`): 15% of the characters are replaced by a `[MASK]` token
#   and the model predicts them from both sides, BERT-style (but always `[MASK]`: BERT replaces only 80%
#   of the chosen tokens by `[MASK]`, 10% by a random token and leaves 10% unchanged);
# * **causal**: each position predicts the next character from the earlier ones, as GPT does.
#
# Every 20 steps we record the per-head and per-layer scores, the directionality of each layer and the
# weights (`keep_states=True`, for section 7). Sections 6-8 train on the CPU (`TOY_DEVICE`): these models
# are so small that one CPU thread is fastest, and the tests that back this lesson's general claims
# (`tests/test_symmetry_training.py`, `tests/test_symmetry_experiments.py`) run there, so what the text says about
# every seed is tested on the device that runs it. `SCALE = 1` runs in seconds; on a GPU try
# `TOY_DEVICE = device` with `SCALE = 4, STEPS = 4000` (section 8 then uses them too), and read the
# printed sentences rather than the text. **Predict first:** both models start at $s \approx 0$. After 600
# steps, give a number for each model's largest per-layer $s$: will the causal model's move at all, and
# in which direction? Will the gap between the two be larger or smaller than 0.1?

# %%
SCALE, STEPS, TOY_DEVICE = 1, 600, "cpu"
# One model per objective from the same seed: the same initial weights and the same batches, so the
# objective is the only difference. Each trace records the loss at every step and, every 20 steps, the
# symmetry and directionality scores of every head (and, with keep_states, the weights for section 7).
traces = {}
for objective in ("masked", "causal"):
    (traces[objective],) = train_runs(objective, seeds=[0], inits=["standard"], steps=STEPS, scale=SCALE,
                                      device=TOY_DEVICE, keep_states=True)

fig, axes = plt.subplots(1, 3, figsize=(17, 4))
colors = {"masked": "tab:blue", "causal": "tab:red"}
for name, trace in traces.items():
    s = to_signed(trace.layer_scores).numpy()
    for layer in range(s.shape[1]):
        style = ["-", "--", ":", "-."][layer % 4]
        axes[0].plot(trace.steps, s[:, layer], color=colors[name], linestyle=style, label=f"{name}, layer {layer}")
        axes[2].plot(trace.steps, trace.directionality[:, layer], color=colors[name], linestyle=style,
                     label=f"{name}, layer {layer}")
    window = 20
    smooth = np.convolve(trace.losses.numpy(), np.ones(window) / window, mode="valid")
    axes[1].plot(np.arange(window, len(trace.losses) + 1), smooth, color=colors[name], label=name)
axes[0].axhline(0.0, color="gray", linestyle=":")
axes[0].set_title("Per-layer symmetry score during training (s = 2r - 1)")
axes[0].set_xlabel("training step")
axes[0].set_ylabel("s")
axes[0].legend(fontsize=8)
axes[1].set_title("Training loss (moving average of 20 steps)")
axes[1].set_xlabel("training step")
axes[1].set_ylabel("cross-entropy (nats)")
axes[1].legend()
axes[2].axhline(0.0, color="gray", linestyle=":")
axes[2].set_title("Per-layer directionality during training")
axes[2].set_xlabel("training step")
axes[2].set_ylabel("directionality (negative: columns stand out)")
axes[2].legend(fontsize=8)
plt.tight_layout()
plt.show()
for name, trace in traces.items():
    print(f"{name:6s}: per-layer s at start {np.round(to_signed(trace.layer_scores[0]).numpy(), 3)}, "
          f"at the end {np.round(to_signed(trace.layer_scores[-1]).numpy(), 3)}; "
          f"mean per-head r {float(trace.head_scores[0].mean()):.3f} -> {float(trace.head_scores[-1].mean()):.3f}; "
          f"directionality at the end {np.round(trace.directionality[-1].numpy(), 2)}")
end_s = {name: to_signed(trace.layer_scores[-1]).numpy() for name, trace in traces.items()}
above = int((end_s["masked"] > end_s["causal"]).sum())
print(f"In this run the masked model ends more symmetric than the causal one in {above} of {len(end_s['masked'])} "
      f"layers (largest per-layer s: masked {end_s['masked'].max():+.3f}, causal {end_s['causal'].max():+.3f}).")

# %% [markdown]
# Both models start at the same point (same weights, $s$ near 0 as for any random head). In the loss
# panel, look for how the two tasks differ: the causal model can memorize the short poem, so its loss
# can keep falling from the start, while the masked model can do little better than character
# frequencies until its attention learns to read the neighbours of a hidden character; look for a
# plateau and a later drop in the blue curve.
#
# On the left, compare the blue lines (masked) with the red ones (causal) as training goes on, and the
# printed final values and sentence. The paper's finding is that bidirectional training makes $W_q W_k^\top$ more
# symmetric; if it shows up here, the blue lines end above the red ones (`tests/test_symmetry_training.py`
# checks that the masked model ends clearly more symmetric, on several seeds, on the CPU).
# One way to see why: to fill in a hidden character, position $i$ wants to read $i-1$ and $i+1$ alike,
# and "$i$ and $j$ are neighbours" is a symmetric relation; a causal model may only read backwards, a
# one-way relation. One run of a tiny model is an anecdote: before trusting it, re-run it with other
# seeds, which is the first item below.
#
# The right panel follows each layer's directionality. With $d = 32$ each set holds only 32 norms, and
# mean + 2 std is crossed by one or two of them or by none, so the score often sits at $-1$, 0 or $+1$
# (only rows, neither, or only columns cross) and jumps as single norms cross the threshold. Read it as a noisy signal, and check a sign against other seeds
# (`seeds=[1]` or `seeds=[2]` in section 6's `train_runs` call) before trusting it; the column-heavy $M$ of section 5b's decoders comes from models with
# hundreds of dimensions and far more training.

# %% [markdown]
# ## 7. Why would a bidirectional objective make $M$ symmetric?
#
# Take one head. The score of query position $i$ against key position $j$ is
# $s_{ij} = x_i M x_j^\top$ (times the constant $1/\sqrt{d_h}$, plus bias terms), with $x_i$ the row
# vector the head reads at position $i$: the output of the block's layer norm (`ln1`), not the raw
# residual stream. The loss depends on $M$ only through the scores, so by the chain rule
#
# $$ \frac{\partial L}{\partial M} = \sum_{i,j} g_{ij}\, x_i^\top x_j, \qquad g_{ij} = \frac{\partial L}{\partial s_{ij}}: $$
#
# one outer product per (query, key) pair. The pair $(i, j)$ adds $g_{ij}\, x_i^\top x_j$; the reversed
# pair $(j, i)$ adds $g_{ji}\, x_j^\top x_i = g_{ji}\,(x_i^\top x_j)^\top$, the **transpose** of the same
# outer product. If $g_{ij} = g_{ji}$ the two add up to $g_{ij}(x_i^\top x_j + x_j^\top x_i)$, a symmetric
# matrix: then $\partial L / \partial M$ **is symmetric**.
#
# That is not yet "a training step changes $M$ symmetrically". $M = W_q W_k^\top$ is not a parameter;
# the parameters are $W_q$ and $W_k$ (and the biases $b_q$, $b_k$), with gradients
# ($G = \partial L/\partial M$, the $1/\sqrt{d_h}$ folded into $g_{ij}$)
#
# $$ \frac{\partial L}{\partial W_q} = G\, W_k, \qquad
#    \frac{\partial L}{\partial W_k} = G^\top W_q + \Big(\sum_{i,j} g_{ij}\, x_j^\top\Big)\, b_q . $$
#
# The $b_k$ term of $\partial L/\partial W_q$ vanishes because each query's $g_{ij}$ sum to 0 over $j$ (a
# softmax ignores a constant added to all of a query's scores); the $b_q$ term of $\partial L/\partial W_k$
# does not, and in a trained model it is not small (`tests/test_symmetry_experiments.py` checks both
# formulas with random biases). With $b_q = 0$ (as at initialisation) one gradient step of size $\eta$
# changes $M$, to first order, by
#
# $$ \Delta M \approx -\eta\,\left(G\, W_k W_k^\top + W_q W_q^\top\, G\right), $$
#
# whose skew part is $-\tfrac{\eta}{2}\,[G,\; W_k W_k^\top - W_q W_q^\top]$ for a symmetric $G$ (with
# $[X, Y] = XY - YX$). So a given symmetric $G$ gives a symmetric $\Delta M$ exactly when it commutes with
# $W_k W_k^\top - W_q W_q^\top$ ($G = I$ always does), and *every* symmetric $G$ does only when
# $W_k W_k^\top - W_q W_q^\top = cI$ for a number $c$ (only multiples of $I$ commute with every symmetric
# matrix). That difference has rank at most $2 d_h$, so when $2 d_h < d$, as in every head of this lesson,
# $c = 0$: $W_q W_q^\top = W_k W_k^\top$. The next cell checks the formula against a real step, and measures $r$
# of $\Delta M$ for a random symmetric $G$ and for $G = I$. One case where it is
# exact: if every $g_{ij} = g_{ji}$, a head with $W_q = W_k$ (and $b_q = b_k$) gets identical gradients for
# its two maps ($G W_q = G^\top W_q$) and stays at $W_q = W_k$, $r = 1$, for ever, whatever the optimiser.
# The same holds for section 8's indefinite control $W_k = W_q D$ ($D$ a diagonal of signs, $b_k = b_q D$):
# with $g_{ij} = g_{ji}$ the gradients are $G W_q$ for $W_k$ and $G W_q D$ for $W_q$ (and likewise for the
# biases), so a step keeps $W_q' D = W_k'$ since $D^2 = I$; AdamW's elementwise scaling and weight decay
# commute with flipping whole columns' signs. So both of section 8's symmetric starts are tests of the
# argument: any drop from $r = 1$ there shows that the real $g_{ij}$ differ from $g_{ji}$, and how fast it
# drops measures how far.
#
# * **Bidirectional attention:** both $(i, j)$ and $(j, i)$ are in the sum for every two positions. When
#   the objective treats both directions alike on average (filling in a character wants its left and its
#   right neighbour; "$i$ and $j$ are neighbours" is a symmetric relation), their terms can pair up.
# * **Causal attention:** $g_{ij} = 0$ whenever $j > i$ (the mask sets those scores to $-\infty$), so of
#   every pair $i \ne j$ only the (later query, earlier key) term is there, with no transpose to pair with.
#   But the **self-pairs** $i = j$ remain: each $g_{ii}\, x_i^\top x_i$ is exactly symmetric, under either
#   mask. And even an unpaired term is not "random": $x_i^\top x_j$ alone has
#   $r = (1 + \cos^2\theta_{ij})/2 \ge 0.5$ (the rank-one case of section 2).
#
# This says which terms *can* appear, not that they match: $g_{ij}$ and $g_{ji}$ are different numbers.
# Because the self-pairs are symmetric in both models, a fair comparison of the gradients also looks at
# them with the diagonal left out, and at how much of $\|G\|$ the diagonal carries.

# %%
# The change of M = W_q W_k^T under one small gradient step, for a given dL/dM = G.
from toyattn.symmetry import matrix_symmetry_score


def change_of_m(G, W_q, W_k, lr=1e-6):
    """The real change of M after one step of size lr on W_q and W_k, and the first-order formula."""
    W_q, W_k = W_q.clone().requires_grad_(), W_k.clone().requires_grad_()
    (G * (W_q @ W_k.T)).sum().backward()  # a loss whose gradient with respect to M is exactly G
    with torch.no_grad():
        real = (W_q - lr * W_q.grad) @ (W_k - lr * W_k.grad).T - W_q @ W_k.T
        formula = -lr * (G @ W_k @ W_k.T + W_q @ W_q.T @ G)
    return real, formula


Wq_t, Wk_t = (torch.randn(32, 16, generator=g, dtype=torch.float64) for _ in range(2))
X = torch.randn(32, 32, generator=g, dtype=torch.float64)
for label, G in (("any G", X), ("symmetric G", X + X.T), ("G = I", torch.eye(32, dtype=torch.float64))):
    real, formula = change_of_m(G, Wq_t, Wk_t)
    print(f"{label:12s}: formula vs real step, relative error {float((real - formula).norm() / real.norm()):.1e}; "
          f"r(G) = {float(matrix_symmetry_score(G)):.3f}, r(change of M) = {float(matrix_symmetry_score(real)):.3f}")
real, _ = change_of_m(X + X.T, Wq_t, Wq_t)
print(f"symmetric G with W_k = W_q: r(change of M) = {float(matrix_symmetry_score(real)):.3f}")
print(f"W_q W_q^T = W_k W_k^T here? {bool(torch.allclose(Wq_t @ Wq_t.T, Wk_t @ Wk_t.T))}")

# %% [markdown]
# Two ways to test the argument on section 6's models, which started from the same weights: the
# **update** that training added to each layer, $\Delta M = M_\text{end} - M_\text{start}$ (what AdamW made
# of 600 steps), and the **gradient** $\partial L / \partial M$ itself, the object the argument is about:
# one sum over 8 fresh batches at the start, and one averaged along the whole run (2 fresh batches at each
# of the 31 recorded checkpoints, so that every position has been hidden many times and every pair seen
# both ways). **Predict first:** for which of the three will the masked model's be the more symmetric?

# %%
from toyattn.symmetry.experiments import bilinear_gradients, bilinear_update
from toyattn.symmetry.training import CharTask, char_batches

task = CharTask.from_text(None, seq_len=16)
windows, hidden = char_batches(task, seed=123, steps=8, batch_size=32, seq_len=16, mask_prob=0.15)
n_checkpoints = len(traces["masked"].steps)
along_windows, along_hidden = char_batches(task, seed=456, steps=2 * n_checkpoints, batch_size=32, seq_len=16,
                                           mask_prob=0.15)


def layer_r(per_head):
    """Per-layer r of a [layers, heads, d, d] stack: the sum over heads is the change of the layer's form."""
    return matrix_symmetry_score(per_head.sum(dim=1)).numpy()


def split(model, windows_k, hidden_k):
    return bilinear_gradients(model, windows_k, hidden_k, mask_id=task.mask_id, split_diagonal=True)


def gradient_at_start(trace):
    """(pairs i != j, self-pairs i = j) of dL/dM, summed over 8 fresh batches."""
    model = trace.initial_model()
    parts = [split(model, windows[k], hidden[k]) for k in range(8)]
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def gradient_along_the_run(trace):
    """(pairs i != j, self-pairs i = j) of dL/dM, 2 fresh batches at every recorded checkpoint."""
    off, diag = 0, 0
    for index in range(len(trace.steps)):
        model = trace.model_at(index)
        for k in (2 * index, 2 * index + 1):
            o, s = split(model, along_windows[k], along_hidden[k])
            off, diag = off + o, diag + s
    return off, diag


table = {}
print(f"{'per-layer r (0.5: no preference, 1: symmetric)':56s} {'layer 0':>8s} {'layer 1':>8s} {'max':>6s}")
for name, trace in traces.items():
    rows_here = [("update M_end - M_start", layer_r(bilinear_update(trace)))]
    for when, (off, diag) in (("at the start", gradient_at_start(trace)), ("along the run", gradient_along_the_run(trace))):
        full_layer, diag_layer = (off + diag).sum(dim=1), diag.sum(dim=1)
        share = (diag_layer.norm(dim=(-2, -1)) / full_layer.norm(dim=(-2, -1))).numpy()
        rows_here += [(f"gradient dL/dM {when}", layer_r(off + diag)),
                      ("  same, self-pairs i = j left out", layer_r(off), f"gradient dL/dM {when}, self-pairs left out"),
                      ("  share of ||dL/dM|| in the self-pairs", share, f"self-pair share {when}")]
    for what, r, *key in rows_here:
        table[(name, key[0] if key else what)] = r
        print(f"{name + ': ' + what:56s} {r[0]:8.2f} {r[1]:8.2f} {r.max():6.2f}")
verdicts = {}
for what in ("update M_end - M_start", "gradient dL/dM at the start", "gradient dL/dM along the run",
             "gradient dL/dM at the start, self-pairs left out", "gradient dL/dM along the run, self-pairs left out"):
    masked_r, causal_r = table[("masked", what)].max(), table[("causal", what)].max()
    verdicts[what] = ("more" if masked_r > causal_r + 0.05 else "less" if masked_r < causal_r - 0.05 else "about as")
    verdict = {"more": "more symmetric than", "less": "less symmetric than",
               "about as": "about as symmetric as (within 0.05, the test's margin)"}[verdicts[what]]
    print(f"In this run the masked model's {what} is {verdict} the causal one's "
          f"(largest per-layer r {masked_r:.2f} against {causal_r:.2f}).")
for when in ("at the start", "along the run"):
    masked_share, causal_share = table[("masked", f"self-pair share {when}")], table[("causal", f"self-pair share {when}")]
    print(f"Self-pairs carry {masked_share[0]:.2f} / {masked_share[1]:.2f} (layers 0 / 1) of the masked model's gradient "
          f"{when} and {causal_share[0]:.2f} / {causal_share[1]:.2f} of the causal one's: "
          + ("a larger share in the causal model, which lifts its full-gradient r." if causal_share.min() > masked_share.max()
             else "no consistent difference."))
left_out = [verdicts[f"gradient dL/dM {when}, self-pairs left out"] for when in ("at the start", "along the run")]
print("So in this run the gradient without self-pairs, the cleaner comparison, "
      + ("is more symmetric under the masked objective both at the start and along the run: it backs the pairing "
         "argument here (one run; not tested across seeds)." if left_out == ["more", "more"] else
         "is not more symmetric under the masked objective both at the start and along the run: it does not back the "
         "pairing argument consistently here."))

# %% [markdown]
# Read the update rows first, then the printed sentences. What is tested across seeds:
# `tests/test_symmetry_experiments.py` trains five seeds of each objective (on the CPU, as here) and checks
# that the masked model's update is the more symmetric one on every seed, by at least 0.05 in the largest
# per-layer $r$ (a small margin, two layers); `benchmarks/bench_symmetric_init.py` counts it over ten. That
# is consistent with the pairing argument, and with the paper's finding, but it does not show that the
# pairing is the cause.
#
# The gradient rows are the direct test, because the argument is about $\partial L / \partial M$. For the
# full gradient, the same test checks that neither the gradient at the start nor the gradient averaged
# along the run is more symmetric under the masked objective on every one of the five seeds. The
# "self-pairs left out" rows and the self-pair shares matter too: the diagonal terms $g_{ii} x_i^\top x_i$
# are symmetric in both models, and if they carry a larger share of the causal model's
# $\|\partial L/\partial M\|$ they lift its $r$ for a reason that has nothing to do with pairing. The rows
# without them are the cleaner comparison; they are printed from this run only (no test covers them
# across seeds), and the last printed sentences say what this run shows for them. Unless those sentences
# say the left-out gradient is more symmetric under the masked objective both at the start and along the
# run, these runs do not show $g_{ij}$ and $g_{ji}$ matching well enough to make $\partial L / \partial M$
# clearly more symmetric; even if they do, it is one run. The more symmetric *update* may come partly
# from elsewhere: an update is not
# a sum of $\partial L / \partial M$ (the first code cell of this section: even a symmetric gradient moves $M$
# unsymmetrically unless it commutes with $W_k W_k^\top - W_q W_q^\top$; the $b_q$ term; and AdamW rescales
# every weight's step).
# The argument says what bidirectional attention *allows*; these runs do not show it is what happens.

# %% [markdown]
# ## 8. Does a symmetric start speed up training?
#
# If bidirectional training pushes $M$ towards symmetric anyway, starting there might save the steps it
# takes to get there. Saponati et al. try exactly this: initialise $W_q$ as a copy of $W_k$, so every head
# starts at $r = 1$. Their pages report up to about 70% fewer steps to a given loss for a 4-layer BERT and
# about 35% for 12 layers (from the authors' pages; the paper's exact figures were not checked here).
#
# $W_K = W_Q$ does more than make $M$ symmetric: $M = W_Q W_Q^\top$ is also positive semi-definite,
# $x M x^\top = \|x W_Q\|^2 \ge 0$, a built-in bias for every token to attend to itself. To tell the two
# apart we add a **control**: $W_K = W_Q D$, with $D$ a diagonal of signs, half $+1$ and half $-1$
# (`indefinite_init_`). Then $M = W_Q D W_Q^\top$ is just as symmetric ($r = 1$) but indefinite: some
# directions score themselves high, others low.
#
# The toy version: five seeds per objective, each trained three times from the same weights and batches
# (standard, `W_K = W_Q`, `W_K = W_Q D`; only `W_K` differs). We count the steps until the moving average
# of the loss over 20 steps reaches a fixed value: 3.0 for the masked model (it has left its plateau), 2.0
# for the causal model. The fifteen runs of an objective train together, in one batched step, on the CPU
# as in section 6. **Predict first:** will the symmetric start help the masked model? The causal one? And
# will the control behave like the symmetric start or like the standard one?

# %%
from toyattn.symmetry.experiments import SymmetricInitResult
from toyattn.symmetry.training import smoothed_losses

THRESHOLDS = {"masked": 3.0, "causal": 2.0}
INIT_NAMES = {"standard": "standard", "symmetric": "W_K = W_Q\n(symmetric, PSD)", "indefinite": "W_K = W_Q D\n(symmetric, indefinite)"}
SEEDS = list(range(5))
steps_taken, runs_by_start = {}, {}
for objective, threshold in THRESHOLDS.items():
    # 1. the fifteen runs of this objective (5 seeds x 3 starts), trained together until all reach the
    #    loss or for STEPS steps
    runs = train_runs(objective, seeds=SEEDS, inits=list(INIT_NAMES), steps=STEPS, stop_below=threshold,
                      scale=SCALE, device=TOY_DEVICE)
    for init in INIT_NAMES:
        # 2. this start's five runs, in seed order; 3. the steps each took (NaN: never reached the loss)
        runs_by_start[(objective, init)] = [run for run in runs if run.init == init]
        reached = [run.steps_to_loss(threshold) for run in runs_by_start[(objective, init)]]
        steps_taken[(objective, init)] = np.array([np.nan if r is None else r for r in reached], dtype=float)
result = SymmetricInitResult(THRESHOLDS, steps_taken, runs_by_start, SEEDS)  # ratios and summary for the next cell

fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
for ax, objective in zip(axes[:2], THRESHOLDS, strict=True):
    per_seed = np.stack([result.steps[(objective, init)] for init in INIT_NAMES])  # [inits, seeds]
    for seed, column in zip(result.seeds, per_seed.T, strict=True):
        ax.plot(range(len(INIT_NAMES)), column, "o-", alpha=0.7, label=f"seed {seed}")  # one line per seed: paired
    ax.set_xticks(range(len(INIT_NAMES)), list(INIT_NAMES.values()), fontsize=8)
    ax.set_xlim(-0.3, len(INIT_NAMES) - 0.7)
    ax.set_title(f"{objective}: steps until the loss reaches {THRESHOLDS[objective]}")
    ax.set_ylabel("training steps")
    ax.legend(fontsize=7)
for init, color in (("standard", "tab:gray"), ("symmetric", "tab:green"), ("indefinite", "tab:purple")):
    for trace in result.traces[("masked", init)]:
        smooth = smoothed_losses(trace.losses)
        axes[2].plot(np.arange(20, 20 + len(smooth)), smooth, color=color, alpha=0.6,
                     label=INIT_NAMES[init].replace("\n", " ") if trace.seed == 0 else None)
axes[2].axhline(THRESHOLDS["masked"], color="black", linestyle=":")
axes[2].set_title("masked model: loss (moving average of 20 steps)")
axes[2].set_xlabel("training step")
axes[2].set_ylabel("cross-entropy (nats)")
axes[2].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Left and middle: each line is one seed, joining its three runs (same weights but for $W_K$, same
# batches), so compare along a line, not across the cloud: a line that falls from "standard" to a
# symmetric start means that start got there sooner for that seed. Right: the masked model's loss
# curves for every run, with the threshold dotted. The next cell prints the step counts and the per-seed
# ratios (below 1: sooner than the standard start).

# %%
print(result.summary())
for objective in THRESHOLDS:
    for init in ("symmetric", "indefinite"):
        ratio = result.ratio(objective, init)
        print(f"{objective}, {init}: per-seed ratio to standard {np.round(ratio, 2).tolist()}")
for init in ("symmetric", "indefinite"):
    start_r = [float(t.head_scores[0].mean()) for t in result.traces[("masked", init)]]
    end_r = [float(t.head_scores[-1].mean()) for t in result.traces[("masked", init)]]
    reached = int(np.isfinite(result.steps[("masked", init)]).sum())
    print(f"masked, {init} init: mean per-head r at step 0 {np.round(start_r, 2).tolist()}, "
          f"when training stopped ({reached} of {len(result.seeds)} runs had reached the loss) {np.round(end_r, 2).tolist()}")
MARGIN = {"masked": 0.8, "causal": 0.9}  # "sooner" as the test counts it: 20% (masked), 10% (causal) fewer steps
for objective in THRESHOLDS:
    ratios = {init: result.ratio(objective, init) for init in ("symmetric", "indefinite")}
    sooner = {init: int(np.sum(r < MARGIN[objective])) for init, r in ratios.items()}
    slower = {init: int(np.sum(r > 1)) for init, r in ratios.items()}
    best = {init: float(np.nanmin(r)) for init, r in ratios.items()}  # the seed that gained most (below 1: sooner)
    print(f"In this run, {objective}: {sooner['symmetric']} of {len(result.seeds)} seeds reach the loss "
          f"{1 - MARGIN[objective]:.0%} sooner from W_K = W_Q and {sooner['indefinite']} from W_K = W_Q D; "
          f"{slower['symmetric']} are slower than the standard start from W_K = W_Q, {slower['indefinite']} from W_K = W_Q D; "
          f"the best seed's ratio is {best['symmetric']:.2f} from W_K = W_Q and {best['indefinite']:.2f} from W_K = W_Q D.")

# %% [markdown]
# What is tested, on five seeds on the CPU (`tests/test_symmetry_experiments.py`): at this scale neither
# symmetric start brings any masked seed to its loss 20% sooner, or any causal seed 10% sooner, and every
# run of every start reaches its loss within the 600 steps. Read the
# printed ratios for the rest: whether the $W_K = W_Q$ start is even slower than the standard one, and
# whether the indefinite control sits with it or with the standard start. If the two symmetric starts
# differ, the difference comes from what separates them, the positive semi-definite bias towards
# attending to oneself, not from symmetry.
#
# The last printed lines follow $r$: every head starts at $r = 1$ from both symmetric starts, and the
# test checks that by the time every run has reached the loss the $W_K = W_Q$ heads are well below it
# (mean per-head $r$ under 0.9). By section 7's argument, a head started at $W_q = W_k$, and equally one
# started at the indefinite control $W_k = W_q D$, would stay at $r = 1$ if $g_{ij} = g_{ji}$ held; so the
# drops printed above for both starts show that even under the masked objective $g_{ij}$ and $g_{ji}$
# differ in these runs, and their size measures by how much. A null result here does not contradict the paper: this model has 2 layers of width 32 and
# learns 850 characters, theirs are BERT-sized models on large corpora, and the steps they save may only
# exist at that scale, or at lower losses than we can afford to train to in a notebook.
# `benchmarks/bench_symmetric_init.py` runs the full grid (ten seeds, four thresholds per objective, 600
# steps) and prints how long it took.

# %% [markdown]
# ## What you learned, and what to try next
#
# * $r = \|\text{sym}(M)\|^2 / \|M\|^2$: 1 symmetric, 0 skew, about 0.5 random (more sharply the larger
#   the model width $d$; the head width $d_h$ hardly matters). Published tables use $s = 2r - 1$.
# * A layer's score is not an average of its heads' scores: without cross terms it is their
#   $\|M_h\|^2$-weighted mean, and cross-head structure can make a layer symmetric when no head is.
# * The trace identity gives the same number from three $d_h \times d_h$ Gram matrices: $6 d\, d_h^2$
#   flops instead of $2 d^2 d_h$, and it batches over layers and heads with einsum.
# * Measured here: the encoder (MiniLM) is clearly more symmetric than the two decoders (SmolLM2 and
#   Gemma 3, whose Q/K norm gains belong to the numerator of its scores), per head and per layer (ordinary
#   medians), in line with Saponati et al. (though MiniLM was cut from a distilled model and fine-tuned contrastively,
#   not trained on masked tokens); the decoders' median directionality is more negative than the encoder's
#   (Gemma's only with its Q/K norm gains folded in).
# * The gradient from a pair $(i, j)$ is the transpose of the one from $(j, i)$ up to its coefficient:
#   bidirectional attention has both, causal attention one (plus the symmetric self-pairs $i = j$, which
#   both have), so $\partial L/\partial M$ *can* be symmetric. A step on $W_q$, $W_k$ changes $M$
#   symmetrically for every symmetric gradient only if $W_k W_k^\top - W_q W_q^\top$ is a multiple of $I$
#   (and $b_q = 0$); with $2 d_h < d$ that means $W_q W_q^\top = W_k W_k^\top$. In
#   the toy models masked training's accumulated update is the more symmetric one, consistent with the
#   argument, while its gradient, even averaged along the run, is not reliably so.
# * Starting symmetric ($W_K = W_Q$, or the indefinite control $W_K = W_Q D$) brought no seed to the loss
#   20% sooner (masked) or 10% sooner (causal) at this scale; section 8's printed ratios give this run's
#   differences. $W_K = W_Q$ also makes $M$ positive semi-definite; a control that is symmetric without
#   that is what separates the two.
#
# **Try next:**
# 1. Re-run sections 6-8 with other seeds (`seeds=[1]` in section 6's `train_runs` call,
#    `SEEDS = list(range(5, 10))` in section 8).
#    Then try `positions="rotary"` in section 6 (section 7's gradients refuse rotary models: $M$ alone no
#    longer gives the score): positions then live in a rotation applied to $q$ and $k$, not in
#    $W_q W_k^\top$. Does the masked model still become symmetric? Why might it not?
# 2. Run `python benchmarks/bench_symmetric_init.py`: ten seeds and four thresholds per objective. Does a
#    lower threshold (later in training) change the verdict on the symmetric start? Is the $W_K = W_Q$
#    start slower than the standard one on most seeds, and does the indefinite control share that?
# 3. On a GPU, `train_runs("masked", seeds=range(5), inits=INITS, scale=4, steps=4000, text=..., device="cuda")`
#    (`train_runs` and `INITS` from `toyattn.symmetry.training`) with a longer text of your own: does a larger model gain from a
#    symmetric start?
# 4. Plot Gemma's per-layer $s$ with and without folding (`gemma_raw`): in which layers do the Q/K norm
#    gains change the score most, and the directionality?
# 5. With network access (a cluster), `score_model("bert-base-uncased")` or `score_model("gpt2")` reads
#    a model from the Hugging Face hub layer by layer: compare with the published medians in section 5.
# 6. Do the exercises: `exercises/03_symmetry_scores.ipynb` (the signed score, the trace form from
#    `nn.Linear` weights, a head with a score you choose, grouped-query heads, and a wide layer).
