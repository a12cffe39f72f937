# %% [markdown]
# # Lesson 3 problem set: symmetry scores of attention heads
#
# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*
#
# **Learning goals: what you will be able to do afterwards.**
# 1. Measure how symmetric an attention head is, from the definition of its score.
# 2. Get the same number without ever building the $d \times d$ matrix, and see why that matters.
# 3. Build a head with a score of exactly 0, and say why a one-dimensional head cannot have one.
# 4. Score every head of a model in one batched computation, and run it on a real encoder.
# 5. Score a whole layer, and explain why a layer can look symmetric when none of its heads is.
#
# Read `notebooks/03_symmetry_scores` first (sections 1-4). Shapes follow the course's convention:
# `W_q`, `W_k` are `[d_model, d_head]`, a head's query is `q = x @ W_q` (row vectors), and the head scores
# query $x$ against key $y$ with $x M y^\top$, $M = W_q W_k^\top$. The **symmetry score** $r$ is the share of
# $\|M\|_F^2$ that lies in the symmetric part of $M$ (this problem set uses $r \in [0, 1]$, not the
# signed $s = 2r - 1$ of published tables).
#
# Each exercise says what to compute; how is up to you. A **Hint** cell follows each one: skip it
# unless you are stuck. Every check tries fresh inputs, including heads built to score exactly 1 and
# exactly 0, and tells you which mistake a wrong answer looks like. Checks also refuse answers that call
# `toyattn.symmetry`, which holds the course's own solutions.

# %%
import time

import torch

from toyattn import checks, seed_everything

g = seed_everything(0)

# %% [markdown]
# ## Exercise 1: the score by its definition
#
# Write `score_by_definition(W_q, W_k)`: the share of $\|M\|_F^2$ (the sum of squared entries of
# $M = W_q W_k^\top$) that lies in the symmetric part of $M$. It must be 1 for a symmetric $M$ and 0
# for a skew-symmetric one ($M^\top = -M$). Return a number or a 0-d tensor.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Every square matrix splits into a symmetric and a skew-symmetric part, $M = S + K$ with
# $S^\top = S$ and $K^\top = -K$. Write $M^\top$ in terms of $S$ and $K$ and solve for $S$. The two
# parts are orthogonal ($\operatorname{tr}(S^\top K) = 0$), so $\|M\|_F^2 = \|S\|_F^2 + \|K\|_F^2$.
# </details>

# %%
def score_by_definition(W_q: torch.Tensor, W_k: torch.Tensor) -> torch.Tensor:
    """W_q, W_k: [d_model, d_head] -> symmetry score r in [0, 1] (0-d tensor)."""
    ### BEGIN SOLUTION
    M = W_q @ W_k.T
    symmetric_part = (M + M.T) / 2
    return symmetric_part.pow(2).sum() / M.pow(2).sum()
    ### END SOLUTION


checks.check_symmetry_score_definition(score_by_definition)

# %% [markdown]
# **Question.** A head whose keys are its queries ($W_k = W_q$) scores 1. Predict the score of a head
# with $W_k = -W_q$: it scores every pair of tokens with the opposite sign. Write your guess down, then
# run the next cell.

# %%
W_q = torch.randn(8, 3, generator=g)
print("W_k = W_q :", float(score_by_definition(W_q, W_q)))
print("W_k = -W_q:", float(score_by_definition(W_q, -W_q)))

# %% [markdown]
# Both print 1: $-M$ is symmetric exactly when $M$ is. The score measures *reciprocity* (does $x$
# score $y$ as $y$ scores $x$?), not whether the scores are positive.

# %% [markdown]
# ## Exercise 2: the score without the d x d matrix
#
# Exercise 1 builds the $d \times d$ matrix $M$: $2 d^2 d_h$ flops and $d^2$ numbers in memory, per head.
# Yet $M$ has rank at most $d_h$, and everything about it is in two thin $[d, d_h]$ matrices.
#
# Write `score_by_trace(W_q, W_k)`, the same number as Exercise 1, without creating anything as large as
# `d_model x d_model`, in torch or in NumPy: the check watches the sizes of the tensors your code makes
# and the memory NumPy allocates, on a head with `d_model` over 1000. Aim for a cost that grows like
# $d\,d_h^2$, not $d^2 d_h$. Work it out on paper first: write both $\|M\|_F^2$ and the part that decides
# the symmetric share as traces of products of $W_q$, $W_k$ and their transposes, and find an order of the
# factors in which every matrix you form is small.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# First write $r$ as $\tfrac12\left(1 + \operatorname{tr}(MM)/\|M\|_F^2\right)$ (expand $\|M + M^\top\|_F^2$).
# Both $\|M\|_F^2 = \operatorname{tr}(M^\top M)$ and $\operatorname{tr}(MM)$ are traces of a product of four thin
# matrices, and a trace does not change when its factors are rotated cyclically,
# $\operatorname{tr}(XYZ) = \operatorname{tr}(YZX)$: rotate until the products you form are $d_h \times d_h$.
# Finally, $\operatorname{tr}(XY) = \sum_{ij} X_{ij} Y_{ji}$: you never need the product $XY$ itself, only the
# sum of the entries of $X \odot Y^\top$ (`torch.einsum` can say this in one string).
# </details>

# %%
def score_by_trace(W_q: torch.Tensor, W_k: torch.Tensor) -> torch.Tensor:
    """Same result as score_by_definition, in O(d_model * d_head^2)."""
    ### BEGIN SOLUTION
    A = W_q.T @ W_q
    B = W_k.T @ W_k
    C = W_k.T @ W_q
    return 0.5 * (1 + torch.einsum("ij,ji->", C, C) / torch.einsum("ij,ji->", A, B))
    ### END SOLUTION


checks.check_symmetry_score_trace(score_by_trace)

# %% [markdown]
# **Question.** Random Gaussian heads score about 0.5. Does their spread around 0.5 shrink as
# `d_model` grows, as `d_head` grows, or both? Predict, then run the next cell: it scores 100 random
# heads per shape with your `score_by_trace` (cheap even at `d_model = 2048`, where one $M$ would have
# four million entries).

# %%
for d_model in (16, 256, 2048):
    for d_head in (2, 16):
        r = torch.tensor([float(score_by_trace(*torch.randn(2, d_model, d_head, generator=g))) for _ in range(100)])
        print(f"d_model {d_model:5d}, d_head {d_head:3d}: mean r {float(r.mean()):.4f}, std {float(r.std()):.4f}")

# %% [markdown]
# Read the standard deviations down each `d_head` column and across each `d_model` row: the spread
# falls as `d_model` grows, and changes little with `d_head` (about $0.7 / d_\text{model}$, see
# `toyattn.symmetry.random_head`). So "this head scores 0.6" means little in a narrow model and a lot in
# a wide one.

# %% [markdown]
# ## Exercise 3: a head that scores exactly 0
#
# Write `skew_key(W_q, generator)`: a `W_k` of the same shape as `W_q` whose head matrix
# $M = W_q W_k^\top$ is skew-symmetric ($M^\top = -M$) and not zero. If you need random numbers, draw
# them with `torch.randn(..., generator=generator, dtype=W_q.dtype)`.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Look for `W_k = W_q @ S.T` with a small `[d_head, d_head]` matrix `S`: then $M = W_q S W_q^\top$.
# What does $M^\top = -M$ ask of $S$? And how do you turn any square matrix $X$ into such an $S$?
# </details>

# %%
def skew_key(W_q: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """W_q: [d_model, d_head] -> W_k: [d_model, d_head] with W_q @ W_k.T skew-symmetric."""
    ### BEGIN SOLUTION
    d_head = W_q.shape[1]
    X = torch.randn(d_head, d_head, generator=generator, dtype=W_q.dtype)
    S = X - X.T
    return W_q @ S.T
    ### END SOLUTION


checks.check_skew_symmetric_key(skew_key)

# %% [markdown]
# **Question.** What do your two score functions say about such a head? And what does `skew_key`
# return for a head with $d_h = 1$ (what is a $1 \times 1$ skew-symmetric matrix)? Predict both, then
# run the next cell.

# %%
W_q = torch.randn(10, 4, generator=g, dtype=torch.float64)
W_k = skew_key(W_q, g)
print("definition:", float(score_by_definition(W_q, W_k)), " trace form:", float(score_by_trace(W_q, W_k)))
print("d_head = 1, W_k =", skew_key(torch.randn(5, 1, generator=g, dtype=torch.float64), g).flatten().tolist())

# %% [markdown]
# Both scores are 0 up to float64 rounding. With $d_h = 1$ the only skew-symmetric $1 \times 1$ matrix
# is 0, so `W_k` comes back all zeros and the score would be $0/0$: a rank-one head cannot be
# skew-symmetric.

# %% [markdown]
# ## Exercise 4: every head of a model at once
#
# A model's weights stack into `W_Q`, `W_K` of shape `[layers, heads, d_model, d_head]`. Write
# `batched_scores(W_Q, W_K)` returning the scores `[layers, heads]` in one batched computation: no
# `d_model x d_model` matrix and no Python loop over the heads (the check watches both, on a model with
# 64 heads and one with `d_model` over 1000).

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Exercise 2 per head, with the head axes carried along: `torch.matmul` (and `@`) broadcast over all
# leading axes, `.transpose(-1, -2)` swaps the last two, and `torch.einsum` lets you name every axis.
# A trace of a product is a sum over the last two axes.
# </details>

# %%
def batched_scores(W_Q: torch.Tensor, W_K: torch.Tensor) -> torch.Tensor:
    """W_Q, W_K: [layers, heads, d_model, d_head] -> scores [layers, heads]."""
    ### BEGIN SOLUTION
    A = torch.einsum("lhdi,lhdj->lhij", W_Q, W_Q)
    B = torch.einsum("lhdi,lhdj->lhij", W_K, W_K)
    C = torch.einsum("lhdi,lhdj->lhij", W_K, W_Q)
    return 0.5 * (1 + torch.einsum("lhij,lhji->lh", C, C) / torch.einsum("lhij,lhji->lh", A, B))
    ### END SOLUTION


checks.check_batched_symmetry_scores(batched_scores)

# %% [markdown]
# ### Your function on a real encoder
#
# `toyattn.checkpoints.load_qk` reads every layer's query and key maps from a checkpoint, in the same
# `[layers, heads, d_model, d_head]` layout. If the course's packaged MiniLM encoder is installed
# (`make pretrained`), your `batched_scores` runs on it and is compared with the course's
# `toyattn.symmetry.symmetry_score`; otherwise a random model stands in.
#
# **Question.** Will MiniLM's mean head score be above, at or below 0.5 (the random level)? Predict,
# then run the next cell.

# %%
from toyattn.checkpoints import load_qk
from toyattn.pretrained import PretrainedNotInstalled, minilm_path
from toyattn.symmetry import symmetry_score

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
# Compare the printed mean with 0.5. For the real encoder the lecture's section 5 puts this number next
# to published ones; a random stand-in sits at 0.5 up to its spread from Exercise 2's question. The
# difference from `toyattn` is rounding: both compute the same traces.

# %% [markdown]
# ## Exercise 5: one score for a whole layer
#
# Published tables (Saponati et al. 2025) give one number per *layer*: the score of
# $M_\text{layer} = \sum_h W_q^{(h)} W_k^{(h)\top}$, the bilinear form of all the layer's heads
# together (the layer's output is a sum over heads). Write `layer_score(W_Q, W_K)` for one layer,
# `W_Q`, `W_K` of shape `[heads, d_model, d_head]`, returning $r$ of $M_\text{layer}$ (one number).
# The layers here are small: choose any method.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Either add up the heads' $d \times d$ matrices, or put the heads side by side: if `Q` is `W_Q` with its
# heads concatenated along `d_head` (shape `[d_model, heads * d_head]`), what is `Q @ K.T`? Is the layer's
# score the mean of its heads' scores?
# </details>

# %%
def layer_score(W_Q: torch.Tensor, W_K: torch.Tensor) -> torch.Tensor:
    """W_Q, W_K: [heads, d_model, d_head] -> r of M_layer = sum_h W_Q[h] @ W_K[h].T (0-d tensor)."""
    ### BEGIN SOLUTION
    Q = W_Q.transpose(0, 1).flatten(1)  # [d_model, heads * d_head]
    K = W_K.transpose(0, 1).flatten(1)
    return score_by_trace(Q, K)
    ### END SOLUTION


checks.check_layer_symmetry_score(layer_score)

# %% [markdown]
# **Question.** Take two random maps $W_a$, $W_b$ and a layer of two heads: head 1 has
# $(W_q, W_k) = (W_a, W_b)$, head 2 has $(W_b, W_a)$, so $M_2 = M_1^\top$. Predict each head's score
# (random heads, Exercise 2's question) and the layer's score. Then run the next cell.

# %%
W_a, W_b = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
pair_Q, pair_K = torch.stack([W_a, W_b]), torch.stack([W_b, W_a])
print("head scores:", [round(float(r), 3) for r in batched_scores(pair_Q[None], pair_K[None])[0]])
print("layer score:", round(float(layer_score(pair_Q, pair_K)), 3))

# %% [markdown]
# Each head is an ordinary random head, but the layer scores 1: $M_\text{layer} = M_1 + M_1^\top$ is
# symmetric by construction. In the signed form $s = \operatorname{tr}(MM)/\|M\|_F^2$ of the layer, both parts
# have cross terms between heads: the denominator $\|M_\text{layer}\|_F^2$ has $2\langle M_h, M_{h'}\rangle$ and the
# numerator $\operatorname{tr}(M_\text{layer} M_\text{layer})$ has $2\operatorname{tr}(M_h M_{h'})$ for every pair of
# heads, so the layer score is not an average of head scores. (Here the numerator's cross term
# $2\operatorname{tr}(M_1 M_1^\top) = 2\|M_1\|_F^2$ is what lifts the layer to 1.) Only when all cross terms
# vanish (for instance when different heads' maps read mutually orthogonal directions) is it the
# $\|M_h\|_F^2$-weighted mean of the head scores. Say which granularity a number is before you compare
# it with a published one.
#
# ## What you practised, and what to try next
#
# * The definition is obvious but costs $O(d^2 d_h)$; the trace form gives the same number in
#   $O(d\,d_h^2)$ and batches over any leading axes.
# * Skew-symmetric heads score 0, symmetric ones 1, random ones about 0.5, with a spread set by
#   `d_model`.
# * A layer's score includes how its heads combine: it can be symmetric when no single head is.
#
# **Try next:** extend `batched_scores` to grouped-query attention, where `W_K` has fewer heads than
# `W_Q` (query head `h` uses key head `h // (n_heads // n_kv_heads)`), without copying `W_K`; compare
# with `toyattn.symmetry.symmetry_score` on `load_qk(toyattn.pretrained.smollm2_gguf_path())`. Then
# give `layer_score` a trace form that never builds the `d_model x d_model` matrix.
