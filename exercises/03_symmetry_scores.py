# %% [markdown]
# # Lesson 3 problem set: symmetry scores of attention heads
#
# *This is the exercise version of the problem set: your code goes where a cell says YOUR CODE HERE; the solved version is in `solutions/`.*
#
# **Learning goals: what you will be able to do afterwards.**
# 1. Measure how symmetric an attention head is, in the signed convention of published tables, with the
#    norm in front of it folded in.
# 2. Get the score without ever building the $d \times d$ matrix, from weights stored the way
#    `nn.Linear` stores them, and see why that matters.
# 3. Build a head with any score you are given, from a symmetric and a skew-symmetric part.
# 4. Score every head of a grouped-query model in one batched computation, and run it on a real encoder.
# 5. Score a whole wide layer without its $d \times d$ matrix, and explain why a layer can look symmetric
#    when none of its heads is.
#
# Read `notebooks/03_symmetry_scores` first (sections 1-4). Unless an exercise says otherwise, shapes
# follow the course's convention: `W_q`, `W_k` are `[d_model, d_head]`, a head's query is `q = x @ W_q`
# (row vectors), and the head scores query $x$ against key $y$ with $x M y^\top$, $M = W_q W_k^\top$. The
# **symmetry score** $r$ is the share of $\|M\|_F^2$ that lies in the symmetric part of $M$; published
# tables use the signed $s = 2r - 1 \in [-1, 1]$. Each exercise says which one it wants.
#
# Each exercise says what to compute; how is up to you. A **Hint** cell follows each one: skip it
# unless you are stuck. Every check tries fresh inputs, including heads built to score exactly 1 and
# exactly 0, and tells you which mistake a wrong answer looks like. Checks also refuse answers that call
# `toyattn.symmetry.scores`, which holds the course's own solutions.

# %%
import time

import torch

from toyattn import checks, seed_everything

g = seed_everything(0)

# %% [markdown]
# ## Exercise 1: the signed score of a head behind a norm
#
# In a real model a head does not read the residual stream directly: a LayerNorm (or RMSNorm) comes
# first, and its output is the normalised vector $\hat x$ times a learned **gain** $\gamma$ (one number per
# dimension, elementwise). So the head computes $q = (\hat x \odot \gamma) W_q$ and $k = (\hat y \odot \gamma) W_k$.
# Write `signed_score(W_q, W_k, gamma)` (`gamma` of shape `[d_model]`): the **signed** score $s$, the
# convention of Saponati et al.'s tables ($+1$ symmetric, $-1$ skew-symmetric, $2r - 1$ in general), of
# the bilinear form the head applies to the *normalised* vectors $\hat x$, $\hat y$. Decide first which
# $d_\text{model} \times d_\text{model}$ matrix that is, and whether the gain can change its score. Return a
# number or a 0-d tensor.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Write $q \cdot k$ out with $\hat x \odot \gamma = \hat x \operatorname{diag}(\gamma)$: which matrix sits between
# $\hat x$ and $\hat y^\top$? Then $s = (\|S\|^2 - \|K\|^2)/\|M\|^2$ for that matrix, with $S$ and $K$ its symmetric
# and skew parts. A congruence $DMD$ keeps a symmetric $M$ symmetric and a skew one skew, but it weights
# the entries $M_{ij}$ by $\gamma_i \gamma_j$ unevenly.
# </details>

# %%
def signed_score(W_q: torch.Tensor, W_k: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """W_q, W_k: [d_model, d_head], gamma: [d_model] -> signed score s in [-1, 1] of diag(gamma) W_q W_k^T diag(gamma)."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_symmetry_score_definition(signed_score)

# %% [markdown]
# **Question.** A head whose keys are its queries ($W_k = W_q$) scores $s = 1$, with any gain. Predict the
# score of a head with $W_k = -W_q$: it scores every pair of tokens with the opposite sign. And for a random
# head, does a gain spread over a factor of about 10 move $s$ by more than 0.1? Write your guesses down,
# then run the next cell.

# %%
W_q, W_k = torch.randn(2, 8, 3, generator=g)
gamma = torch.exp(torch.randn(8, generator=g))
ones = torch.ones(8)
print("W_k = W_q :", float(signed_score(W_q, W_q, gamma)))
print("W_k = -W_q:", float(signed_score(W_q, -W_q, gamma)))
s_plain, s_gain = float(signed_score(W_q, W_k, ones)), float(signed_score(W_q, W_k, gamma))
print(f"a random head: s = {s_plain:+.3f} without a gain, {s_gain:+.3f} with gamma (max/min "
      f"{float(gamma.max() / gamma.min()):.1f}): the gain moved s by {abs(s_gain - s_plain):.3f}, "
      f"{'more' if abs(s_gain - s_plain) > 0.1 else 'less'} than 0.1 in this draw.")

# %% [markdown]
# Both print 1: $-M$ is symmetric exactly when $M$ is. The score measures *reciprocity* (does $x$
# score $y$ as $y$ scores $x$?), not whether the scores are positive. The gain keeps a symmetric head
# symmetric and a skew one skew, but for anything in between it reweights the entries $M_{ij}$ by
# $\gamma_i \gamma_j$, and the printed last line says how much that moved $s$ here: a score read off the raw
# weights need not be the score of the form the model applies: say which space a number is in (lecture,
# section 5, "Which space $M$ lives in").

# %% [markdown]
# ## Exercise 2: the score without the d x d matrix, from nn.Linear weights
#
# A PyTorch `nn.Linear(d_model, d_head)` stores its weight as `[d_head, d_model]` and computes
# `q = x @ W.T`. Write `score_by_trace(W_q, W_k)` taking **both maps in that layout** and returning the
# head's $r$ (in $[0, 1]$). First decide what $M$ is in this layout (the $d_\text{model} \times d_\text{model}$
# form with $q \cdot k = x M y^\top$), then compute its score without creating anything as large as
# `d_model x d_model`. Aim for a cost that grows like $d\,d_h^2$, not $d^2 d_h$, and compute in torch: the
# check counts the floating-point work of your matrix products (inside `einsum` too) on a head with
# `d_model` over 1000, and watches the sizes of the tensors your code makes, one by one and added up.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Here $q = x W_q^\top$, so $M = W_q^\top W_k$. Write $r$ as $\tfrac12\left(1 + \operatorname{tr}(MM)/\|M\|_F^2\right)$,
# write both traces as traces of products of four thin matrices, and rotate them cyclically
# ($\operatorname{tr}(XYZ) = \operatorname{tr}(YZX)$) until every product you form is $d_h \times d_h$. Check which
# side the $d_\text{model}$ axis is on before you transpose anything: the lecture's $A = W_q^\top W_q$ is
# `d_model x d_model` in this layout. An `einsum` with four operands is contracted two at a time, in an
# order you do not choose: form the small products one by one.
# </details>

# %%
def score_by_trace(W_q: torch.Tensor, W_k: torch.Tensor) -> torch.Tensor:
    """W_q, W_k: [d_head, d_model] (nn.Linear layout) -> r of M = W_q^T W_k, in O(d_model * d_head^2)."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_symmetry_score_trace(score_by_trace)

# %% [markdown]
# **Question.** The lecture's rule of thumb says random heads' scores spread like $0.7 / d_\text{model}$,
# measured with $d_h$ far below $d_\text{model}$. Does it survive when the head is as wide as the model
# ($d_h = d_\text{model}$: square maps, $M$ of full rank, its entries no longer sums of a few products)?
# Predict the std at `d_model = 256` for `d_head = 4`, `64` and `256`. Then run the next cell: it scores 100
# random heads per shape with your `score_by_trace`.

# %%
ratios = []
for d_model in (32, 256):
    for d_head in (4, d_model // 4, d_model):
        r = torch.tensor([float(score_by_trace(*torch.randn(2, d_head, d_model, generator=g, dtype=torch.float64)))
                          for _ in range(100)])
        ratios.append(float(r.std()) / (0.7 / d_model))
        print(f"d_model {d_model:4d}, d_head {d_head:4d}: mean r {float(r.mean()):.4f}, std {float(r.std()):.2e}, "
              f"0.7 / d_model = {0.7 / d_model:.2e}")
# With 100 heads a printed std wobbles by about 7% (one standard error); allow three of them.
verdict = "holds" if all(abs(q - 1) < 0.25 for q in ratios) else "does not hold"
print(f"std / (0.7 / d_model) ranges from {min(ratios):.2f} to {max(ratios):.2f} over these shapes: in this run "
      f"the rule {verdict} (within 25%) for every d_head, d_head = d_model included.")

# %% [markdown]
# Compare the printed sentence with your prediction. The spread is set by the model width, whatever the
# head width: "this head scores 0.6" means little in a narrow model and a lot in a wide one, for wide
# heads as for thin ones.

# %% [markdown]
# ## Exercise 3: a head with a score you choose
#
# Write `key_with_score(W_q, r, generator)`: a `W_k` of the same shape as `W_q` (`[d_model, d_head]`,
# `d_head` at least 2) whose head $M = W_q W_k^\top$ scores **exactly** `r`, for any `r` in $[0, 1]$. If you
# need random numbers, draw them with `torch.randn(..., generator=generator, dtype=W_q.dtype)`.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# The lecture builds a symmetric head ($W_k = W_q P$) and a skew one ($W_k = W_q S^\top$). With
# $W_k = W_q(aI + bS)^\top$, $M = a\,W_q W_q^\top + b\,W_q S W_q^\top$: a symmetric part plus a skew part. The
# score is a share of *squared norms*: what must $a$ and $b$ be so that the symmetric part carries a share
# $r$ of $\|M\|_F^2$?
# </details>

# %%
def key_with_score(W_q: torch.Tensor, r: float, generator: torch.Generator) -> torch.Tensor:
    """W_q: [d_model, d_head] -> W_k: [d_model, d_head] whose head W_q @ W_k.T scores exactly r."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_key_with_score(key_with_score)

# %% [markdown]
# **Question.** Take a head with $d_h = 3$ (so $M = W_q W_k^\top$ has rank at most 3). Predict the rank of
# $M$ for the keys your `key_with_score` makes at $r = 0$, $0.5$ and $1$: does the construction keep all
# three directions in every case? Also: what does your function do for $d_h = 1$ and $r = 0.5$, outside
# its contract (what is a $1 \times 1$ skew-symmetric matrix)? Predict, then run the next cell.

# %%
W_q = torch.randn(10, 3, generator=g, dtype=torch.float64)
ranks = {}
for r in (0.0, 0.5, 1.0):
    W_k = key_with_score(W_q, r, g)
    ranks[r] = int(torch.linalg.matrix_rank(W_q @ W_k.T))
    print(f"target r = {r}: score_by_trace gives {float(score_by_trace(W_q.T, W_k.T)):.6f}, "
          f"signed_score gives {float(signed_score(W_q, W_k, torch.ones(10, dtype=W_q.dtype))):+.6f}, "
          f"rank of M = {ranks[r]}")
print("In this run M has rank", ", ".join(f"{k} at r = {r}" for r, k in ranks.items()),
      "(at most 3 = d_head).")
W_1 = torch.randn(5, 1, generator=g, dtype=torch.float64)
try:
    print("d_head = 1, r = 0.5:", key_with_score(W_1, 0.5, g).flatten().tolist())
except Exception as err:  # outside the exercise's contract: a correct solution may fail here
    print(f"d_head = 1, r = 0.5: your function raised {type(err).__name__}: {err}")

# %% [markdown]
# The targets come back to float64 rounding, and the signed score is $2r - 1$. Compare the printed ranks with
# your prediction: a skew-symmetric matrix has even rank (its eigenvalues come in pairs $\pm i\lambda$), so
# a $3 \times 3$ skew $S$ has rank 2 and a purely skew head $W_q S W_q^\top$ loses one of its three
# directions, while $aI + bS$ with $a \ne 0$ is invertible. With $d_h = 1$ the only skew-symmetric
# $1 \times 1$ matrix is 0: the course's solution divides $0/0$ and returns NaN; a solution that builds
# $S$ entry by entry may raise an error instead, as printed.

# %% [markdown]
# ## Exercise 4: every head of a grouped-query model at once
#
# A model's weights stack into `W_Q` of shape `[layers, heads, d_model, d_head]` and `W_K` of shape
# `[layers, kv_heads, d_model, d_head]`: under grouped-query attention `kv_heads` divides `heads`, and each
# key head serves `heads // kv_heads` query heads (SmolLM2-135M: 9 query heads and 3 key heads per layer;
# `kv_heads = heads` is ordinary attention). Decide which key head each query head uses (lecture, section
# 4). Write `batched_scores(W_Q, W_K)` returning the scores `[layers, heads]`, one per query head with its
# key head, batched over the query heads: no `d_model x d_model` matrix, no more work than the trace form,
# no Python loop over the query heads (a loop over layers or over key heads is yours to choose). The check
# watches all three, on a layer with 64 query heads and on wide heads with `d_model` over 1000, in torch.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Which key head does query head `h` use: `h // (heads // kv_heads)` or `h % kv_heads`? Then either
# repeat each key head for its group (`repeat_interleave` along the head axis) or, without copying,
# view the query heads as `[layers, kv_heads, group, d_model, d_head]` and let `einsum` broadcast a key
# head over its group. A trace of a product is a sum over the last two axes.
# </details>

# %%
def batched_scores(W_Q: torch.Tensor, W_K: torch.Tensor) -> torch.Tensor:
    """W_Q: [layers, heads, d_model, d_head], W_K: [layers, kv_heads, d_model, d_head] -> scores [layers, heads]."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_batched_symmetry_scores(batched_scores)

# %% [markdown]
# ### Your function on a real encoder
#
# `toyattn.weights.checkpoints.load_qk` reads every layer's query and key maps from a checkpoint, in the same
# `[layers, heads, d_model, d_head]` layout. If the course's packaged MiniLM encoder is installed
# (`make pretrained`), your `batched_scores` runs on it and is compared with the course's
# `toyattn.symmetry.scores.symmetry_score`; otherwise a random model stands in.
#
# **Question.** What share of MiniLM's 72 heads will score above 0.5 (the random level)? Predict, then
# run the next cell.

# %%
from toyattn.symmetry import symmetry_score
from toyattn.weights.checkpoints import load_qk
from toyattn.weights.pretrained import PretrainedNotInstalled, minilm_path

try:
    W_Q, W_K = load_qk(minilm_path())
    source = "all-MiniLM-L6-v2"
except PretrainedNotInstalled as err:
    print(err)
    W_Q, W_K = torch.randn(6, 12, 384, 32, generator=g), torch.randn(6, 12, 384, 32, generator=g)
    source = "a random stand-in"
start = time.perf_counter()
mine = batched_scores(W_Q.double(), W_K.double())
seconds = time.perf_counter() - start
print(f"{source}: scores {tuple(mine.shape)} in {seconds:.3f} s, mean r = {float(mine.mean()):.3f}, "
      f"share of heads above 0.5: {float((mine > 0.5).double().mean()):.2f}, "
      f"largest difference from toyattn: {float((mine - symmetry_score(W_Q, W_K)).abs().max()):.1e}")

# %% [markdown]
# Compare the printed share and mean with your prediction. This is a mean of per-head $r$; the lecture's
# section 5 table puts MiniLM's per-head *median* $r$ next to it, and its per-layer column ("median per
# layer", $s$) is the one to compare with the published numbers, which are per-layer medians of $s$. A
# random stand-in sits at 0.5 up to its spread from Exercise 2's question. The difference from `toyattn`
# is rounding: both compute the same traces.

# %% [markdown]
# ## Exercise 5: one score for a whole, wide layer
#
# Published tables (Saponati et al. 2025) give one number per *layer*: the score of
# $M_\text{layer} = \sum_h W_q^{(h)} W_k^{(h)\top}$, the bilinear form of all the layer's heads
# together (the layer's output is a sum over heads). Write `layer_score(W_Q, W_K)` for one layer,
# `W_Q`, `W_K` of shape `[heads, d_model, d_head]`, returning $r$ of $M_\text{layer}$ (one number),
# **without** forming any `d_model x d_model` matrix: the check includes a layer with `d_model` over
# 1000 and counts the work, as in Exercise 2.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Put the heads side by side: if `Q` is `W_Q` with its heads concatenated along `d_head` (shape
# `[d_model, heads * d_head]`), what is `Q @ K.T`? Then the layer is one wide head, and you already know
# how to score a head without its $M$ (mind which layout your Exercise 2 function takes).
# </details>

# %%
def layer_score(W_Q: torch.Tensor, W_K: torch.Tensor) -> torch.Tensor:
    """W_Q, W_K: [heads, d_model, d_head] -> r of M_layer = sum_h W_Q[h] @ W_K[h].T (0-d tensor)."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_layer_symmetry_score(layer_score)

# %% [markdown]
# **Question.** Take two random maps $W_a$, $W_b$ and a layer of two heads: head 1 has
# $(W_q, W_k) = (W_a, W_b)$, head 2 has $(W_b, W_a)$, so $M_2 = M_1^\top$. The lecture (section 4) printed
# the layer score of such a pair. Here predict something it did not show: give head 2 the maps
# $(2W_b, W_a)$ instead, so that $M_2 = 2M_1^\top$. Is the layer still exactly symmetric? Above or below
# the heads' scores? Then run the next cell.

# %%
W_a, W_b = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
for factor in (1.0, 2.0):
    pair_Q, pair_K = torch.stack([W_a, factor * W_b]), torch.stack([W_b, W_a])
    print(f"head 2 = ({factor:g} W_b, W_a): head scores",
          [round(float(r), 3) for r in batched_scores(pair_Q[None], pair_K[None])[0]],
          " layer score:", round(float(layer_score(pair_Q, pair_K)), 3))

# %% [markdown]
# With equal sizes the layer scores 1: $M_\text{layer} = M_1 + M_1^\top$ is symmetric by construction. With
# $M_\text{layer} = M_1 + 2M_1^\top = \tfrac32(M_1 + M_1^\top) - \tfrac12(M_1 - M_1^\top)$ a skew part comes back. Its
# coefficient is a third of the symmetric part's, so for a random $M_1$ (whose $M_1 + M_1^\top$ and
# $M_1 - M_1^\top$ have about equal norms) the skew part carries about $1/9$ of the symmetric part's squared
# norm: $r \approx 9/10$, as printed, still far above the heads' scores. In the signed form $s = \operatorname{tr}(MM)/\|M\|_F^2$ of the layer,
# both parts have cross terms between heads: the denominator $\|M_\text{layer}\|_F^2$ has
# $2\langle M_h, M_{h'}\rangle$ and the numerator $\operatorname{tr}(M_\text{layer} M_\text{layer})$ has
# $2\operatorname{tr}(M_h M_{h'})$ for every pair of heads, so the layer score is not an average of head
# scores. Only when all cross terms vanish (for instance when different heads' maps read mutually
# orthogonal directions) is it the $\|M_h\|_F^2$-weighted mean of the head scores. Say which granularity a
# number is before you compare it with a published one.
#
# ## What you practised, and what to try next
#
# * The definition is obvious but costs $O(d^2 d_h)$; the trace form gives the same number in
#   $O(d\,d_h^2)$ in any layout, and batches over any leading axes, grouped-query heads included.
# * Skew-symmetric heads score 0, symmetric ones 1, random ones about 0.5, with a spread set by
#   `d_model`; a mix of the two parts scores the share of squared norms you give it.
# * A layer's score includes how its heads combine: it can be symmetric when no single head is.
#
# **Try next:** run your `batched_scores` on `load_qk(toyattn.weights.pretrained.smollm2_gguf_path())` (9 query
# heads sharing 3 key heads) and compare with `toyattn.symmetry.scores.symmetry_score`. Then write the
# `nn.Linear`-layout version of `layer_score` for a fused QKV weight of shape `[3 * d_model, d_model]`.
