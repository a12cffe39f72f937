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
# # Lesson 4: induction heads and the QK–OV bridge
#
# Give a language model the text "... Harry Potter ... Harry" and it predicts "Potter". No rule of
# English says so: the model *looked back* for the earlier "Harry" and copied what came after it.
# The circuit that does this is built around an **induction head**, and in this lesson you watch
# it appear in the weights while a tiny model trains.
#
# **Learning goals.** After this lesson you can
# 1. explain how many attention layers induction needs, and what each of them does;
# 2. train a 2-layer attention-only transformer on a copying task and read its attention patterns;
# 3. define and compute the QK circuit $W_{qk}$ of layer 2, the OV circuit $W_{ov}$ of layer 1,
#    their token-level product, a diagonal z-score and a token mismatch ratio;
# 4. measure how well two subspaces match (principal angles) against a random baseline, and
#    compare, seed by seed, when the QK–OV match rises with when the out-of-distribution error falls;
# 5. compare what a small and a large pool of training patterns do to the ID and OOD errors and to
#    the circuit.
#
# The research behind it: Song, Xu & Zhong, *Out-of-distribution generalization via composition:
# a lens through induction heads in Transformers* (arXiv 2408.09503, code at
# github.com/JiajunSong629/ood-generalization-via-composition). They call the shared subspace that
# layer 1 writes and layer 2 reads a "common bridge". This notebook follows their toy experiment
# at laptop scale, with a smaller task and model; the differences are listed at the end of section 7 (the published
# facts this lesson uses are collected, with their sources, in [the course's references](../docs/references.md)).
#
# The exercises for this lesson are in `exercises/04_qk_ov_matching.ipynb`.

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import toyattn
from toyattn import get_device, seed_everything
from toyattn.circuits import matching
from toyattn.circuits.copy_task import (
    CopyTaskConfig,
    TrainConfig,
    default_model_config,
    make_test_sets,
    sample_copy_batch,
    train_copy_model,
    zipf_probs,
)
from toyattn.circuits.head_circuits import head_factors, ov_matrix, qk_matrix
from toyattn.circuits.sweeps import train_copy_models
from toyattn.heads.weights import HeadWeights
from toyattn.plotting import heatmap_grid, heatmap_plotly

seed_everything(0)
device = get_device()
print("computing on:", device)

# %% [markdown]
# ## Settings (scale these up on a GPU)
#
# The defaults train in a few seconds per run on a laptop CPU. On a GPU (JupyterHub, a cluster
# node) set `SCALE = "gpu"` for settings close to the paper's: vocabulary 64, sequences of 64,
# `d_model` 64, thousands of steps, and the paper's pool sizes 100 and 1000. Everything below
# reads these variables, so nothing else needs changing.

# %%
SCALE = "cpu"  # "cpu": seconds on a laptop; "gpu": closer to the paper, minutes on a GPU

if SCALE == "gpu":
    TASK = CopyTaskConfig(vocab_size=64, seq_len=64, pattern_len=(10, 19), ood_pattern_len=25, skip=4)
    # The paper's learning rate. At this size the error can take a few thousand steps to drop (when
    # depends on the seed and the machine); a larger lr, e.g. 3e-3, may bring the drop earlier: try it.
    TRAIN = TrainConfig(steps=6000, batch_size=128, lr=1e-3, checkpoint_every=200)
    D_MODEL = 64
    POOLS = [None, 100, 1000]
else:
    TASK = CopyTaskConfig()  # vocab 24, sequences of 32, patterns of 8-12 tokens, OOD patterns of 14
    TRAIN = TrainConfig()  # 600 steps, batch 64, AdamW lr 1e-2, a checkpoint every 25 steps
    D_MODEL = 32
    POOLS = [None, 20, 3000]  # fresh patterns every step, a pool of only 20, a pool of 3000

MODEL = default_model_config(TASK, d_model=D_MODEL)
print(TASK)
print(TRAIN)
print(MODEL)

# %% [markdown]
# ## 1. How many layers does induction need?
#
# To predict the token after the current token $A$ the model must find an earlier position whose
# **previous** token was $A$, and copy the token there.
#
# **Predict first:** a one-layer attention-only model on the copying task below: can it get the
# second copy right? Write down your answer before reading the next cell; section 4 comes back to it.

# %% [markdown]
# One attention head cannot do both steps: a key at position $s$ only carries token $s$ (plus its
# position), not "the token before $s$".
#
# The two-layer solution:
#
# * **Layer 1, the previous-token head**: each position attends to the one before it and copies
#   that token's identity into its own residual stream, with its OV circuit $W_{ov}$. After
#   layer 1, position $s$ holds "I am $x_s$, and before me came $x_{s-1}$".
# * **Layer 2, the induction head**: the query at the current token $A$ looks, with its QK circuit
#   $W_{qk}$, for keys whose *copied previous token* is $A$. It finds the position right after the
#   earlier $A$ and copies that token to the output.
#
# This only works if layer 2's keys **read the subspace that layer 1's OV writes**. That is the
# QK–OV bridge this lesson measures.

# %% [markdown]
# ## 2. The copying task
#
# Each sequence is background noise with one pattern written into it **twice**. Background tokens
# follow a Zipf-like law ($P(i) \propto 1/(i+2.7)$: token 0 is common, the last token rare); a
# pattern is a run of distinct tokens. The next token is predictable only inside the second copy,
# so the error is counted there (skipping its first `skip` tokens, where the copy has just started).
#
# * **In-distribution (ID)** test: new sequences from the training distribution.
# * **Out-of-distribution (OOD)** test: uniform background tokens, longer patterns
#   (`ood_pattern_len`) and never-seen patterns: it asks whether what the model learned carries over
#   to patterns it has never seen.
#
# A "pool" of $N$ patterns means training sequences draw their pattern from a fixed list of $N$;
# `pool_size=None` means a fresh pattern every time.

# %%
batch = sample_copy_batch(TASK, 3, torch.Generator().manual_seed(0))
for i in range(3):
    toks = batch.tokens[i].tolist()
    f, s, n = int(batch.first[i]), int(batch.second[i]), int(batch.length[i])
    text = []
    for j, t in enumerate(toks):
        mark = "[" if j in (f, s) else ""
        end = "]" if j in (f + n - 1, s + n - 1) else ""
        text.append(f"{mark}{t}{end}")
    print(" ".join(text))

fig, ax = plt.subplots(figsize=(7, 2.8))
ax.bar(np.arange(TASK.vocab_size), zipf_probs(TASK.vocab_size, TASK.zipf_shift).numpy(), label="background (train, ID)")
ax.axhline(1 / TASK.vocab_size, color="C1", ls="--", label="uniform (OOD)")
ax.set(title="Token frequencies of the background", xlabel="token id", ylabel="probability")
ax.legend()
plt.show()

# %% [markdown]
# Each line is one sequence; the two bracketed runs are the pattern's two copies. The bar chart
# shows why OOD is harder than it looks: in training, small token ids dominate the background, while
# the OOD background is uniform, so the model meets rare tokens in unfamiliar places.

# %% [markdown]
# ## 3. Train with fresh patterns
#
# The model: 2 layers, 1 head each, rotary positions, layer norm, no MLP (the paper's shape, with
# `d_model` 32 instead of 64). Training keeps a checkpoint every `checkpoint_every` steps in
# memory, with its ID and OOD errors, so every weight metric below can be computed along training.
#
# **Predict first:** will the OOD error fall smoothly from the start, or sit still and then drop?

# %%
runs = {}
runs[None] = train_copy_model(TASK, pool_size=None, train=TRAIN, model_config=MODEL, device=device)
fresh = runs[None]
print(f"trained {fresh.steps[-1]} steps in {fresh.seconds:.1f} s; "
      f"final ID error {fresh.history['id_error'][-1]:.3f}, OOD error {fresh.history['ood_error'][-1]:.3f}")
generalised = fresh.history["ood_error"][-1] < 0.2
print("the rule was learned (OOD error below 0.2)" if generalised else
      "the OOD error has not fallen yet on this machine: raise TRAIN.steps (or try another TrainConfig(seed=...)) "
      "before reading the sections below")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].plot(fresh.steps[1:], fresh.history["train_loss"][1:])
axes[0].set(title="Training loss (all positions)", xlabel="step", ylabel="cross-entropy")
axes[1].plot(fresh.steps, fresh.history["id_error"], label="ID")
axes[1].plot(fresh.steps, fresh.history["ood_error"], label="OOD")
axes[1].set(title="Error on the second copy", xlabel="step", ylabel="share of wrong tokens", ylim=(0, 1))
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# What to look for: do the errors sit near 1 for a while (the model predicts frequent background
# tokens) and then drop steeply? Olsson et al. (*In-context learning and induction heads*, arXiv
# 2209.11895) saw induction heads form during such an **abrupt transition** in their models. When it
# comes here depends on the seed and the machine (some seeds need more steps than `TRAIN.steps`:
# in `tests/test_circuits_copy_task.py`'s 450 steps seed 0 learns and seed 1 does not, and section 6 trains two
# more seeds). The loss can only
# fall a little, because most positions are unpredictable noise and only the second copy can be
# learned. If the ID and OOD errors fall together, the model learned the rule, which works on
# patterns it never saw.

# %% [markdown]
# ## 4. Attention patterns
#
# Section 1 said where each head should look. **Predict first:** how sharply will this run's heads
# do it? On what share of positions will layer 1's largest weight be on the previous position, and
# what share of its attention will a second-copy query in layer 2 put on its target (the token after
# its twin)? Near 1, or spread out?

# %%
ood_batch = make_test_sets(TASK, 4, seed=99)["ood"]
model = fresh.model
with torch.no_grad():
    _, cache = model.run_with_cache(ood_batch.tokens.to(model.device))
k = 0
labels = [str(t) for t in ood_batch.tokens[k].tolist()]
fig = heatmap_grid(
    [cache["blocks.0.attn.hook_pattern"][k, 0], cache["blocks.1.attn.hook_pattern"][k, 0]],
    ["layer 1: previous-token head", "layer 2: induction head"],
    row_labels=labels, col_labels=labels, ncols=2, figsize=(14, 6.5),
    suptitle=f"Attention patterns on one OOD sequence (copies start at {int(ood_batch.first[k])} and {int(ood_batch.second[k])})",
    xlabel="key token", ylabel="query token",
)
plt.show()

# %%
# Layer 2's pattern again, interactive: hover a row of the second copy to read which key it attends to.
heatmap_plotly(cache["blocks.1.attn.hook_pattern"][k, 0], labels, labels, title="Layer 2 (hover a cell)",
               xlabel="key token", ylabel="query token", colorscale="Greens", zmin=0, zmax=1)

# %%
# The two patterns in numbers, over the 4 OOD sequences: layer 1's favourite key, and layer 2's weight on
# the token after the twin (query first + t -> key first + t + 1 becomes second + t -> first + t + 1).
prev_token_share = (cache["blocks.0.attn.hook_pattern"][:, 0].argmax(-1)[:, 1:].cpu()
                    == torch.arange(TASK.seq_len - 1)).float().mean().item()
pairs = [(b, int(ood_batch.second[b]) + t, int(ood_batch.first[b]) + t + 1)
         for b in range(len(ood_batch.tokens)) for t in range(TASK.skip, int(ood_batch.length[b]) - 1)]
on_target = np.mean([cache["blocks.1.attn.hook_pattern"][b, 0, q, key].item() for b, q, key in pairs])
uniform = np.mean([1 / (q + 1) for _, q, _ in pairs])  # a causal query at position q sees q + 1 keys
print(f"layer 1: {prev_token_share:.0%} of positions attend most to the position just before them (chance: about 1/position)")
print(f"layer 2: second-copy queries put {on_target:.2f} of their attention on average on the token after their twin "
      f"(a uniform pattern would put {uniform:.3f} there)")

# %% [markdown]
# In a run that learned the rule, look for this. Left: a bright line just below the diagonal, each
# position attending to the previous one. Right: the rows of the second copy form a bright stripe
# parallel to the diagonal (rows outside it have no copy to find): each token of the second copy
# attends to the token *after* its twin in the first copy, which is exactly the next token to
# predict. The printed lines measure both for this run; `tests/test_circuits_matching.py` checks the same two
# numbers (more than 70% previous-token positions, more than 0.5 on the target, averaged over the same
# second-copy positions) on its runs that learn the rule, which are seed 0 trained three ways (1 and 2
# threads, float32 and float64): one seed.
#
# Back to the question of section 1: a one-layer model cannot do what layer 2 does here. Its keys carry only their
# own token and position, not "the token before me", so no query can find "the position after the
# earlier $A$". Layer 1 is what writes the previous token into each position (try it: item 2 of
# *Try next*).

# %% [markdown]
# ## 5. Reading the circuit from the weights
#
# With row vectors (TransformerLens's convention: $q = \hat x W_Q + b_Q$, output $= z W_O + b_O$):
#
# * QK circuit of layer 2: $W_{qk}(\delta) = W_Q R(\delta) W_K^\top / \sqrt{d_{head}}$, with $R(\delta)$
#   the rotary matrix for the query–key distance $\delta$ (the identity at $\delta = 0$). The
#   blocks are *pre-LayerNorm*: attention reads $\hat x = \mathrm{LN}(x)$, the residual centred,
#   divided by its standard deviation, times a learned gain plus a learned bias, not $x$ itself.
#   The exact score of query position $i$ on key position $j$ is
#   $$ \text{score}_{ij} = \hat x_i W_{qk}(i - j)\, \hat x_j^\top +
#      \big(\hat x_i W_Q R\, b_K^\top + b_Q R\, W_K^\top \hat x_j^\top + b_Q R\, b_K^\top\big) / \sqrt{d_{head}}, $$
#   so $\hat x_i W_{qk} \hat x_j^\top$ is the whole score only when the biases are zero, and it is
#   written in the layer-normed $\hat x$, not the residual $x$. The cell after the next checks this
#   on the trained model;
# * OV circuit of layer 1: $W_{ov} = W_V W_O$ (TransformerLens's `W_OV`), so a source whose layer-normed residual is $\hat x$
#   writes $\hat x W_{ov}$ (plus the bias $b_V W_O + b_O$);
# * their composition $W_{qkov} = W_{qk} W_{ov}^\top$, read token by token as
#   $E\, W_{qkov} E^\top$ ($E$ the embedding): entry $[a, b]$ is roughly how much a query on token
#   $a$ likes a key whose previous token was $b$. "Roughly": it skips the layer norms, the biases
#   and every path other than "embedding -> layer-1 OV -> layer-2 key", so it summarises the
#   weights rather than reproducing scores.
#
# The paper writes column vectors: its $W_{ov} = W_o W_v$ is our $W_{ov}^\top$, so its *left*
# singular vectors of $W_{ov}$ are our *right* ones. Same numbers.
#
# **Predict first:** what should $E\, W_{qkov} E^\top$ look like for an induction head?

# %%
def token_level(model, distance=0):
    l1, l2 = HeadWeights.from_model(model, 0), HeadWeights.from_model(model, 1)  # layers 1 and 2
    W_qk = matching.qk_circuit(l2.W_Q[0], l2.W_K[0], distance, model.cfg.rotary_base)  # head 0
    W_ov = matching.ov_circuit(l1.W_V[0], l1.W_O[0])
    return matching.token_matrix(model.embed.W_E, matching.qkov_circuit(W_qk, W_ov))


start, end = token_level(fresh.load(0)), token_level(fresh.load(-1))
vocab = [str(t) for t in range(TASK.vocab_size)]
fig = heatmap_grid(
    [start, end], ["at initialisation", f"after {fresh.steps[-1]} steps"],
    row_labels=vocab, col_labels=vocab, ncols=2, figsize=(14, 6), center=0, cmap="RdBu_r", colorbar=True,
    suptitle="Token-level QK-OV circuit  E W_qkov E^T", xlabel="previous token of the key", ylabel="query token",
)
plt.show()
for name, M in [("initialisation", start), ("trained", end)]:
    print(f"{name:>15}: diagonal z-score {matching.diagonal_zscore(M):5.2f}, token mismatch ratio {matching.token_mismatch_ratio(M):.2f}")

# %%
# The exact layer-2 score, rebuilt from W_qk(distance): layer-normed residuals plus the bias terms.
d_head = model.cfg.d_head
with torch.no_grad():
    x_hat = model.blocks[1].ln1(cache["blocks.1.hook_resid_pre"][k]).double().cpu().numpy()  # [pos, d_model]
    resid = cache["blocks.1.hook_resid_pre"][k].double().cpu().numpy()  # the residual before the layer norm
W2 = HeadWeights.from_model(model, 1).map(lambda t: t.double().cpu())
W_Q, W_K, b_Q, b_K = (t[0].numpy() for t in (W2.W_Q, W2.W_K, W2.b_Q, W2.b_K))  # head 0, as NumPy arrays
i, j = int(ood_batch.second[k]) + 3, int(ood_batch.first[k]) + 4  # a query in the second copy, its target key
rotary = model.cfg.positions == "rotary"  # without rotary positions there is no R(i - j): R = identity
R = matching.rotary_matrix(d_head, i - j, model.cfg.rotary_base) if rotary else np.eye(d_head)
W_qk_ij = matching.qk_circuit(W_Q, W_K, i - j if rotary else None, model.cfg.rotary_base)
bilinear = x_hat[i] @ W_qk_ij @ x_hat[j]
bias_terms = (x_hat[i] @ W_Q @ R @ b_K + b_Q @ R @ W_K.T @ x_hat[j] + b_Q @ R @ b_K) / np.sqrt(d_head)
print(f"score of query {i} on key {j} (distance {i - j}), from the model: {float(cache['blocks.1.attn.hook_attn_scores'][k, 0, i, j]):.4f}")
print(f"  x_hat_i W_qk x_hat_j = {bilinear:.4f}, bias terms = {bias_terms:.4f}, sum = {bilinear + bias_terms:.4f}")
print(f"  the same bilinear form on the raw residual, x_i W_qk x_j = {resid[i] @ W_qk_ij @ resid[j]:.4f} (not the score)")

# %% [markdown]
# At initialisation the matrix is noise. After training, look for a red diagonal: a query on token
# $a$ preferring keys preceded by $a$, for every token. Two numbers summarise it: the **diagonal
# z-score** (how many standard deviations the diagonal's mean sits above the mean of all entries)
# and the **token mismatch ratio** (the share of rows whose largest entry is off the diagonal;
# 0 means every token finds its twin); the cell prints both for the two checkpoints. The score cell
# above confirms that the exact score is the bilinear form on the layer-normed $\hat x$ plus the bias
# terms, and that the same form on the raw residual $x$ is a different number.

# %% [markdown]
# ## 6. Subspace matching: does layer 2 read what layer 1 writes?
#
# Take the top-$r$ right singular vectors of $W_{qk}$ (the key directions layer 2 listens to) and of
# $W_{ov}$ (the directions layer 1 writes into). The singular values of $V_{qk}[:, :r]^\top
# V_{ov}[:, :r]$ are the cosines of the **principal angles** between the two subspaces: 1 for a
# shared direction, 0 for orthogonal ones. We summarise them by the largest (is there *any*
# shared direction?) or the root mean square (how much do the subspaces overlap overall?).
#
# Two random $r$-dimensional subspaces of $\mathbb{R}^d$ overlap by chance, so a score means nothing
# without a **random baseline**: the same score for pairs of Gaussian matrices. For the RMS version
# one expectation is exact: the mean *squared* cosine has expectation $r/d$ (a random unit vector
# keeps on average a share $r/d$ of its squared length in a fixed $r$-dimensional subspace). Its
# square root $\sqrt{r/d}$ is only an upper bound for the expected RMS (Jensen's inequality: the mean
# of a square root is at most the root of the mean); the cell prints both.
#
# One caveat before the numbers: the headline metrics below use $W_{qk}$ at distance $\delta = 0$
# ($R$ = identity), as the paper's code does (its $W_{qk}$ has no rotary matrix). The induction head
# never uses distance 0: a query at position $s + t$ in the second copy reads the key at $f + t + 1$
# in the first, a distance of $s - f - 1 = L + \text{gap} - 1$ for a pattern of length $L$ with $\text{gap}$ tokens
# between the copies. Section 8 measures the match at those real distances.
#
# A second caveat: the two sides live in different coordinates. $W_{qk}$'s key side reads layer 2's
# *layer-normed* $\hat x$, while $W_{ov}$ writes into the raw residual $x$; in between, layer 2's
# layer norm centres $x$ and multiplies each coordinate by its own trained gain, which turns
# directions. Folding each layer norm's gain and centring into the matrices that read it ($W_Q$,
# $W_K$, $W_V$), as lesson 5 does (`toyattn.circuits.head_circuits.head_factors`), puts both sides in the
# residual's coordinates, up to one positive scale per token. The seed comparison below prints the
# folded match next to the unfolded one (the paper's code does not fold).
#
# **Predict first:** during training, does the QK–OV match rise before, during or after the drop in
# OOD error?

# %%
RANKS = (4, 8) if D_MODEL <= 32 else (5, 10)
R_MAIN = RANKS[0]
baseline = {(r, s): matching.random_baseline(D_MODEL, r, n_runs=50, summary=s) for r in RANKS for s in ("largest", "rms")}
for r in RANKS:
    print(f"rank {r}: random baseline largest {baseline[(r, 'largest')][0]:.3f} +- {baseline[(r, 'largest')][1]:.3f}, "
          f"rms {baseline[(r, 'rms')][0]:.3f} (at most sqrt(r/d) = {matching.expected_random_matching(D_MODEL, r, 'rms'):.3f})")


def metrics_over_training(run, ranks=RANKS, distance=0):
    rows = [matching.circuit_metrics(run.load(i), ranks=ranks, distance=distance) for i in range(len(run))]
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


dyn = {pool: metrics_over_training(run) for pool, run in runs.items()}


def span_share(model, rank=R_MAIN):
    """(share of layer-1 W_ov's top-rank output directions' squared length inside span(W_E), its chance value)."""
    l1 = HeadWeights.from_model(model, 0)
    return matching.ov_output_share_in_embedding_span(model.embed.W_E, matching.ov_circuit(l1.W_V[0], l1.W_O[0]), rank)


def plot_dynamics(run, m, title):
    fig, axes = plt.subplots(1, 5, figsize=(22, 3.6))
    axes[0].plot(run.steps, run.history["id_error"], label="ID")
    axes[0].plot(run.steps, run.history["ood_error"], label="OOD")
    axes[0].set(title="ID / OOD error", xlabel="step", ylabel="error", ylim=(0, 1))
    axes[0].legend()
    axes[1].plot(run.steps, m["diag_zscore"], "-o", ms=3)
    axes[1].set(title="Diagonal z-score of E W_qkov E^T", xlabel="step", ylabel="z-score")
    axes[2].plot(run.steps, m[f"match_largest_{R_MAIN}"], "-o", ms=3, label="QK-OV")
    axes[2].axhline(baseline[(R_MAIN, "largest")][0], color="gray", ls="--", label="random baseline")
    axes[2].set(title=f"QK-OV matching (rank {R_MAIN}, largest)", xlabel="step", ylabel="cosine", ylim=(0, 1.05))
    axes[2].legend()
    axes[3].plot(run.steps, m["mismatch"], "-o", ms=3)
    axes[3].set(title="Token mismatch ratio", xlabel="step", ylabel="share of rows", ylim=(-0.02, 1.02))
    shares = [span_share(run.load(i)) for i in range(len(run))]
    axes[4].plot(run.steps, [share for share, _ in shares], "-o", ms=3, label=f"layer-1 OV's top-{R_MAIN} outputs")
    axes[4].axhline(shares[0][1], color="gray", ls="--", label="random direction (dim / d_model)")
    axes[4].set(title="Share of layer-1 OV's output inside span(W_E)", xlabel="step", ylabel="share of squared length",
                ylim=(0, 1.05))
    axes[4].legend()
    fig.suptitle(title)
    plt.tight_layout()
    plt.show()


plot_dynamics(fresh, dyn[None], "Fresh patterns every step")

# %% [markdown]
# Read the panels left to right. Does the QK–OV match start near the random baseline, and in which
# steps does it rise compared with the fall of the OOD error? Does the diagonal z-score climb and the
# mismatch ratio drop in the same steps? Look at how far the match moves between neighbouring
# checkpoints (the next cell prints the largest step-to-step change): it is a noisy proxy (one cosine,
# at distance 0, between top-$r$ subspaces, $r$ = `R_MAIN` (4 on the CPU settings), and a top-$r$
# subspace jumps whenever the $r$-th and the next singular values trade places). What `tests/test_circuits_matching.py` checks, on seed 0 (the seed among its runs that
# learns in its 450 steps, trained three ways), is the end state: a match above the baseline's mean
# + 2 standard deviations that rose by at least 0.15, a diagonal z-score above 1.5 and under 30%
# mismatched rows.
# The last panel asks a different question: does layer 1 write the copied token into the subspace
# the token embeddings span? The embeddings span `vocab_size` of the `D_MODEL` dimensions, so a random
# direction keeps a share vocab / d_model of its squared length there (the dashed line). A curve
# well *below* that line means layer 1 writes "previous token" largely into directions of its own,
# outside "current token", which would let layer 2 tell the two apart; the next cell prints where
# this run's curve ends.
#
# The RMS version uses all $r$ cosines, not only the largest. Does it tell the same story? Compare
# each rank's start and end with its baseline:

# %%
jumps = np.abs(np.diff(dyn[None][f"match_largest_{R_MAIN}"]))
print(f"largest change of the match between neighbouring checkpoints: {jumps.max():.3f} "
      f"(at step {fresh.steps[int(jumps.argmax()) + 1]}); median change {np.median(jumps):.3f}")
(share0, chance_share), (share_end, _) = span_share(fresh.load(0)), span_share(fresh.load(-1))
print(f"share of layer-1 OV's top-{R_MAIN} output inside span(W_E): {share0:.2f} at step 0 -> {share_end:.2f} at the end; "
      f"a random direction: {chance_share:.2f} (= {np.linalg.matrix_rank(fresh.model.embed.W_E.detach().double().cpu().numpy())} "
      f"of {D_MODEL} dimensions)")
for r in RANKS:
    first_, last_ = dyn[None][f"match_rms_{r}"][0], dyn[None][f"match_rms_{r}"][-1]
    print(f"rank {r}: QK-OV matching (RMS) {first_:.3f} at step 0 -> {last_:.3f} at the end; "
          f"random baseline {baseline[(r, 'rms')][0]:.3f} +- {baseline[(r, 'rms')][1]:.3f}")

# %% [markdown]
# ### Three seeds: does the match rise when the OOD error falls?
#
# One run cannot tell whether the match and the OOD error move *together*. The next cell trains two
# more seeds with fresh patterns (a few seconds) and draws each seed's curves. It calls the
# match "risen" once it passes the baseline's mean + 2 standard deviations, and the error "fallen"
# once it is below 0.5, and prints, seed by seed, the first checkpoint where each happens.
#
# **Predict first:** on every seed, does the match rise before the OOD error falls? Can the match
# rise on a seed whose OOD error never falls?

# %%
MATCH_RISEN = baseline[(R_MAIN, "largest")][0] + 2 * baseline[(R_MAIN, "largest")][1]
ERROR_FALLEN = 0.5
seed_runs = {TRAIN.seed: fresh}
# The two seeds train together as one stacked model (train_copy_models): each run ends where it would end
# trained alone, up to rounding, but every operation is one call for both runs. That is what a GPU needs to be
# busy (one small run leaves it mostly idle); on 2 CPUs it is about 1.25x faster than one run after the other.
extra_seeds = (TRAIN.seed + 1, TRAIN.seed + 2)
for seed, run in zip(extra_seeds, train_copy_models(TASK, runs=[(seed, None) for seed in extra_seeds], train=TRAIN,
                                                     model_config=MODEL, device=device, progress=False), strict=True):
    seed_runs[seed] = run
seed_match = {seed: (dyn[None] if run is fresh else metrics_over_training(run, ranks=(R_MAIN,)))[f"match_largest_{R_MAIN}"]
              for seed, run in seed_runs.items()}

fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for n, (seed, run) in enumerate(seed_runs.items()):
    axes[0].plot(run.steps, run.history["ood_error"], color=f"C{n}", label=f"seed {seed}")
    axes[1].plot(run.steps, seed_match[seed], "-o", ms=3, color=f"C{n}", label=f"seed {seed}")
axes[0].axhline(ERROR_FALLEN, color="gray", ls=":", label="'fallen' threshold")
axes[1].axhline(baseline[(R_MAIN, "largest")][0], color="gray", ls="--", label="random baseline")
axes[1].axhline(MATCH_RISEN, color="gray", ls=":", label="baseline + 2 std")
axes[0].set(title="OOD error, one line per seed", xlabel="step", ylabel="error", ylim=(0, 1))
axes[1].set(title=f"QK-OV matching (rank {R_MAIN}, largest), per seed", xlabel="step", ylabel="cosine", ylim=(0, 1.05))
for ax in axes:
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

order = {}
when = lambda step: f"at step {step}" if step is not None else f"not within {TRAIN.steps} steps"  # noqa: E731
for seed, run in seed_runs.items():
    rose = matching.first_step_where(run.steps, seed_match[seed], MATCH_RISEN)
    fell = matching.first_step_where(run.steps, run.history["ood_error"], ERROR_FALLEN, below=True)
    order[seed] = (rose, fell)
    at_rise = "" if rose is None else f" (OOD error then {run.history['ood_error'][run.steps.index(rose)]:.2f})"
    print(f"seed {seed}: match above {MATCH_RISEN:.2f} {when(rose)}{at_rise}; OOD error below {ERROR_FALLEN} {when(fell)}; "
          f"at the end OOD error {run.history['ood_error'][-1]:.2f}, match {seed_match[seed][-1]:.2f}")
before = sum(r is not None and f is not None and r < f for r, f in order.values())
same = sum(r is not None and f is not None and r == f for r, f in order.values())
after = sum(r is not None and f is not None and r > f for r, f in order.values())
without = sum(r is not None and f is None for r, f in order.values())
rule_only = sum(r is None and f is not None for r, f in order.values())
neither = sum(r is None and f is None for r, f in order.values())
print(f"\nOf {len(order)} seeds: the match rose above the baseline + 2 std before the OOD error fell below {ERROR_FALLEN} "
      f"on {before}, at the same checkpoint on {same}, after it on {after}; on {rule_only} the OOD error fell and the match "
      f"never rose; on {without} the match rose and the OOD error did not fall within {TRAIN.steps} steps; "
      f"on {neither} neither happened.")


def folded_match(model, rank=R_MAIN):
    """The final match with each layer norm's gain and centring folded into W_Q, W_K, W_V (lesson 5's way)."""
    l1, l2 = head_factors(model, 0, 0, fold=True), head_factors(model, 1, 0, fold=True)
    return matching.qk_ov_matching(qk_matrix(l2), ov_matrix(l1), rank)


print(f"\nThe final match with the layer norms folded in (both sides in the residual's coordinates; "
      f"risen above {MATCH_RISEN:.2f}):")
for seed, run in seed_runs.items():
    gains = run.model.blocks[1].ln1.weight.detach().cpu()
    print(f"seed {seed}: unfolded {seed_match[seed][-1]:.3f}, folded {folded_match(run.model):.3f} "
          f"(layer 2's layer-norm gains {gains.min():.2f} to {gains.max():.2f}; OOD error {run.history['ood_error'][-1]:.2f})")

# %% [markdown]
# What to look for: compare each seed's two curves, not the seeds' average. On a seed that learns the
# rule, do the match and the OOD error move in the same stretch of training? The printed counts say on
# how many of the 3 seeds the match crossed its threshold before, with or after the OOD error. On a seed
# whose OOD error stays high, can the match still climb well above the baseline? If it can, check the
# folded number printed under it before concluding anything: a high unfolded match that drops towards
# the baseline once the layer norms are folded in was largely an effect of the layer norm's gains, not
# of layer 2 reading what layer 1 writes. Only a high *folded* match without the rule would say that a
# high match is not sufficient for the rule. Keep
# in mind what the match is: the largest of `R_MAIN` cosines, at distance 0 (a distance the induction
# head never uses; section 8 measures the real ones), between top-`R_MAIN` subspaces that jump whenever
# the `R_MAIN`-th and the next singular values trade places. It is a **noisy proxy** for "layer 2 reads what layer 1
# writes", and a single checkpoint can mislead.
#
# The course has also recorded longer runs: `benchmarks/bench_pool_size.py` trained this model
# (the CPU settings) with seeds 0, 1 and 2 for 600 and for 1500 steps and stored the final
# OOD error and the (unfolded) match in `benchmarks/results/` (lesson 5 plots the whole sweep over
# pool sizes); the cell prints the settings each file records. The
# next cell lists the runs with fresh patterns and with a pool of 1000, and counts the runs where the
# two numbers disagree: a match above the baseline + 2 std with the OOD error still above 0.5, or
# the OOD error below 0.5 with the match below the baseline's mean.

# %%
RESULTS = Path(toyattn.__file__).resolve().parents[1] / "benchmarks" / "results"
recorded, configs = {}, {}
for steps, name in ((600, "pool_size_sweep.json"), (1500, "pool_size_sweep_1500.json")):
    if not (RESULTS / name).exists():
        raise FileNotFoundError(f"{RESULTS / name} is missing; it comes with the course repository "
                                "(or run benchmarks/bench_pool_size.py from a clone to make it).")
    data = json.loads((RESULTS / name).read_text())
    configs[name] = data.get("config", {})
    for row in data["runs"]:
        if row["pool_size"] in (None, 1000):
            recorded[(row["pool_size"], row["seed"], steps)] = (row["ood_error"], row["match_largest_4"])
for name, cfg in configs.items():
    model_cfg, train_cfg = cfg.get("model", {}), cfg.get("train", {})
    print(f"{name}: d_model {model_cfg.get('d_model', '?')}, rank {cfg.get('rank', '?')}, "
          f"{train_cfg.get('steps', '?')} steps, lr {train_cfg.get('lr', '?')}; trained {cfg.get('training', 'how: not recorded')}")
ranks_recorded = {cfg.get("rank", 4) for cfg in configs.values()}
d_recorded = {cfg.get("model", {}).get("d_model", 32) for cfg in configs.values()}
assert ranks_recorded == {4} and d_recorded == {32}, (ranks_recorded, d_recorded)  # the columns read below
base_mean, base_std = matching.random_baseline(32, 4, n_runs=50)  # the recorded runs' size, whatever SCALE says
risen = base_mean + 2 * base_std
name_of = lambda pool, seed, n: f"{'fresh' if pool is None else 'pool ' + str(pool)} seed {seed} at {n} steps"  # noqa: E731
print(f"\nrecorded runs (random baseline for d_model 32, rank 4: {base_mean:.2f}, + 2 std = {risen:.2f})")
print(f"{'patterns':>9} {'seed':>4} | {'OOD error, match at 600 steps':>29} | {'at 1500 steps':>13}")
for pool in (None, 1000):
    for seed in (0, 1, 2):
        cells = [f"{recorded[(pool, seed, n)][0]:.2f}, {recorded[(pool, seed, n)][1]:.2f}" for n in (600, 1500)]
        print(f"{'fresh' if pool is None else 'pool ' + str(pool):>9} {seed:>4} | {cells[0]:>29} | {cells[1]:>13}")
high_match_no_rule = [name_of(*key) for key, (err, match) in recorded.items() if match > risen and err > ERROR_FALLEN]
rule_low_match = [name_of(*key) for key, (err, match) in recorded.items() if err < ERROR_FALLEN and match < base_mean]
slow = [(pool, seed) for pool, seed, n in recorded if n == 600 and recorded[(pool, seed, 600)][0] > 0.2]
late = [name_of(pool, seed, 1500) for pool, seed in slow if recorded[(pool, seed, 1500)][0] < 0.2]
print(f"\n{len(high_match_no_rule)} of {len(recorded)} recorded runs have a match above {risen:.2f} with the OOD error "
      f"still above {ERROR_FALLEN}: {', '.join(high_match_no_rule) or '-'}")
print(f"{len(rule_low_match)} have the OOD error below {ERROR_FALLEN} with the match below the baseline's mean: "
      f"{', '.join(rule_low_match) or '-'}")
print(f"{len(late)} of the {len(slow)} runs with OOD error above 0.2 at 600 steps are below 0.2 at 1500 steps")

# %% [markdown]
# ## 7. Pool size: memorising versus generalising
#
# Now the same model and schedule, but every training pattern comes from a small fixed pool.
#
# **Predict first:** with the smallest pool in `POOLS` (20 patterns on the CPU settings), which error
# falls, ID or OOD? And the QK–OV match? And with the largest pool?

# %%
# The pools train together as one stacked model, for the same reason as the seeds in section 6: one call per
# operation for all runs, which is what a GPU needs (each run ends as it would alone, up to rounding).
new_pools = [pool for pool in POOLS if pool not in runs]
for pool, run in zip(new_pools, train_copy_models(TASK, runs=[(TRAIN.seed, pool) for pool in new_pools], train=TRAIN,
                                                   model_config=MODEL, device=device), strict=True):
    runs[pool] = run
    dyn[pool] = metrics_over_training(run)

fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
for pool, run in runs.items():
    name = "fresh" if pool is None else f"pool {pool}"
    axes[0].plot(run.steps, run.history["id_error"], label=name)
    axes[1].plot(run.steps, run.history["ood_error"], label=name)
    axes[2].plot(run.steps, dyn[pool][f"match_largest_{R_MAIN}"], label=name)
axes[2].axhline(baseline[(R_MAIN, "largest")][0], color="gray", ls="--", label="random baseline")
axes[0].set(title="ID error", xlabel="step", ylabel="error", ylim=(0, 1))
axes[1].set(title="OOD error", xlabel="step", ylabel="error", ylim=(0, 1))
axes[2].set(title=f"QK-OV matching (rank {R_MAIN}, largest)", xlabel="step", ylabel="cosine", ylim=(0, 1.05))
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()

print(f"{'training patterns':>18} | {'ID error':>8} | {'OOD error':>9} | {'QK-OV match':>11} | {'z-score':>7} | {'mismatch':>8}")
for pool, run in runs.items():
    name = "fresh" if pool is None else f"pool {pool}"
    print(f"{name:>18} | {run.history['id_error'][-1]:8.3f} | {run.history['ood_error'][-1]:9.3f} | "
          f"{dyn[pool][f'match_largest_{R_MAIN}'][-1]:11.3f} | {dyn[pool]['diag_zscore'][-1]:7.2f} | {dyn[pool]['mismatch'][-1]:8.2f}")
print(f"random baseline for the match: {baseline[(R_MAIN, 'largest')][0]:.3f}")
for pool, run in runs.items():
    id_err, ood_err = run.history["id_error"][-1], run.history["ood_error"][-1]
    verdict = ("learned the rule (ID and OOD error below 0.2)" if ood_err < 0.2 and id_err < 0.2 else
               "memorised (ID error below 0.2, OOD error above 0.7)" if id_err < 0.2 and ood_err > 0.7 else
               "neither memorised nor generalised yet")
    print(f"{'fresh' if pool is None else f'pool {pool}'}: {verdict}; match {dyn[pool][f'match_largest_{R_MAIN}'][-1]:.2f} "
          f"against the baseline + 2 std {MATCH_RISEN:.2f}")

# %% [markdown]
# What to look for, run by run (the table prints each run's final numbers, the lines under it a
# verdict). A small pool can be memorised ("after 7 comes 3 in pattern #12"), which is easy: does its
# ID error drop early, and does its OOD error stay high? If so, check its circuit: a QK–OV match near
# or below the baseline, a weak diagonal and a high mismatch ratio would mean that no induction head
# formed, consistent with memorisation having solved the training task first
# (`tests/test_circuits_copy_task.py` checks that a pool of 10 memorises, with most rows mismatched). Can the
# largest pool be memorised in `TRAIN.steps` steps, or does it behave like the fresh patterns? One
# seed may not be enough to tell: look back at the recorded pool of 1000 in section 6's table. Does it
# end the same way on every seed?
#
# **The paper's settings.** Song, Xu & Zhong (arXiv 2408.09503; these are the settings of their final
# runs, the command lines in their code's `run.sh`, which differ from the defaults in its
# `config.yaml`; see [the course's references](../docs/references.md)) train the same architecture
# at `d_model` 64 with a vocabulary of 64, sequences of 64, patterns of 10–19 tokens (OOD: uniform
# tokens, length 25, error skipping the first 4 tokens of the second copy), AdamW (lr 1e-3, weight
# decay 5e-4, betas 0.9/0.98), batch 50, dropout 0.1, for 20,000 steps, with pools of 100, 1000,
# unlimited, and 740 / 750 at the boundary between generalising and not. The course's CPU run differs
# in the task as well as the training:
#
# | | paper (run.sh) | course, CPU settings (`CopyTaskConfig()`, `TrainConfig()`) |
# |---|---|---|
# | vocabulary | 64 | 24 |
# | sequence length | 64 | 32 |
# | pattern length (training) | 10–19 | 8–12 |
# | OOD pattern length | 25 | 14 |
# | tokens skipped at the start of the second copy | 4 | 2 |
# | pattern tokens | drawn from the background's Zipf law, with replacement | distinct, uniform |
# | `d_model` | 64 | 32 |
# | training | lr 1e-3, batch 50, dropout 0.1, 20,000 steps | lr 1e-2, batch 64, no dropout, 600 steps |
#
# So its boundary between memorising and generalising can sit elsewhere (try pools of 100–1000 with
# more steps; lesson 5 plots a recorded sweep).
# For real models they compare matching at rank 10 with 50 random Gaussian pairs; here we use rank
# `R_MAIN` of `D_MODEL` (4 of 32 on the CPU) against 50 pairs, printed in section 6.

# %% [markdown]
# ## 8. Relative distance: the rotary matrix inside $W_{qk}$
#
# With rotary positions the layer-2 score depends on the query–key distance $\delta$:
# $W_{qk}(\delta) = W_Q R(\delta) W_K^\top / \sqrt{d_{head}}$. So far we used $\delta = 0$, a distance
# the induction head never uses: it reads from $\delta = L + \text{gap} - 1$ positions back (section
# 6). The cell prints the range of these real distances over the OOD test sequences and shades it.
#
# **Predict first:** does the match with layer 1's OV survive at the real distances, or only at
# $\delta = 0$?

# %%
ood_tests = make_test_sets(TASK, 256, seed=99)["ood"]
real = (ood_tests.second - ood_tests.first - 1).numpy()  # L + gap - 1: the induction head's distance
print(f"real query-key distances of the induction head: {real.min()} to {real.max()} (median {int(np.median(real))})")
distances = sorted(set(range(0, TASK.seq_len, 2)) | set(range(int(real.min()), int(real.max()) + 1)))  # every real distance
final = fresh.load(-1)
sweep = {d: matching.circuit_metrics(final, ranks=(R_MAIN,), distance=d) for d in distances}
d_real = int(np.median(real))
print(f"QK-OV match (rank {R_MAIN}, largest): {sweep[0][f'match_largest_{R_MAIN}']:.3f} at distance 0, "
      f"{sweep[d_real][f'match_largest_{R_MAIN}']:.3f} at the median real distance {d_real}; "
      f"diagonal z-score {sweep[0]['diag_zscore']:.2f} -> {sweep[d_real]['diag_zscore']:.2f}")
band = [d for d in distances if real.min() <= d <= real.max()]
in_band = {key: [sweep[d][key] for d in band] for key in (f"match_largest_{R_MAIN}", "diag_zscore")}
print(f"inside the band ({len(band)} distances): match {min(in_band[f'match_largest_{R_MAIN}']):.3f} to "
      f"{max(in_band[f'match_largest_{R_MAIN}']):.3f}, z-score {min(in_band['diag_zscore']):.2f} to {max(in_band['diag_zscore']):.2f}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for ax in axes:
    ax.axvspan(real.min(), real.max(), color="C2", alpha=0.15, label="real distances")
axes[0].plot(distances, [sweep[d][f"match_largest_{R_MAIN}"] for d in distances], "-o", label="QK-OV match")
axes[0].axhline(baseline[(R_MAIN, "largest")][0], color="gray", ls="--", label="random baseline")
axes[0].set(title="Matching vs relative distance (trained, fresh)", xlabel="query - key distance", ylabel="cosine", ylim=(0, 1.05))
axes[0].legend()
axes[1].plot(distances, [sweep[d]["diag_zscore"] for d in distances], "-o")
axes[1].set(title="Diagonal z-score vs relative distance", xlabel="query - key distance", ylabel="z-score")
plt.tight_layout()
plt.show()

# %% [markdown]
# Compare the curves inside the shaded band with their value at distance 0, and read the printed
# lines. If they hardly change, the circuit finds the earlier copy whether it is near or far, which
# is the whole point of copying, and the distance-0 headline numbers of sections 6 and 7 stand for
# the distances actually used. If they change, trust the numbers inside the band. (Why could it be
# nearly distance-proof although $R(\delta)$ rotates the key directions? A hint for the curious:
# look at how much of $W_Q$ and $W_K$ sits on the fast and on the slow rotary pairs.)

# %% [markdown]
# ## 9. What does the previous-token head read?
#
# Layer 1 must attend to the previous position *whatever the tokens are*. Split the token
# embeddings into the part all tokens **share** (the mean embedding) and each token's **own** part
# (its embedding minus the mean). `matching.embedding_usage` measures how much of each part layer 1's $W_Q$
# or $W_K$ reads: the length of the unit-normalised part projected onto the top-$r$ input directions
# of $W_Q$ or $W_K$ (it ignores the layer norm: its centring, its per-coordinate gain and its division
# of each token by its own standard deviation). For a random subspace (as at initialisation),
# the expected length is $\Gamma(\tfrac{r+1}{2})\Gamma(\tfrac d2) / \big(\Gamma(\tfrac r2)\Gamma(\tfrac{d+1}{2})\big)$,
# a little below $\sqrt{r/d}$ (the root of the expected *squared* length $r/d$); the plot draws it as
# "chance".
#
# **Predict first:** which curve rises during training, "shared" or "own"? Why? (Think about what a
# rotary score $q_i R(i-j) k_j^\top$ depends on.)

# %%
usage = {("W_Q", "own"): [], ("W_Q", "shared"): [], ("W_K", "own"): [], ("W_K", "shared"): []}
for i in range(len(fresh)):
    m = fresh.load(i)
    for name in ("W_Q", "W_K"):
        own, shared = matching.embedding_usage(m.embed.W_E, getattr(m.blocks[0].attn, name)[0], R_MAIN)
        usage[(name, "own")].append(own.mean())
        usage[(name, "shared")].append(shared)
fig, ax = plt.subplots(figsize=(7, 3.5))
for (name, part), values in usage.items():
    ax.plot(fresh.steps, values, ls="-" if part == "shared" else ":", label=f"layer-1 {name}, {part} part")
chance = matching.expected_projected_length(D_MODEL, R_MAIN)
ax.axhline(chance, color="gray", ls="--", label="chance (random subspace)")
ax.set(title=f"How much of the embeddings layer 1's Q/K read (rank {R_MAIN})", xlabel="step", ylabel="projected length", ylim=(0, 1))
ax.legend(fontsize=8)
plt.show()
for name in ("W_Q", "W_K"):
    shared_, own_ = usage[(name, "shared")], usage[(name, "own")]
    print(f"layer-1 {name}: shared part {shared_[0]:.2f} -> {shared_[-1]:.2f}, own part (mean over tokens) "
          f"{own_[0]:.2f} -> {own_[-1]:.2f}; chance {chance:.2f}")
# Two more constant signals: the attention's own biases b_Q, b_K, added to every token's query and key.
final_l1 = fresh.model.blocks[0]
with torch.no_grad():
    normed = final_l1.ln1(fresh.model.embed.W_E)  # each token's layer-normed embedding (the layer-1 input, no positions)
    for name, bias in (("W_Q", final_l1.attn.b_Q[0]), ("W_K", final_l1.attn.b_K[0])):
        shared_part = (normed @ getattr(final_l1.attn, name)[0]).mean(0)
        print(f"layer-1 {name[-1]}: |b_{name[-1]}| = {bias.norm():.2f}, against |mean over tokens of LN(e_t) {name}| "
              f"= {shared_part.norm():.2f}")

# %% [markdown]
# **Reveal.** With rotary positions the score $q_i R(i-j) k_j^\top$ depends on the distance $i - j$
# for any $q_i, k_j$; it depends on the distance *alone* only if the query and key vectors are the
# same for every token. A head that attends to the previous token whatever the tokens are is served
# best by reading what all tokens share, so the expectation is that the shared part rises. Now read
# the plot and the printed lines: which part climbs above the chance line, for $W_Q$ and for $W_K$?
# If the shared part rises for both while each token's own part stays near chance, that is
# consistent with a previous-token head that attends by position, using the mean embedding as a
# constant "I am a token" signal that the rotary matrix turns into a distance preference. This
# measurement does not see the other constant signals: the layer norm's learned bias, and the
# attention's own biases $b_Q$ and $b_K$, added to every query and key. The last printed lines compare
# $|b_Q|$ and $|b_K|$ with the length of the shared part of the layer-normed embeddings after $W_Q$ or
# $W_K$: if they are of the same size, the biases carry as much of the constant signal as the mean
# embedding does.

# %% [markdown]
# ## 10. How many directions does the bridge use? (ScreeNOT)
#
# The singular values of $W_{qk}$ and $W_{ov}$ decay; how many stand above the noise? ScreeNOT
# (Donoho, Gavish & Romanov, *ScreeNOT: exact MSE-optimal singular value thresholding in correlated
# noise*, arXiv 2009.12297; the `screenot` package) picks a hard threshold for the singular values
# that is optimal in mean squared error for a low-rank matrix plus noise (asymptotically); the number
# of singular values above it is a rank estimate.

# %%
ranks_over_training = {
    name: [matching.estimate_rank(M(fresh.load(i)), k=D_MODEL // 3) for i in range(0, len(fresh), max(1, len(fresh) // 8))]
    for name, M in {
        "layer-2 W_qk": lambda m: matching.qk_circuit(m.blocks[1].attn.W_Q[0], m.blocks[1].attn.W_K[0]),
        "layer-1 W_ov": lambda m: matching.ov_circuit(m.blocks[0].attn.W_V[0], m.blocks[0].attn.W_O[0]),
    }.items()
}
steps_sampled = fresh.steps[:: max(1, len(fresh) // 8)]
fig, ax = plt.subplots(figsize=(6, 3.2))
for name, r in ranks_over_training.items():
    ax.plot(steps_sampled, r, "-o", label=name)
ax.set(title="Rank estimated by ScreeNOT", xlabel="step", ylabel="rank")
ax.legend()
plt.show()
for name, r in ranks_over_training.items():
    print(f"{name}: estimated rank {r[0]} at step 0, {r[-1]} at the end (of {D_MODEL}); "
          f"the matching uses the top {R_MAIN}")

# %% [markdown]
# Read the printed ranks. At initialisation the weights are noise, so expect ScreeNOT to find
# little above it. As the induction circuit forms, singular values can separate from the bulk and
# the estimate climbs; if it ends at a minority of the `D_MODEL` directions, the bridge is low-rank,
# which supports comparing only the top $r$ directions. If it ends far from `R_MAIN`, the matching's
# rank is a choice, which is why section 6 prints two ranks.

# %% [markdown]
# ## What you saw, and what to try next
#
# * Induction = previous-token head (layer 1) + induction head (layer 2), connected through a
#   shared subspace: layer 2's keys read what layer 1's OV writes.
# * With fresh patterns, a run that learns the rule ends with a QK–OV match above the random
#   baseline, a token-level diagonal and few mismatched rows (`tests/test_circuits_matching.py` checks this
#   on seed 0, trained three ways; it is one seed, not a law). The match and the OOD error are not in
#   lockstep: section 6 printed, for its 3 seeds, on how many the match rose before, with or after the
#   OOD error fell, and on how many it rose without the rule; the recorded runs (unfolded matches)
#   include high matches without the rule and the rule's beginnings with a match below the baseline.
#   Whether and when a seed learns depends on the seed and the machine.
# * The match compares layer-normed coordinates (layer 2's keys) with raw ones (layer 1's output):
#   section 6 printed how much folding the layer norms in changes it, seed by seed.
# * The distance-0, top-$r$ match is a noisy proxy for the bridge: read it per seed and against its
#   baseline, next to the z-score and the mismatch ratio, never from one checkpoint.
# * A small pool can be memorised: ID error falls while the OOD error stays high (tested for a pool
#   of 10, which also leaves most token rows mismatched).
# * The headline metrics use distance 0; the induction head works at distance $L + \text{gap} - 1$
#   (section 8 measures there).
#
# All of this is read from the weights: a correlation, not yet a cause. **Lesson 5**
# (`notebooks/05_induction_circuits`) ablates and patches the previous-token head, removes the shared
# subspace against random ones, reads the circuit with the standard tools (K-composition, the full OV
# circuit and its copying score, the positional QK circuit, layer-norm folding, the in-context loss),
# plots the recorded OOD error against pool size over several seeds, and looks for the same two
# kinds of heads in a real model, SmolLM2-135M-Instruct.
#
# **Try next:**
# 1. Set `POOLS = [None, 20, 300, 3000]` and raise `TRAIN.steps`: where does generalisation start?
#    (Watch for a pool that, at `TRAIN.steps` steps, has neither memorised nor generalised yet; the paper's code
#    runs pools of 740 and 750 at its boundary, at its scale.)
# 2. Train a one-layer model: section 4 argues that the OOD error cannot fall far. Does it? Sections
#    4–10 read layer 2 and stop working for one layer, so run this on its own in a new cell:
#    ```python
#    one = train_copy_model(TASK, train=TRAIN, model_config=default_model_config(TASK, d_model=D_MODEL, n_layers=1),
#                           device=device, progress=False)
#    print(f"one layer: ID error {one.history['id_error'][-1]:.3f}, OOD error {one.history['ood_error'][-1]:.3f}")
#    ```
# 3. Use `MODEL = default_model_config(TASK, d_model=D_MODEL, positions="learned")` instead of rotary:
#    does the induction head still form, and how fast? (The metrics then use no rotary matrix, and
#    section 5's score cell uses $R$ = identity; section 8's distance sweep has nothing to sweep.)
# 4. Compare the RMS and largest summaries at several ranks: which one separates the fresh run from
#    the small pool more clearly?
# 5. Do the exercises in `exercises/04_qk_ov_matching.ipynb`: you rebuild $W_{qk}$, $W_{ov}$, the
#    matching score, the baseline and the z-score yourself.
