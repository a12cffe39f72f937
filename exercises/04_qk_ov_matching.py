# %% [markdown]
# # Lesson 4 problems: reading an induction circuit from its weights
#
# *This is the exercise version of the problem set: your code goes where a cell says YOUR CODE HERE; the solved version is in `solutions/`.*
#
# **Learning goals.** After these problems you can
# 1. pull layer 2's QK circuit and layer 1's OV circuit out of a trained model;
# 2. score how well two subspaces match with principal angles, and why you need a random baseline;
# 3. summarise a token-level circuit with a diagonal z-score and a token mismatch ratio;
# 4. run all of it on checkpoints of a model you train here, and compare the scores with the
#    out-of-distribution error along training.
#
# Read `notebooks/04_qk_ov_matching` first: it explains the copying task, the two heads and the
# notation. Conventions (row vectors, as in the course's `Transformer` and in TransformerLens): `W_Q, W_K,
# W_V` are `[d_model, d_head]`, `W_O` is `[d_head, d_model]`, and the OV circuit `W_V @ W_O` is
# TransformerLens's `W_OV`. The blocks are pre-LayerNorm: attention reads the
# layer-normed residual $\hat x = \mathrm{LN}(x)$, not the residual $x$. So the score of a query on a key
# is $\hat x_q W_{qk} \hat x_k^\top$ plus bias terms (lesson 4, section 5, checks this on a trained model;
# on the raw $x$ the same form gives a different number), and a source writes $\hat x W_{ov}$ plus a bias.
#
# Each exercise says what to compute; how is up to you. A **Hint** cell follows some of them: skip it
# unless you are stuck. Every check draws fresh inputs and says which mistake a wrong answer looks like
# (a transpose, the wrong singular vectors, the wrong standard deviation ...). Checks refuse answers that
# call `toyattn.circuits.matching`, which holds the course's own solutions; use it afterwards to compare.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from toyattn import checks, seed_everything, to_numpy
from toyattn.circuits import matching
from toyattn.circuits.copy_task import CopyTaskConfig, TrainConfig, train_copy_model
from toyattn.models.transformer import Transformer, TransformerConfig

seed_everything(0)

# %% [markdown]
# A model to work on: the lesson's default run (fresh patterns, 600 steps, a few seconds on a CPU),
# with a checkpoint every 50 steps.

# %%
run = train_copy_model(CopyTaskConfig(), train=TrainConfig(checkpoint_every=50), device="cpu")
model = run.model
print(f"{len(run)} checkpoints; final OOD error {run.history['ood_error'][-1]:.3f}")

# %% [markdown]
# ## Exercise 1: the QK circuit of layer 2 and the OV circuit of layer 1
#
# Each block's attention stores per-head weights: `model.blocks[l].attn.W_Q[h]` is head `h`'s
# `[d_model, d_head]` query map (and likewise `W_K`, `W_V`; `W_O[h]` is `[d_head, d_model]`). Return, for
# head 0,
#
# * `W_qk`: layer 2's (`blocks[1]`) QK circuit at query–key distance 0 (where the rotary matrix is
#   the identity), **with the attention's $1/\sqrt{d_{head}}$ scale**, oriented so that the score of a
#   query on a key, biases aside, is `x_q @ W_qk @ x_k` for their layer-normed residuals $\hat x_q$, $\hat x_k$
#   (written `x_q`, `x_k` in code);
# * `W_ov`: layer 1's (`blocks[0]`) OV circuit, oriented so that a source with layer-normed residual
#   $\hat x$ writes `x @ W_ov` (bias aside).
#
# Both are `[d_model, d_model]`. Return them as tensors or arrays (detached from the graph). The check
# uses a model with one head and one with two heads, biases switched on, and tells you when an answer looks transposed,
# unscaled or taken from the wrong layer or head.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Follow one (layer-normed) vector through the head, biases aside: $q = \hat x_q W_Q$, $k = \hat x_k W_K$,
# score $q \cdot k / \sqrt{d_{head}}$. Write that dot product as $\hat x_q (\dots) \hat x_k^\top$. For OV:
# $v = \hat x W_V$, then the head writes $v W_O$.
# </details>

# %%
def qk_ov_from_model(model) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (W_qk of layer 2 [d_model, d_model], W_ov of layer 1 [d_model, d_model]), head 0."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_qk_ov_from_model(qk_ov_from_model)

# %% [markdown]
# **Question.** Take an (untrained) model like the lesson's but with heads of `d_head = 8` in a residual
# stream of `d_model = 32`. What are the ranks of its `W_qk` and `W_ov`? Predict, then run the next cell.

# %%
# In float64: a product computed in float32 carries rounding errors of about 1e-7 of its largest singular
# value, which float64's rank tolerance would count as extra (tiny) directions.
narrow = Transformer(TransformerConfig(vocab_size=24, max_len=16, d_model=32, n_heads=1, d_head=8)).double()
for label, W in zip(("W_qk", "W_ov"), qk_ov_from_model(narrow), strict=True):
    sv = np.linalg.svd(to_numpy(W), compute_uv=False)
    print(f"{label}: shape {tuple(W.shape)}, rank {np.linalg.matrix_rank(to_numpy(W))} "
          f"(singular value 9 is {sv[8] / sv[0]:.0e} of the largest)")

# %% [markdown]
# Both are `32 x 32` of rank 8: each is a product through the head's `d_head`-dimensional space, so a
# head's QK circuit compares at most `d_head` directions on each side, and its OV circuit reads and
# writes at most `d_head` directions. In the lesson's model `d_head = d_model`, so
# nothing forces a low rank there; the next exercises therefore compare only each circuit's top `rank`
# directions.

# %% [markdown]
# ## Exercise 2: the subspace matching score
#
# Layer 2's head compares each query with each key through $W_{qk}$; layer 1's head writes into the
# residual stream through $W_{ov}$. Write `matching_score(W_qk, W_ov, rank)`: how well do the
# top-`rank` directions that layer 2 **reads on the key side** match the top-`rank` directions that layer
# 1 **writes**? Return the largest cosine of the principal angles between the two `rank`-dimensional
# subspaces (1 if they share a direction, 0 if they are orthogonal). Work out from the conventions
# above which singular vectors span each subspace. One of the check's cases is a trap for the
# wrong choice.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# With $W = U \Sigma V^\top$, a row vector $x$ maps to $x W = (x U) \Sigma V^\top$: it always lands in the
# span of the rows of $V^\top$. Write the score $x_q W_{qk} x_k^\top$ with $W_{qk} = U \Sigma V^\top$: which
# factor does the key $x_k$ meet?
# For two matrices `A`, `B` `[d, r]` with orthonormal columns, the cosines of the principal angles
# between their spans are the singular values of `A.T @ B`. Note that `np.linalg.svd` returns $V^\top$.
# </details>

# %%
def matching_score(W_qk: np.ndarray, W_ov: np.ndarray, rank: int) -> float:
    """Largest cosine between the top-`rank` key-side directions of W_qk and output directions of W_ov."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_matching_score(matching_score)

# %% [markdown]
# **Question.** What does your function give for two matrices that write into the same 3 directions,
# and for two that use 3 mutually orthogonal directions each (in $\mathbb{R}^{10}$)? Predict both
# numbers, then run the next cell.

# %%
basis = np.linalg.qr(np.random.default_rng(1).standard_normal((10, 10)))[0]
coeffs = np.random.default_rng(2).standard_normal((10, 3))
same_a, same_b = coeffs @ basis[:, :3].T, coeffs[::-1] @ basis[:, :3].T
other = coeffs @ basis[:, 3:6].T
print("same 3 directions      :", round(matching_score(same_a, same_b, 3), 6))
print("orthogonal 3 directions:", round(matching_score(same_a, other, 3), 6))

# %% [markdown]
# 1 and 0 (up to rounding): the score only sees the subspaces, not the coefficients inside them. Real
# circuits sit in between, which is why the next exercise asks what "in between" means by chance.

# %% [markdown]
# ## Exercise 3: a random baseline
#
# Two *unrelated* subspaces overlap by chance, more so the larger `rank` is compared with `d`. Write
# `random_matching_baseline(d, rank, n_runs)`: estimate, by simulation over `n_runs` pairs of independent
# `d x d` Gaussian matrices, the mean of the score of Exercise 2 (largest cosine between their top-`rank`
# singular subspaces). Use your own random generator (e.g. `np.random.default_rng(0)`). The check
# compares your mean with a long reference simulation, within a few standard errors.

# %%
def random_matching_baseline(d: int, rank: int, n_runs: int) -> float:
    """Mean largest cosine between top-`rank` singular subspaces of two random d x d matrices."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_random_matching_baseline(random_matching_baseline)

# %% [markdown]
# **Question.** In $\mathbb{R}^{8}$, what must the baseline be for `rank = 8`? And for `rank = 5`?
# (Think about two subspaces whose dimensions add up to more than 8.) Predict, then run the next cell.

# %%
for r in (1, 2, 4, 5, 8):
    print(f"d = 8, rank {r}: baseline {random_matching_baseline(8, r, 50):.3f}")

# %% [markdown]
# For `rank = 8` both subspaces are all of $\mathbb{R}^8$: the score is 1. For `rank = 5`, two
# 5-dimensional subspaces of $\mathbb{R}^8$ must share at least $5 + 5 - 8 = 2$ dimensions, so the
# largest cosine is 1 as well, by chance alone. A matching score only means something next to the
# baseline for the same `d` and `rank`.

# %% [markdown]
# ## Exercise 4: the diagonal z-score
#
# For the token-level matrix $E\, W_{qk} W_{ov}^\top E^\top$ (`[vocab, vocab]`), entry $[a, b]$ is
# roughly how much a query on token $a$ likes a key whose previous token was $b$ (roughly: it skips the
# layer norms, the biases and every other path, as lesson 4 section 5 says); an induction head has a
# large diagonal. Write `diagonal_zscore(M)`: a **scale-free** measure of how much the diagonal stands
# out, a z-score: how far the diagonal's mean sits above the typical entry of `M`, in units of the
# entries' spread. It must not change when a constant is added to `M` or when `M` is multiplied by a
# positive number. You decide what "typical" and "spread" are: which entries, which mean, which
# standard deviation. The check names the common wrong choices.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# The diagonal is compared with *all* $n^2$ entries of `M`: are they a sample from something larger, or
# the whole population you describe? Check what your library's standard deviation divides by
# (NumPy's `np.std` and `torch.std` differ in their defaults).
# </details>

# %%
def diagonal_zscore(M: np.ndarray) -> float:
    """How many standard deviations the diagonal's mean sits above the mean entry."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_diagonal_zscore(diagonal_zscore)

# %% [markdown]
# **Question.** What happens to the z-score when you add 10 to every entry of `M`? When you multiply
# `M` by 3? By -1? Predict all three, then run the next cell.

# %%
M_example = np.random.default_rng(3).standard_normal((6, 6)) + 2 * np.eye(6)
for label, M_changed in (("M", M_example), ("M + 10", M_example + 10), ("3 M", 3 * M_example), ("-M", -M_example)):
    print(f"{label:>6}: z-score {diagonal_zscore(M_changed):+.3f}")

# %% [markdown]
# Adding a constant or scaling by a positive number leaves it unchanged; negating flips its sign. So
# the z-score compares token-level matrices of different models and checkpoints fairly, whatever their
# overall scale.

# %% [markdown]
# ## Exercise 5: the token mismatch ratio
#
# In the same token-level matrix, the induction head works for query token $a$ when $a$'s favourite key
# is the one whose previous token was $a$. Write `token_mismatch_ratio(M)`: a number between 0 and 1 that
# is 0 when this works for every query token and grows with the number of query tokens for which it
# fails. Decide how to read a query token's "favourite key" off `M`, and whether a query token is a row
# or a column of `M`.

# %%
def token_mismatch_ratio(M: np.ndarray) -> float:
    """Share of query tokens whose favourite key is not preceded by the same token."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_token_mismatch_ratio(token_mismatch_ratio)

# %% [markdown]
# **Question.** A head that prefers a *different* token: each query token's largest entry sits in
# another token's column (a permuted diagonal, here every row's largest entry one column to the right of
# the diagonal, wrapping around). What are its mismatch ratio and its diagonal z-score? Predict, then run
# the next cell.

# %%
permuted = np.roll(np.eye(8), 1, axis=1) + 0.01 * np.random.default_rng(4).standard_normal((8, 8))
print(f"permuted diagonal: mismatch {token_mismatch_ratio(permuted):.2f}, z-score {diagonal_zscore(permuted):+.2f}")

# %% [markdown]
# The mismatch ratio is 1 (no row prefers its own token) and the z-score is below 0 (the diagonal is
# smaller than the average entry): both metrics tell this head apart from an induction head, and the
# mismatch ratio does so without a threshold.

# %% [markdown]
# ## Putting it together: your metrics along training
#
# **Question.** At which checkpoints will your matching score leave the baseline, and what will the
# other two metrics do there? Predict, then run the next cell.

# %%
RANK = 4
base = random_matching_baseline(model.cfg.d_model, RANK, 100)
scores, zscores, mismatch = [], [], []
for i in range(len(run)):
    m = run.load(i)
    W_qk, W_ov = (to_numpy(w).astype(np.float64) for w in qk_ov_from_model(m))
    E = to_numpy(m.embed.W_E).astype(np.float64)
    tokens = E @ W_qk @ W_ov.T @ E.T
    scores.append(matching_score(W_qk, W_ov, RANK))
    zscores.append(diagonal_zscore(tokens))
    mismatch.append(token_mismatch_ratio(tokens))

fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
axes[0].plot(run.steps, run.history["ood_error"], "-o", color="C1", label="OOD error")
axes[0].plot(run.steps, mismatch, "-o", color="C2", label="token mismatch ratio")
axes[0].set(title="OOD error and mismatch", xlabel="step", ylabel="share", ylim=(0, 1.02))
axes[0].legend()
axes[1].plot(run.steps, scores, "-o", label="your matching score")
axes[1].axhline(base, color="gray", ls="--", label="your random baseline")
axes[1].set(title=f"QK-OV matching, rank {RANK}", xlabel="step", ylabel="largest cosine", ylim=(0, 1.05))
axes[1].legend()
axes[2].plot(run.steps, zscores, "-o")
axes[2].set(title="Diagonal z-score", xlabel="step", ylabel="z-score")
plt.tight_layout()
plt.show()
print(f"matching: {scores[0]:.3f} at step 0 -> {scores[-1]:.3f} at step {run.steps[-1]} (baseline {base:.3f})")
above = [step for step, score in zip(run.steps, scores, strict=True) if score > base]
fallen = [step for step, err in zip(run.steps, run.history["ood_error"], strict=True) if err < 0.5]
print(f"this run: the match is above the baseline's mean at {len(above)} of {len(run)} checkpoints, "
      f"first at step {above[0] if above else '-'}; the OOD error is below 0.5 first at step "
      f"{fallen[0] if fallen else '-'}")
print(f"library check: {matching.qk_ov_matching(*qk_ov_from_model(model), RANK):.3f}")

# %% [markdown]
# Read the three panels against each other: find the checkpoints where the OOD error falls, and look at
# what the matching score (against its baseline), the z-score and the mismatch ratio do there. The
# printed lines give the matching score at the first and last checkpoints next to the baseline, and
# the first checkpoints where the match is above the baseline's mean and where the OOD error is below
# 0.5. Random pairs of subspaces often land above that mean (it is a mean, not a bound), so one
# checkpoint above it says little: the largest cosine at distance 0 is a noisy proxy. Lesson 4,
# section 6, compares three seeds and prints on how many of them the match rose before, with or after
# the OOD error fell (and on how many it rose without the rule); the course's recorded runs add more
# seeds and longer runs. Count there before you generalise from this one run.
#
# ## What to try next
#
# * Use the RMS of all cosines instead of the largest: is the gap to the baseline larger or smaller?
# * Put the rotary matrix back: `matching.rotary_matrix(d_head, distance)` between $W_Q$ and $W_K^\top$, and
#   sweep the distance.
# * Train with `pool_size=20` and run the same cell: do the scores leave the baseline? (Compare the
#   diagonal z-score and the mismatch ratio, not only the matching score.)
