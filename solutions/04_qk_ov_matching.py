# %% [markdown]
# # Lesson 4 problems: reading an induction circuit from its weights
#
# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*
#
# **Learning goals.** After these problems you can
# 1. pull layer 2's QK circuit and layer 1's OV circuit out of a trained model;
# 2. score how well two subspaces match with principal angles, and why you need a random baseline;
# 3. summarise a token-level circuit with a diagonal z-score and a token mismatch ratio;
# 4. run all of it on checkpoints of a model you train here, and see the scores move with the
#    out-of-distribution error.
#
# Read `notebooks/04_qk_ov_matching` first: it explains the copying task, the two heads and the
# notation. Conventions (row vectors, as in the course's `Transformer`): `W_Q, W_K, W_V` are
# `[d_model, d_head]`, `W_O` is `[d_head, d_model]`; the score of query residual $x_q$ on key residual
# $x_k$ is $x_q W_{qk} x_k^\top$ and a head writes $x W_{ov}$ for a source residual $x$.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from toyattn import checks, seed_everything, to_numpy
from toyattn import circuits as C
from toyattn.induction import CopyTaskConfig, TrainConfig, train_copy_model

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
# `[d_model, d_head]` query map. Return, for head 0,
#
# * `W_qk` $= W_Q W_K^\top / \sqrt{d_{head}}$ of **layer 2** (`blocks[1]`), the score matrix at
#   query–key distance 0 (where the rotary matrix is the identity);
# * `W_ov` $= W_V W_O$ of **layer 1** (`blocks[0]`).
#
# Both are `[d_model, d_model]`. Return them as tensors or arrays (detach them from the graph).

# %%
def qk_ov_from_model(model) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (W_qk of layer 2 [d_model, d_model], W_ov of layer 1 [d_model, d_model]), head 0."""
    ### BEGIN SOLUTION
    layer1, layer2 = model.blocks[0].attn, model.blocks[1].attn
    d_head = layer2.W_Q.shape[-1]
    W_qk = layer2.W_Q[0] @ layer2.W_K[0].T / math.sqrt(d_head)
    W_ov = layer1.W_V[0] @ layer1.W_O[0]
    return W_qk.detach(), W_ov.detach()
    ### END SOLUTION


checks.check_qk_ov_from_model(qk_ov_from_model)

# %% [markdown]
# ## Exercise 2: the subspace matching score
#
# Layer 2's keys listen to the top right singular vectors of `W_qk`; layer 1 writes into the top
# right singular vectors of `W_ov` (row-vector convention: `x @ W_ov` lies in the row space of
# `W_ov`). With `V_qk = Vt_qk[:rank].T` and `V_ov = Vt_ov[:rank].T` (`[d_model, rank]`, orthonormal
# columns), the singular values of `V_qk.T @ V_ov` are the cosines of the principal angles between
# the two subspaces. Return the **largest**.
#
# **Predict first:** what is the score for two identical subspaces? For orthogonal ones? (1 and 0.)

# %%
def matching_score(W_qk: np.ndarray, W_ov: np.ndarray, rank: int) -> float:
    """Largest cosine between the top-`rank` right singular subspaces of W_qk and W_ov."""
    ### BEGIN SOLUTION
    V_qk = np.linalg.svd(W_qk)[2][:rank].T
    V_ov = np.linalg.svd(W_ov)[2][:rank].T
    return float(np.linalg.svd(V_qk.T @ V_ov, compute_uv=False)[0])
    ### END SOLUTION


checks.check_matching_score(matching_score)

# %% [markdown]
# ## Exercise 3: a random baseline
#
# Two *unrelated* subspaces overlap by chance, more so the larger `rank` is compared with `d`. Draw
# `n_runs` pairs of independent `d x d` Gaussian matrices (`np.random.default_rng(0)` for the
# random numbers), take each one's top-`rank` left singular vectors, score each pair like in
# Exercise 2 (largest cosine), and return the mean.
#
# **Predict first:** for `rank = d` what must the score be? (1: both subspaces are all of
# $\mathbb{R}^d$.)

# %%
def random_matching_baseline(d: int, rank: int, n_runs: int) -> float:
    """Mean largest cosine between top-`rank` singular subspaces of two random d x d matrices."""
    ### BEGIN SOLUTION
    rng = np.random.default_rng(0)
    scores = []
    for _ in range(n_runs):
        U1 = np.linalg.svd(rng.standard_normal((d, d)))[0][:, :rank]
        U2 = np.linalg.svd(rng.standard_normal((d, d)))[0][:, :rank]
        scores.append(np.linalg.svd(U1.T @ U2, compute_uv=False)[0])
    return float(np.mean(scores))
    ### END SOLUTION


checks.check_random_matching_baseline(random_matching_baseline)

# %% [markdown]
# ## Exercise 4: the diagonal z-score
#
# For the token-level matrix $E\, W_{qk} W_{ov}^\top E^\top$ (`[vocab, vocab]`), an induction head has
# a large diagonal. Return `(mean of the diagonal - mean of all entries) / std of all entries`.

# %%
def diagonal_zscore(M: np.ndarray) -> float:
    """How many standard deviations the diagonal's mean sits above the mean entry."""
    ### BEGIN SOLUTION
    M = np.asarray(M, dtype=float)
    return float((np.diag(M).mean() - M.mean()) / M.std())
    ### END SOLUTION


checks.check_diagonal_zscore(diagonal_zscore)

# %% [markdown]
# ## Exercise 5: the token mismatch ratio
#
# Return the share of rows of `M` whose largest entry is **not** on the diagonal (0 when every
# query token prefers keys preceded by the same token).

# %%
def token_mismatch_ratio(M: np.ndarray) -> float:
    """Share of rows i with argmax_j M[i, j] != i."""
    ### BEGIN SOLUTION
    M = np.asarray(M)
    return float(np.mean(M.argmax(axis=1) != np.arange(M.shape[0])))
    ### END SOLUTION


checks.check_token_mismatch_ratio(token_mismatch_ratio)

# %% [markdown]
# ## Putting it together: your metrics along training
#
# **Predict first:** at which checkpoints will your matching score leave the baseline?

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
print(f"library check: {C.qk_ov_matching(*qk_ov_from_model(model), RANK):.3f}")

# %% [markdown]
# Your three curves should move together: the matching score leaves the baseline, the z-score
# climbs and the mismatch ratio drops in the same checkpoints where the OOD error falls.
#
# ## What to try next
#
# * Use the RMS of all cosines instead of the largest: is the gap to the baseline larger or smaller?
# * Put the rotary matrix back: `C.rotary_matrix(d_head, distance)` between $W_Q$ and $W_K^\top$, and
#   sweep the distance.
# * Train with `pool_size=20` and run the same cell: the scores should stay at the baseline.
