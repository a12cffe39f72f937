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
# yourself, where you can ask why training makes a head symmetric and whether starting symmetric helps.
#
# **Learning goals.** After this lesson you can
# 1. define the symmetry score of a head from $M = W_q W_k^\top$, and say what 1, 0 and 0.5 mean;
# 2. build heads with score exactly 1 and exactly 0, and explain why random heads score about 0.5;
# 3. compute the score through the trace identity, and explain why it costs $O(d\,d_h^2)$ instead of
#    $O(d^2 d_h)$;
# 4. score every head of a model in one batched call, including grouped-query attention;
# 5. compare an encoder (MiniLM) with two decoders (SmolLM2, Gemma 3), per head and per layer, in both
#    conventions, relate the numbers to published ones, and say what folding Gemma's Q/K norms means;
# 6. read directionality off the row and column norms of a layer's $M$;
# 7. derive why a bidirectional objective can push $M$ towards symmetric (the gradient from a pair
#    $(i, j)$ and from $(j, i)$), and check the argument on trained models;
# 8. measure whether a symmetric initialisation speeds up training, over seeds with error bars, and
#    report a null result as a result.
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
from toyattn.symmetry_report import score_model
from toyattn.symmetry_training import train_symmetry_experiment

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
# $r = 1$ / $s = 1$, skew-symmetric $r = 0$ / $s = -1$, "no preference" $r = 0.5$ / $s = 0$. Every number
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
# the numerator is small next to the denominator, $s \approx 0$ and $r \approx 0.5$, and more so the
# more terms there are. **Predict first:** how does the spread of random heads' scores change with the
# model width $d$? And with the head width $d_h$?

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for d in (4, 16, 64, 256):
    Wq_many, Wk_many = random_head(d, 4, generator=g, n=400)
    r = symmetry_score(Wq_many, Wk_many).numpy()
    axes[0].hist(r, bins=np.linspace(0.2, 1, 81), histtype="step", linewidth=2,
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
# Left: the model width $d$ decides the spread. At $d = 4$ random heads land anywhere from about 0.3
# to 1; at $d = 256$ they sit within about $\pm 0.003$ of 0.5 (the printed std shrinks roughly like
# $0.7/d$). The mean is a little above 0.5, by about $1/(2d)$: the diagonal entries $M_{ii}$ (a token
# scoring itself) always count as symmetric. Right: the head width $d_h$ hardly changes the spread.
# One oddity: a rank-one head ($d_h = 1$) never scores below 0.5, since for vectors $w_q, w_k$ its
# score is $r = (1 + \cos^2\theta)/2$, with $\theta$ the angle between them. Real models
# have $d$ in the hundreds or thousands (MiniLM: 384), so a random head there scores 0.50 to two
# decimals, and a score of 0.6 is far outside chance: training put it there, pushing the head towards
# symmetric (reciprocal) attention; a score below 0.5 means a push towards skew (one-way) attention.

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
# $A$, $B$, $C$ are only $d_h \times d_h$; each costs $2 d\, d_h^2$ flops, so the score costs $6 d\, d_h^2$ and
# $r = \tfrac12\left(1 + \operatorname{tr}(CC)/\operatorname{tr}(AB)\right)$. The ratio of costs is
# $d / (3 d_h)$: about 11 times fewer flops at the 7B shape. **Predict first:** when $d$ doubles, how
# do the two timings change?

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
# On a log-log plot a cost $\propto d^k$ is a straight line of slope $k$. The flop counts predict a
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
# $W_q$ and $W_k$ then stay in the cache between its three products, and only half of the symmetric
# $A$ and $B$ is computed. Same numbers, faster; `benchmarks/bench_symmetry.py` measures by how much.)
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
# Without the cross terms ($h \ne g$), for instance when heads read and write separate directions,
# this is $\sum_h \|M_h\|^2 s_h / \sum_h \|M_h\|^2$: the **$\|M_h\|^2$-weighted mean** of the head
# scores, so a large head counts more. With cross terms anything can happen. Two heads with
# $M_2 = M_1^\top$ (head 2's query map is head 1's key map and vice versa) add up to
# $M = M_1 + M_1^\top$, exactly symmetric: the layer scores $s = 1$ although each head, if random,
# scores $s \approx 0$. A symmetric *layer* does not mean symmetric *heads*. The next cell checks
# both statements. They also define a **directionality** score of $M_\text{layer}$
# (from their code): compare the norms of $M$'s rows (query-side directions) with those of its
# columns (key-side directions); negative means a few columns stand out, i.e. a few key directions
# that nearly every query reads.

# %%
# Two random heads in separate directions: no cross terms, so the layer score is the weighted mean.
Wq_sep, Wk_sep = torch.zeros(2, 64, 8, dtype=torch.float64), torch.zeros(2, 64, 8, dtype=torch.float64)
for h, scale in ((0, 1.0), (1, 3.0)):  # head h reads and writes dims 32h..32h+31 only; head 1 is larger
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
print("per-layer r           :", np.round(layer_symmetry_score(W_Q, W_K).numpy(), 3))
print("mean of per-head r    :", np.round(scores.mean(dim=1).numpy(), 3))
print("per-layer directionality:", np.round(directionality_score(layer_bilinear(W_Q, W_K)).numpy(), 3))

# %% [markdown]
# For random weights every layer scores near 0.5 both ways. In layer 2 the one symmetric head out of
# nine lifts both numbers, but not by the same amount: the layer form adds all nine heads into one
# matrix, so a head's weight in it depends on its norm and on how it overlaps the others.
#
# Directionality of these random layers is all over the place: it adds up how far the few largest
# row (or column) norms exceed mean + 2 std, so with no real structure it is decided by a handful of
# outliers, and its sign is a coin toss. Read it only where the same sign shows up layer after layer.

# %% [markdown]
# ## 5. An encoder against two decoders
#
# Three real models ship as packages (installed by `make pretrained`; the course finds their files,
# nothing is downloaded):
#
# * **all-MiniLM-L6-v2**: a BERT-family *encoder* (6 layers x 12 heads, $d = 384$, $d_h = 32$), trained
#   bidirectionally, every token sees every other;
# * **SmolLM2-135M-Instruct**: a Llama-family *decoder* (30 layers x 9 query heads sharing 3 key heads,
#   $d = 576$, $d_h = 64$), trained causally, each token sees only earlier ones. It ships as a GGUF file
#   quantized to 4 bits; the reader dequantizes it (and undoes llama.cpp's reordering of rows inside
#   each head, which would not change the scores anyway);
# * **Gemma 3 270M**: a second *decoder*, from another family (18 layers x 4 query heads sharing a single
#   key head, $d = 640$, and wide heads, $d_h = 256$), also a 4-bit GGUF. Its attention normalises every
#   query and key before the dot product (Q/K norms, explained below the table).
#
# `score_model` reads one layer at a time and returns per-head scores, per-layer scores and
# directionality. **Predict first:** which model will score most symmetric? Will the two decoders agree?

# %%
from toyattn.pretrained import (
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
# means more symmetric. Look for where the bright cells are: in MiniLM they sit in several layers (heads
# well above 0.5 are common); in the two decoders most cells are close to the random-head value 0.5 and
# the exceptions are few. Now the distributions side by side.

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
# Left: the encoder's heads spread far to the right of 0.5; the decoders' heads crowd around 0.5.
# Right: per layer (the paper's granularity, in its $s$ convention), the encoder sits well above 0 at
# every depth, the decoders close to 0. The table below gives every model in both conventions, per head
# and per layer, next to the medians Saponati et al. publish (their results table, per layer, $s$
# convention; they did not measure these three models, so compare with the families). A median here is the ordinary one: the
# middle value, or the mean of the two middle values for an even count (MiniLM has 6 layers), as in
# the authors' code (`toyattn.symmetry.median`; `torch.median` would return the lower of the two).

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
# newer recipe, has +0.18; the decoders span 0.00 (Llama-3-8B, Mistral-7B) to +0.15 (gpt2). MiniLM's
# per-layer median lands inside the BERT-family range, far above the decoders, and SmolLM2's and
# Gemma's (folded) inside the decoder range. Per head, every median is closer to 0.5 than per layer:
# the layer form adds the heads' cross terms (section 4). These numbers come from fixed checkpoints, so
# every machine prints them to the digits shown (`tests/test_checkpoints.py` and
# `tests/test_symmetry_gemma.py` check the ranges). Directionality is negative for all three, more so
# for the two decoders: the direction the paper reports (decoders clearly negative, encoders near 0),
# though with three models that comparison is still anecdotal. One caution: the directionality definition comes from the
# authors' code (mean + 2 std thresholds on row and column norms), so treat it as their operational
# choice, not a law.

# %% [markdown]
# **Gemma's Q/K norms, folded.** Gemma 3 normalises every head's query and key before the dot product
# (an RMSNorm with learned gains $g_q, g_k \in \mathbb{R}^{d_h}$):
# $\tilde q = g_q \odot q / \operatorname{rms}(q)$, $\tilde k = g_k \odot k / \operatorname{rms}(k)$. With
# $q = x_q W_Q$ and $k = x_k W_K$,
#
# $$ \tilde q \cdot \tilde k = \frac{x_q\, W_Q \operatorname{diag}(g_q \odot g_k)\, W_K^\top x_k^\top}{\operatorname{rms}(q)\,\operatorname{rms}(k)}. $$
#
# The denominator is positive and belongs to the token pair, not to the weights, so the bilinear form
# that decides the scores is $W_Q \operatorname{diag}(g_q \odot g_k) W_K^\top$: **folding** multiplies the
# gains into $W_Q$ and $W_K$ before scoring (the reader's default; `fold_qk_norm=False` gives the raw
# projections). This ignores RoPE, which rotates $\tilde q$ and $\tilde k$ by their positions after the
# norm, as it is ignored for SmolLM2. The table shows Gemma both ways, and the gains are not a detail:
# they weigh the $d_h$ directions of each head unequally. Raw, Gemma looks closer to a random model (its
# per-layer median $s$ is lower and its directionality near 0); folded, it scores like the other decoder
# on both counts. Only the folded form is the one its attention computes.

# %% [markdown]
# ## 5b. Directionality, seen
#
# The directionality score compares the norms of $M$'s **rows** (one per query-side direction) with the
# norms of its **columns** (one per key-side direction). A column with a large norm is a key-side
# direction that many query directions score highly: whatever a token writes there gets read.
# **Predict first:** in a decoder, where every token is a key for all later tokens but a query only
# once, would you expect a few rows or a few columns to stand out?

# %%
from toyattn.checkpoints import iter_qk_layers

if reports:
    fig, axes = plt.subplots(1, len(reports) + 1, figsize=(4.6 * (len(reports) + 1), 3.8))
    for ax, (label, locate) in zip(axes, [(k, MODELS[k]) for k in reports], strict=False):
        layers = iter_qk_layers(locate())
        middle = layers.n_layers // 2  # one layer from the middle of the model
        layer = layers[middle]  # reads that layer only
        M = layer_bilinear(layer.W_Q.double(), layer.W_K.double())
        rows, cols = M.norm(dim=1), M.norm(dim=0)  # one norm per row, one per column
        scale = float(rows.mean())
        bins = np.linspace(0, float(torch.cat([rows, cols]).max()) / scale * 1.02, 40)
        for norms, name, color in ((rows, "rows (query side)", "tab:blue"), (cols, "columns (key side)", "tab:orange")):
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
# adds up how far the norms beyond them reach, rows minus columns. In the two decoders the orange
# histogram has the longer right tail (compare the printed max/mean and std/mean of rows and columns):
# a few key-side directions that nearly every query reads, and a negative score. In MiniLM the columns
# spread only a little wider than the rows, and its score in that layer is close to 0. The right panel shows that one
# layer is not the whole story: the score swings from layer to layer, most in the decoders, and it is
# negative in most of their layers (the medians printed in section 5), as Saponati et al. report for
# decoders. The answer to the prediction: columns, because every key serves all the queries after it.

# %% [markdown]
# Why might encoders and decoders differ? In an encoder, the masked-token objective rewards pairs of
# tokens that inform *each other* (reciprocal), which a symmetric $M$ expresses. In a decoder,
# information only flows from earlier to later tokens, so the objective has no use for reciprocity, and
# $M$ can be anything. Can we watch this happen?

# %% [markdown]
# ## 6. Experiment: train an encoder and a decoder on the same text
#
# Two tiny transformers (the course's `Transformer`, 2 layers x 2 heads, $d = 32$, learned absolute
# positions as in BERT and GPT-2) start from *identical* weights and see the same 16-character windows
# of the same text (the *Zen of Python*, which ships with every Python), character by character:
#
# * **masked** (bidirectional, `causal=False`): 15% of the characters are replaced by a `[MASK]` token
#   and the model predicts them from both sides, as BERT does;
# * **causal**: each position predicts the next character from the earlier ones, as GPT does.
#
# Every 20 steps we record the per-head and per-layer scores and the directionality of each layer. `SCALE = 1` runs in seconds on a laptop
# CPU; on a GPU try `SCALE = 4, STEPS = 4000`. **Predict first:** which model's scores rise?

# %%
SCALE, STEPS = 1, 600
traces = train_symmetry_experiment(steps=STEPS, scale=SCALE, seed=0, device=device)

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

# %% [markdown]
# Both models start at the same point (same weights, $s$ near 0 as for any random head). In the loss
# panel, look for how the two tasks differ: the causal model can memorize the short poem, so its loss
# can keep falling from the start, while the masked model can do little better than character
# frequencies until its attention learns to read the neighbours of a hidden character; look for a
# plateau and a later drop in the blue curve.
#
# On the left, compare the blue lines (masked) with the red ones (causal) as training goes on, and the
# printed final values. The paper's finding is that bidirectional training makes $W_q W_k^\top$ more
# symmetric; if it shows up here, the blue lines end above the red ones (`tests/test_symmetry.py`
# checks that the masked model ends clearly more symmetric, on several seeds).
# One way to see why: to fill in a hidden character, position $i$ wants to read $i-1$ and $i+1$ alike,
# and "$i$ and $j$ are neighbours" is a symmetric relation; a causal model may only read backwards, a
# one-way relation. One run of a tiny model is an anecdote: before trusting it, re-run it with other
# seeds, which is the first item below.
#
# The right panel follows each layer's directionality. With $d = 32$ each set holds only 32 norms, and
# mean + 2 std is crossed by one or two of them or by none, so the score jumps between $-1$, 0 and $+1$
# as single norms cross the threshold. Read it as a noisy signal, and check a sign against other seeds
# (`seed=1, 2`) before trusting it; the column-heavy $M$ of section 5b's decoders comes from models with
# hundreds of dimensions and far more training.

# %% [markdown]
# ## 7. Why would a bidirectional objective make $M$ symmetric?
#
# Take one head. The score of query position $i$ against key position $j$ is
# $s_{ij} = x_i M x_j^\top$ (times the constant $1/\sqrt{d_h}$, plus bias terms), with $x_i$ the row
# vector entering the layer at position $i$. The loss depends on $M$ only through the scores, so by the
# chain rule
#
# $$ \frac{\partial L}{\partial M} = \sum_{i,j} g_{ij}\, x_i^\top x_j, \qquad g_{ij} = \frac{\partial L}{\partial s_{ij}}: $$
#
# one outer product per (query, key) pair. The pair $(i, j)$ adds $g_{ij}\, x_i^\top x_j$; the reversed
# pair $(j, i)$ adds $g_{ji}\, x_j^\top x_i = g_{ji}\,(x_i^\top x_j)^\top$, the **transpose** of the same
# outer product. If $g_{ij} = g_{ji}$ the two add up to $g_{ij}(x_i^\top x_j + x_j^\top x_i)$, a symmetric
# matrix, and a gradient step changes $M$ symmetrically.
#
# * **Bidirectional attention:** both $(i, j)$ and $(j, i)$ are in the sum for every two positions. When
#   the objective treats both directions alike on average (filling in a character wants its left and its
#   right neighbour; "$i$ and $j$ are neighbours" is a symmetric relation), their terms pair up.
# * **Causal attention:** $g_{ij} = 0$ whenever $j > i$ (the mask sets those scores to $-\infty$), so of
#   every pair only the (later query, earlier key) term is there, with no transpose to pair with. And
#   every token is the key of all later queries: a few key directions can be pushed by every query, the
#   column-heavy $M$ of section 5b.
#
# This says which terms *can* appear, not that they match: $g_{ij}$ and $g_{ji}$ are different numbers.
# Two ways to check it on section 6's models, which started from the same weights: the **update** that
# training added to each layer, $\Delta M = M_\text{end} - M_\text{start}$ (what AdamW made of 600
# gradients), and the **gradient** $\partial L / \partial M$ itself on 8 fresh batches, at the start and at
# the end. **Predict first:** for which of the two will the masked model's be the more symmetric?

# %%
from toyattn.symmetry import matrix_symmetry_score
from toyattn.symmetry_experiments import bilinear_gradients, bilinear_update
from toyattn.symmetry_training import CharTask, char_batches

task = CharTask.from_text(None, seq_len=16)
windows, hidden = char_batches(task, seed=123, steps=8, batch_size=32, seq_len=16, mask_prob=0.15)


def layer_r(per_head):
    """Per-layer r of a [layers, heads, d, d] stack: the sum over heads is the change of the layer's form."""
    return matrix_symmetry_score(per_head.sum(dim=1)).numpy()


def gradient(model):
    return sum(bilinear_gradients(model, windows[k], hidden[k], mask_id=task.mask_id) for k in range(8))


print(f"{'per-layer r (0.5: no preference, 1: symmetric)':52s} {'layer 0':>8s} {'layer 1':>8s} {'max':>6s}")
for name, trace in traces.items():
    for what, r in (
        ("update M_end - M_start", layer_r(bilinear_update(trace))),
        ("gradient dL/dM at the start", layer_r(gradient(trace.initial_model()))),
        ("gradient dL/dM at the end", layer_r(gradient(trace.model()))),
    ):
        print(f"{name + ': ' + what:52s} {r[0]:8.2f} {r[1]:8.2f} {r.max():6.2f}")

# %% [markdown]
# Read the update rows first: the masked model's update is the more symmetric one (compare the largest
# per-layer value), while the causal model's stays closer to 0.5, no preference. The accumulated update
# follows the pairing argument, and not only for this seed: `tests/test_symmetry_training.py` checks it
# for five seeds, and `benchmarks/bench_symmetric_init.py` counts it over ten.
#
# The gradient rows do not follow it reliably: for some seeds one step's gradient (summed over 8
# batches) is more symmetric under the masked objective, for others under the causal one
# (`tests/test_symmetry_training.py` checks that the masked one does not win on every seed, and the
# benchmark counts how often it does over ten). The argument needs $g_{ij} \approx g_{ji}$, and nothing in one batch
# forces that; the terms pair up only on average, over hundreds of steps in which every position is
# hidden in turn and every pair is seen both ways. What becomes symmetric is the accumulated update,
# not each step. A single gradient is a noisy sample of the drift; the drift is what the argument is about.

# %% [markdown]
# ## 8. Does a symmetric start speed up training?
#
# If bidirectional training pushes $M$ towards symmetric anyway, starting there might save the steps it
# takes to get there. Saponati et al. try exactly this: initialise $W_q$ as a copy of $W_k$, so every head
# starts at $r = 1$. Their pages report up to about 70% fewer steps to a given loss for a 4-layer BERT and
# about 35% for 12 layers (from the authors' pages; the paper's exact figures were not checked here); for
# a causal model they expect no such gain.
#
# The toy version: five seeds per objective, each trained twice from the same weights and batches, once
# as initialised and once with `W_K = W_Q` in every head (`symmetric_init_`). We count the steps until the
# moving average of the loss over 20 steps reaches a fixed value: 3.0 for the masked model (it has left its
# plateau), 2.0 for the causal model. The ten runs of an objective train together, in one batched step.
# **Predict first:** will the symmetric start help the masked model? The causal one?

# %%
from toyattn.symmetry_experiments import symmetric_init_experiment
from toyattn.symmetry_training import smoothed_losses

THRESHOLDS = {"masked": 3.0, "causal": 2.0}
result = symmetric_init_experiment(THRESHOLDS, seeds=range(5), steps=STEPS, device=device)

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for ax, objective in zip(axes[:2], THRESHOLDS, strict=True):
    for x, init in enumerate(("standard", "symmetric")):
        steps_needed = result.steps[(objective, init)]
        ax.plot(np.full(len(steps_needed), x) + np.linspace(-0.08, 0.08, len(steps_needed)), steps_needed, "o",
                color=["tab:gray", "tab:green"][x], alpha=0.7)
        ax.errorbar(x + 0.2, np.nanmean(steps_needed), yerr=np.nanstd(steps_needed, ddof=1), fmt="s", capsize=6,
                    color="black")
    ax.set_xticks([0, 1], ["standard init", "symmetric init\n(W_K = W_Q)"])
    ax.set_xlim(-0.5, 1.5)
    ax.set_title(f"{objective}: steps until the loss reaches {THRESHOLDS[objective]}")
    ax.set_ylabel("training steps")
for trace in result.traces[("masked", "standard")] + result.traces[("masked", "symmetric")]:
    smooth = smoothed_losses(trace.losses)
    axes[2].plot(np.arange(20, 20 + len(smooth)), smooth, color="tab:gray" if trace.init == "standard" else "tab:green",
                 alpha=0.7, label=f"{trace.init} init" if trace.seed == 0 else None)
axes[2].axhline(THRESHOLDS["masked"], color="black", linestyle=":")
axes[2].set_title("masked model: loss (moving average of 20 steps)")
axes[2].set_xlabel("training step")
axes[2].set_ylabel("cross-entropy (nats)")
axes[2].legend()
plt.tight_layout()
plt.show()

# %%
print(result.summary())
for objective in THRESHOLDS:
    print(f"{objective}: per-seed ratio symmetric / standard {np.round(result.ratio(objective), 2).tolist()}")
start_r = [float(t.head_scores[0].mean()) for t in result.traces[("masked", "symmetric")]]
end_r = [float(t.head_scores[-1].mean()) for t in result.traces[("masked", "symmetric")]]
print(f"masked, symmetric init: mean per-head r at step 0 {np.round(start_r, 2).tolist()}, "
      f"when training stopped (every run had reached the loss) {np.round(end_r, 2).tolist()}")

# %% [markdown]
# Left and middle: each dot is one seed's step count, the black square and bar the mean ± one standard
# deviation over the five seeds. Right: the masked model's loss curves, grey from the standard start,
# green from the symmetric one, with the threshold dotted. A ratio below 1 means the symmetric start got
# there sooner.
#
# At this scale the answer is **no**, for both objectives: no seed of the masked model reaches its loss
# much sooner from the symmetric start, and no seed of the causal model gains either (read the printed
# ratios; `tests/test_symmetry_training.py` checks that no masked seed gets there even 20% sooner and no
# causal seed 10% sooner). The last printed line shows that the symmetric start does not last: the heads start at
# $r = 1$ and are well below it by the time every run has reached the loss (the test checks that too), so training
# moves the model away from the symmetric start instead of building on it. A null result here does not contradict the
# paper: this model has 2 layers of width 32 and learns 850 characters, theirs are BERT-sized models on
# large corpora, and the steps they save may only exist at that scale, or at lower losses than we can
# afford to train to in a notebook. `benchmarks/bench_symmetric_init.py` runs the full grid (ten seeds,
# four thresholds per objective, 600 steps) and prints how long it took.

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
#   Gemma 3, whose Q/K norm gains belong to its form), per head and per layer (ordinary medians), in line
#   with Saponati et al.; the decoders' directionality is negative in most layers (columns stand out).
# * The gradient from a pair $(i, j)$ is the transpose of the one from $(j, i)$ up to its coefficient:
#   bidirectional attention has both, causal attention one. In the toy models the accumulated update of
#   masked training is the more symmetric one; a single step's gradient does not show it.
# * Starting symmetric ($W_K = W_Q$) did not save steps at this scale, for either objective.
#
# **Try next:**
# 1. Re-run sections 6-8 with other seeds (`seeds=range(5, 10)`). Then try `positions="rotary"` in
#    section 6: positions then live in a rotation applied to $q$ and $k$, not in $W_q W_k^\top$. Does the
#    masked model still become symmetric? Why might it not?
# 2. Run `python benchmarks/bench_symmetric_init.py`: ten seeds and four thresholds per objective. Does a
#    lower threshold (later in training) change the verdict on the symmetric start?
# 3. On a GPU, `train_runs("masked", seeds=range(5), inits=INITS, scale=4, steps=4000, text=...)` (from
#    `toyattn.symmetry_training`) with a longer text of your own: does a larger model gain from a
#    symmetric start?
# 4. Plot Gemma's per-layer $s$ with and without folding (`gemma_raw`): in which layers do the Q/K norm
#    gains change the score most, and the directionality?
# 5. With network access (a cluster), `score_model("bert-base-uncased")` or `score_model("gpt2")` reads
#    a model from the Hugging Face hub layer by layer: compare with the published medians in section 5.
# 6. Do the exercises: `exercises/03_symmetry_scores.ipynb` (its last exercise builds a layer from two
#    heads $M$ and $M^\top$: each head scores like a random one, the layer exactly 1).
