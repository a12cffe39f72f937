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
# # Lesson 5: proving the induction circuit, and finding it in a real model
#
# Lesson 4 read the induction circuit from the weights: layer 2's keys read the subspace that
# layer 1's OV circuit writes. A correlation in the weights is not yet a cause. This lesson
# **intervenes** on the trained toy model, reads it with the **standard circuit tools** of the
# interpretability literature, and then looks for the same bridge in a **real language model**,
# SmolLM2-135M, which ships with the course.
#
# **Learning goals.** After this lesson you can
# 1. test a circuit causally: ablate a head (zero and mean), patch its output from a clean run into a
#    corrupted one, and remove a subspace from what it writes, each with a control;
# 2. compute the K-composition score of two heads against a random baseline, and say where it agrees
#    and disagrees with lesson 4's principal-angle matching;
# 3. read a head's full OV circuit and its copying score, the positional QK circuit of a
#    previous-token head, and state exactly what folding a layer norm into the weights does;
# 4. find previous-token and induction heads in a real model from their attention on repeated random
#    tokens, and test whether their QK-OV matching stands out from random head pairs.
#
# Sources (details in `../shared/references.md`): Song, Xu & Zhong, *Out-of-distribution
# generalization via composition: a lens through induction heads in Transformers* (arXiv 2408.09503);
# Elhage et al., *A Mathematical Framework for Transformer Circuits* (2021); Olsson et al.,
# *In-context Learning and Induction Heads* (2022, arXiv 2209.11895); ARENA 3.0, chapter 1.2.
# Conventions are the course's row vectors: $W_{qk} = W_Q R W_K^\top/\sqrt{d_{head}}$ (score
# $x_q W_{qk} x_k^\top$), $W_{ov} = W_V W_O$ (a source residual $x$ writes $x W_{ov}$).
#
# The exercises for this lesson are in `exercises/05_induction_circuits.ipynb`.

# %%
import os

# The matrices here are small: one BLAS thread keeps threads from spinning against each other on a busy
# shared machine, where several BLAS threads made section 12 many times slower. Must precede numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import toyattn  # noqa: E402
from toyattn import circuits as C  # noqa: E402
from toyattn import composition as K  # noqa: E402
from toyattn import seed_everything  # noqa: E402
from toyattn.head_ablation import (  # noqa: E402
    ablate_head,
    copy_accuracy,
    corrupt_first_copy,
    offset_parity_mask,
    project_out,
    random_subspace,
)
from toyattn.induction import (  # noqa: E402
    CopyTaskConfig,
    TrainConfig,
    default_model_config,
    make_test_sets,
    train_copy_model,
)
from toyattn.induction_heads import (  # noqa: E402
    head_factors,
    head_scores,
    k_composition_factored,
    key_directions,
    pair_matching,
    random_matching_baseline,
    repeated_random_tokens,
    top_heads,
)
from toyattn.interventions import patch_activation  # noqa: E402
from toyattn.plotting import heatmap_plotly  # noqa: E402

seed_everything(0)
torch.set_num_threads(1)  # small models: one thread is the robust choice on a shared machine

# %% [markdown]
# ## 1. The model: lesson 4's run
#
# The same task and model as lesson 4 (2 layers, one head each, rotary positions, layer norm, no
# MLP, `d_model` 32), trained on fresh patterns for 600 steps, a checkpoint every 25 steps. Not every
# seed learns the circuit in 600 steps; the code below says whether this one did, and everything
# after it is about a model that did.

# %%
TASK = CopyTaskConfig()
run = train_copy_model(TASK, train=TrainConfig(seed=0), model_config=default_model_config(TASK), device="cpu")
model = run.model
D = model.cfg.d_model
ood = make_test_sets(TASK, 512, seed=99)["ood"]
with torch.no_grad():
    clean_logits = model(ood.tokens)
clean_acc = copy_accuracy(clean_logits, ood)
print(f"trained in {run.seconds:.0f} s; OOD accuracy on the second copy {clean_acc:.3f} "
      f"({'learned the circuit' if clean_acc > 0.8 else 'did NOT learn the circuit: try another seed'})")

# %% [markdown]
# ## 2. Ablation: silence the previous-token head
#
# If layer 1's head is the previous-token half of the circuit, the model should lose the second copy
# without it. Two ways to silence a head (`toyattn.head_ablation.ablate_head`, a temporary hook on
# `blocks.0.attn.hook_z`):
#
# * **zero ablation**: its output becomes 0;
# * **mean ablation**: its output at each position becomes its *average* over a batch of sequences,
#   so it still writes what it writes on average, but nothing about *this* sequence. A collapse
#   under mean ablation cannot be blamed on an unusual all-zero input.
#
# **Predict first:** the accuracy on the second copy is printed above. After each ablation, is it
# close to the clean accuracy, half of it, or near chance (a few percent)? And if we silence
# layer 2's head instead?

# %%
ablated = {}
for layer, name in ((0, "layer 1 (previous-token)"), (1, "layer 2 (induction)")):
    for mode in ("zero", "mean"):
        ablated[(name, mode)] = copy_accuracy(ablate_head(model, ood.tokens, layer, 0, mode), ood)

fig, ax = plt.subplots(figsize=(7, 3))
labels = ["clean"] + [f"{n}\n{m} ablation" for (n, m) in ablated]
ax.bar(labels, [clean_acc, *ablated.values()], color=["C0"] + ["C3", "C1"] * 2)
ax.set(ylabel="accuracy, second copy (OOD)", ylim=(0, 1), title="Ablating either head of the circuit")
ax.tick_params(axis="x", labelsize=7)
plt.show()
for (name, mode), acc in ablated.items():
    print(f"{name:>25}, {mode} ablation: accuracy {clean_acc:.3f} -> {acc:.3f}")

# %% [markdown]
# **Reveal.** Both ablations of the previous-token head drop the accuracy from the clean value to a
# few percent (the printed numbers): without "my previous token was ...", layer 2 has nothing to
# match its query against. Silencing the induction head itself does the same. The tests
# (`tests/test_head_ablation.py`) check the robust version of this on several seeds: on every seed
# that learned the circuit, both ablations of layer 1 take away more than half of the accuracy.
#
# ## 3. Patching: what exactly does the previous-token head carry?
#
# Ablation says the head is needed; patching says *what for*. We corrupt the input and copy the
# head's clean output back in (`toyattn.interventions.patch_activation`, lesson 1's tool, on
# `blocks.0.attn.hook_z`). The corruption is chosen so that the experiment has its own control:
# in the **first copy**, every token at an odd offset (1, 3, 5, ...) is replaced by a token that is
# not in the pattern; the second copy is untouched.
#
# * A target at an **even** offset $j$ in the second copy: its twin in the first copy kept its own
#   token, but the token *before* the twin was replaced. The induction head cannot find the twin
#   (layer 1 wrote the wrong "previous token" there): **where to look** is broken.
# * A target at an **odd** offset: its twin's *own* token was replaced. Even looking in the right
#   place, layer 2 would copy the wrong token: **what to copy** is broken.
#
# **Predict first:** after patching layer 1's clean output into the corrupted run, which targets
# recover, even, odd, both or neither?

# %%
corrupted_tokens = corrupt_first_copy(ood, TASK.vocab_size, torch.Generator().manual_seed(0))
even, odd = offset_parity_mask(ood, 0), offset_parity_mask(ood, 1)
with torch.no_grad():
    corrupted_logits = model(corrupted_tokens)
patched_logits = patch_activation(model, corrupted_tokens, ood.tokens, "blocks.0.attn.hook_z")
patching = {
    run_name: {part: copy_accuracy(logits, ood, mask) for part, mask in (("even", even), ("odd", odd))}
    for run_name, logits in (("clean", clean_logits), ("corrupted", corrupted_logits), ("patched", patched_logits))
}
recovery = (patching["patched"]["even"] - patching["corrupted"]["even"]) / (
    patching["clean"]["even"] - patching["corrupted"]["even"])

fig, ax = plt.subplots(figsize=(6, 3))
x = np.arange(3)
ax.bar(x - 0.2, [patching[r]["even"] for r in patching], 0.4, label="even offsets: 'where' broken")
ax.bar(x + 0.2, [patching[r]["odd"] for r in patching], 0.4, label="odd offsets: 'what' broken")
ax.set_xticks(x, list(patching))
ax.set(ylabel="accuracy", ylim=(0, 1), title="Patching layer 1's clean output into the corrupted run")
ax.legend(fontsize=8)
plt.show()
for r, accs in patching.items():
    print(f"{r:>9}: even offsets {accs['even']:.3f}, odd offsets {accs['odd']:.3f}")
print(f"share of the even-offset accuracy recovered by the patch: {recovery:.2f}")

# %% [markdown]
# **Reveal.** The bar chart separates the two jobs. The corruption breaks both kinds of target. The
# patch restores most of the even-offset accuracy (the printed share recovered) and leaves the odd
# offsets broken: layer 1's output tells layer 2 **where** the twin is, and the token that is copied
# comes from the twin's own position, which the patch does not touch. (Tested on every seed that
# learned the circuit: more than half of the even-offset accuracy comes back, odd offsets stay below 0.3.)
#
# ## 4. Removing the shared subspace, against random subspaces
#
# Song et al.'s causal claim is that the **shared** subspace carries the circuit, not just any
# directions. We remove, from what layer 1 writes (`blocks.0.hook_attn_out`), the top-$r$ key
# directions of layer 2's QK circuit (the subspace that lesson 4 found aligned with layer 1's OV
# output), and compare with removing random $r$-dimensional subspaces, over 20 random draws. The
# circuits are read with the layer norm's gain folded in (section 6 says exactly what that means).
#
# **Predict first:** removing 4 of 32 directions from layer 1's output: how much accuracy do random
# directions cost? And the shared ones?

# %%
R = 4
g = torch.Generator().manual_seed(0)
writer, reader = head_factors(model, 0, 0), head_factors(model, 1, 0)
shared = torch.tensor(key_directions(reader)[:, :R])
shared_acc = copy_accuracy(project_out(model, ood.tokens, 0, shared), ood)
random_acc = np.array([copy_accuracy(project_out(model, ood.tokens, 0, random_subspace(D, R, g)), ood) for _ in range(20)])

fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(random_acc, bins=10, range=(0, 1), color="gray", label=f"random {R}-dim subspaces (20 draws)")
ax.axvline(shared_acc, color="C3", lw=2, label="shared subspace (layer 2's top key directions)")
ax.axvline(clean_acc, color="C0", ls="--", label="nothing removed")
ax.set(xlabel="accuracy, second copy (OOD)", ylabel="draws", title=f"Removing {R} directions from layer 1's output")
ax.legend(fontsize=8)
plt.show()
print(f"shared subspace removed: accuracy {shared_acc:.3f}; random subspaces: median {np.median(random_acc):.3f} "
      f"(min {random_acc.min():.3f}, max {random_acc.max():.3f}); the shared removal is worse than "
      f"{np.mean(shared_acc < random_acc):.0%} of the random draws")

# %% [markdown]
# **Reveal.** Random directions cost little: layer 1's message is spread over few directions, and a
# random 4-dimensional subspace catches only a small part of it. Removing the shared directions costs
# much more than the typical random draw (the printed share of draws it beats): the circuit runs
# through the subspace the two layers share. The test asserts it as a fraction (worse than at least
# 80% of random draws, on every seed that learned), not as one run's numbers.
#
# ## 5. K-composition next to the principal-angle matching
#
# Elhage et al. measure how much head 2 reads what head 1 writes by a **composition score**,
# $\mathrm{comp}(A, B) = \|AB\|_F / (\|A\|_F\|B\|_F)$. For K-composition the key side of layer 2 reads
# layer 1's output: $\mathrm{comp}(W_{ov}^1, (W_{qk}^2)^\top)$ in our convention (ARENA's formula).
# Random circuits do **not** score 0, so each score comes with a baseline of random circuits of the
# same shapes and ranks.
#
# **Predict first:** over training, do the two scores rise at the same step? Which one leaves its
# baseline further behind?

# %%
def bridge_scores(m, distance=0):
    w, r = head_factors(m, 0, 0), head_factors(m, 1, 0)
    W_ov = w["W_V"] @ w["W_O"]
    W_qk = C.qk_circuit(r["W_Q"], r["W_K"], distance, m.cfg.rotary_base)
    return K.k_composition(W_ov, W_qk), C.qk_ov_matching(W_qk, W_ov, R, "largest")


over_training = np.array([bridge_scores(run.load(i)) for i in range(len(run))])
k_base, k_std = K.random_composition_baseline(D, model.cfg.d_head, n_runs=200)
m_base, m_std = C.random_baseline(D, R, n_runs=50)

fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
axes[0].plot(run.steps, run.history["ood_error"], color="k")
axes[0].set(title="OOD error", xlabel="step", ylim=(0, 1))
for ax, col, base, std, name in ((axes[1], 0, k_base, k_std, "K-composition"), (axes[2], 1, m_base, m_std, f"QK-OV matching (rank {R})")):
    ax.plot(run.steps, over_training[:, col], "-o", ms=3, label="trained model")
    ax.axhspan(base - 2 * std, base + 2 * std, color="gray", alpha=0.3, label="random: mean +- 2 std")
    ax.set(title=name, xlabel="step", ylim=(0, 1.05))
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
z_k = (over_training[-1, 0] - k_base) / k_std
z_m = (over_training[-1, 1] - m_base) / m_std
print(f"K-composition at step 0 {over_training[0, 0]:.3f}, matching at step 0 {over_training[0, 1]:.3f}")
print(f"final K-composition {over_training[-1, 0]:.3f} (random {k_base:.3f} +- {k_std:.3f}, {z_k:.1f} std above)")
print(f"final matching      {over_training[-1, 1]:.3f} (random {m_base:.3f} +- {m_std:.3f}, {z_m:.1f} std above)")

# %% [markdown]
# **Reveal.** Read the printed numbers and the two curves. Where they **agree**: both are at their
# baselines at initialisation and climb when the OOD error falls, so both see layer 2's keys start
# to read layer 1's output. Where they **differ**, and why:
#
# * The matching compares only the top-$r$ directions and ignores how strong they are; one shared
#   direction is enough for a large "largest cosine". It can jump to near 1 as soon as the leading
#   directions line up.
# * K-composition weighs every direction by its singular values in both circuits (a Frobenius norm of
#   the product), so it also counts everything else the two heads do: the parts of $W_{ov}^1$ that
#   layer 2's keys ignore pull it down. It stays far below 1 even for a working circuit; what matters
#   is its distance from the random baseline, printed in standard deviations.
# * With one head per layer there is only one pair, so the toy shows the two scores against their
#   baselines over training; the heatmap over many head pairs comes with the real model in section 9.
#
# ## 6. What is computed: folding the layer norm, and the real query-key distance
#
# Layer 2 does not read the residual stream $x$ itself but $\mathrm{LN}(x) = \gamma \odot (x -
# \bar{x})/\sigma(x) + \beta$. This identity is exact (`toyattn.composition.fold_norm`, tested in
# `tests/test_composition.py`):
#
# $$\mathrm{LN}(x)\, W = \frac{x}{\sigma(x)}\, \big(C\, \mathrm{diag}(\gamma)\, W\big) + \beta W,
# \qquad C = I - \tfrac{1}{d}\mathbf{1}\mathbf{1}^\top .$$
#
# So the folded $C\,\mathrm{diag}(\gamma) W_K$ reads the residual directions themselves, up to one
# positive number per token ($1/\sigma(x)$) that rescales the score without changing which direction
# is read, plus a constant bias $\beta W$. Lesson 4 used the unfolded weights; sections 4 and 9 use
# the folded ones.
#
# With rotary positions the circuit also depends on the query-key distance. The induction head's
# query sits in the second copy at position $s + j$ and reads the key at $f + j + 1$, so the real
# distance is $s - f - 1 = L + \text{gap} - 1$, not 0.
#
# **Predict first:** is the matching at the real distances lower than at distance 0?

# %%
real_distances = sorted(set((ood.second - ood.first - 1).tolist()))


def matching_at(m, distance, fold):
    w, r = head_factors(m, 0, 0, fold=fold), head_factors(m, 1, 0, fold=fold)
    W_qk = C.qk_circuit(r["W_Q"], r["W_K"], distance, m.cfg.rotary_base)
    return C.qk_ov_matching(W_qk, w["W_V"] @ w["W_O"], R, "largest")


checkpoints = range(0, len(run), 2)
curves = {
    "distance 0, unfolded (lesson 4)": [matching_at(run.load(i), 0, False) for i in checkpoints],
    "distance 0, LN folded": [matching_at(run.load(i), 0, True) for i in checkpoints],
    "real distances (mean), LN folded": [np.mean([matching_at(run.load(i), d, True) for d in real_distances[::3]])
                                         for i in checkpoints],
}
fig, ax = plt.subplots(figsize=(7, 3.4))
for name, ys in curves.items():
    ax.plot([run.steps[i] for i in checkpoints], ys, "-o", ms=3, label=name)
ax.axhline(m_base, color="gray", ls="--", label="random baseline")
ax.set(title=f"QK-OV matching (rank {R}) over training", xlabel="step", ylabel="largest cosine", ylim=(0, 1.05))
ax.legend(fontsize=8)
plt.show()
print(f"real query-key distances in the OOD batch: {real_distances[0]} to {real_distances[-1]}")
for name, ys in curves.items():
    print(f"{name:>34}: {ys[0]:.3f} at step 0 -> {ys[-1]:.3f} at the end")

# %% [markdown]
# **Reveal.** The three curves rise together; the printed end values say how close they are. Folding
# the gain does not create the alignment (the unfolded weights show it too), and at the real
# distances, which are between the printed extremes, the bridge is still there: the key directions
# that layer 2 reads are nearly unaffected by the rotary matrix (lesson 4, section 8, has the hint why).
#
# ## 7. The full OV circuit and the copying score of the induction head
#
# The induction head must **copy**: attending to token $a$ should raise the logit of $a$. Its full OV
# circuit maps a token's embedding through the head to the unembedding, $W_E\, W_{ov}^2\, W_U$
# (`[vocab, vocab]`, the norms' gains folded in). Two summaries: Elhage et al.'s eigenvalue score
# $\sum\lambda / \sum|\lambda|$ (1: pure copying, $-1$: pure anti-copying) and ARENA's top-1 test
# (the share of tokens whose own logit is the largest in their row).
#
# **Predict first:** which entries of the matrix stand out?

# %%
ind = head_factors(model, 1, 0)
W_U = K.fold_norm(model.unembed.weight.detach().double().numpy().T, model.ln_final.weight.detach().double().numpy(), center=True)
W_E = model.embed.W_E.detach().double().numpy()
full_ov = K.full_ov_circuit(W_E, ind["W_V"] @ ind["W_O"], W_U)
prev_head = head_factors(model, 0, 0)
fig, ax = plt.subplots(figsize=(4.5, 4))
im = ax.imshow(full_ov, cmap="RdBu_r", vmin=-np.abs(full_ov).max(), vmax=np.abs(full_ov).max())
ax.set(title="Full OV circuit of the induction head", xlabel="output logit of token", ylabel="attended token")
plt.colorbar(im)
plt.show()
print(f"induction head:     eigenvalue copying score {K.copying_eigen_score(W_E, ind['W_V'] @ ind['W_O'], W_U):+.3f}, "
      f"top-1 copying {K.copying_top1(full_ov):.2f}")
print(f"previous-token head: eigenvalue copying score {K.copying_eigen_score(W_E, prev_head['W_V'] @ prev_head['W_O'], W_U):+.3f}, "
      f"top-1 copying {K.copying_top1(K.full_ov_circuit(W_E, prev_head['W_V'] @ prev_head['W_O'], W_U)):.2f}")

# %% [markdown]
# **Reveal.** The diagonal stands out: the induction head raises the logit of the very token it
# attends to, and the printed scores put numbers on it. The previous-token head is printed for
# contrast: its output is not meant for the unembedding but for layer 2's keys (it writes "previous
# token" into directions of its own), so its direct path to the logits need not copy; its printed
# score says what this run's head does there.
#
# ## 8. The positional QK circuit of the previous-token head
#
# The previous-token head must attend to position $t-1$ whatever the tokens are. With rotary positions
# its score for fixed input vectors depends only on the query-key distance $\delta$. Averaged over
# independent query and key tokens, the score is exactly the score of the **mean** query and key
# (it is bilinear): `K.positional_qk_scores` evaluates it at every distance. Layer 1 reads the
# layer-normed embedding directly (rotary models add no position embedding to the residual).
#
# **Predict first:** at which distance is the curve highest?

# %%
attn0 = model.blocks[0].attn
with torch.no_grad():
    normed = model.blocks[0].ln1(model.embed.W_E)  # [vocab, d_model]: layer 1's input for each token
    q_mean = (normed @ attn0.W_Q[0] + attn0.b_Q[0]).mean(0).double().numpy()
    k_mean = (normed @ attn0.W_K[0] + attn0.b_K[0]).mean(0).double().numpy()
distances = np.arange(TASK.seq_len)
pos_scores = K.positional_qk_scores(q_mean, k_mean, None, None, distances, model.cfg.rotary_base)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(distances, pos_scores, "-o", ms=3)
ax.set(title="Previous-token head: score of the mean query and key", xlabel="query - key distance", ylabel="score")
plt.show()
print(f"highest score at distance {int(distances[pos_scores.argmax()])}; "
      f"score at 1 minus the mean at 2..5: {pos_scores[1] - pos_scores[2:6].mean():.2f}")

# %% [markdown]
# **Reveal.** The curve peaks at the distance printed above: the head's preference is written in its
# positional QK circuit, independent of the tokens (lesson 4, section 9, showed that its $W_Q$ and
# $W_K$ read the embedding part that all tokens share).
#
# ## 9. In-context loss by position
#
# Olsson et al. summarise induction by the **in-context loss**: on text, the loss at late positions
# falls below the loss at early ones once induction heads exist. On a random sequence of 15 tokens
# repeated twice, the first half is unpredictable and the second half is predictable by copying.
#
# **Predict first:** plotted over training, does the second-half loss fall gradually or suddenly, and
# when?

# %%
L_REP = 15
rep = repeated_random_tokens(256, L_REP, (0, TASK.vocab_size), torch.Generator().manual_seed(1))
loss_by_pos = []
for i in range(len(run)):
    with torch.no_grad():
        logp = torch.log_softmax(run.load(i)(rep)[:, :-1], -1).gather(-1, rep[:, 1:, None])[..., 0]
    loss_by_pos.append(-logp.mean(0).numpy())
loss_by_pos = np.array(loss_by_pos)  # [checkpoint, position]
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
axes[0].plot(run.steps, loss_by_pos[:, : L_REP - 1].mean(1), label="first half (nothing to copy)")
axes[0].plot(run.steps, loss_by_pos[:, L_REP:].mean(1), label="second half (copyable)")
axes[0].axhline(np.log(TASK.vocab_size), color="gray", ls="--", label="log(vocab): uniform guess")
axes[0].set(title="Loss on repeated random tokens", xlabel="step", ylabel="cross-entropy")
axes[0].legend(fontsize=8)
im = axes[1].imshow(loss_by_pos.T, aspect="auto", origin="lower", cmap="viridis",
                    extent=(run.steps[0], run.steps[-1], 1, 2 * L_REP - 1))
axes[1].set(title="Loss by position over training", xlabel="step", ylabel="position of the predicted token")
plt.colorbar(im, ax=axes[1])
plt.tight_layout()
plt.show()
print(f"final loss: first half {loss_by_pos[-1, : L_REP - 1].mean():.2f}, second half {loss_by_pos[-1, L_REP:].mean():.2f} "
      f"(uniform guess {np.log(TASK.vocab_size):.2f})")

# %% [markdown]
# ## 10. Pool size: the curve, with error bars
#
# Lesson 4 compared two single-seed runs (pools of 20 and 3000). Here is the curve: six pool sizes,
# three seeds each, with the lesson's 600-step schedule and with 1500 steps. Thirty-six trainings do
# not fit in this notebook's time limit, so `benchmarks/bench_pool_size.py` ran them (`--steps 1500
# --out ...` for the second set) and recorded the numbers and its measured time in
# `benchmarks/results/`; this cell plots those files.
#
# **Predict first:** is there a pool size below which the OOD error stays high? Does training longer
# move it?

# %%
RESULTS = Path(toyattn.__file__).resolve().parents[1] / "benchmarks" / "results"
for name in ("pool_size_sweep.json", "pool_size_sweep_1500.json"):
    if not (RESULTS / name).exists():
        raise FileNotFoundError(f"{RESULTS / name} is missing; it comes with the course repository "
                                "(or run benchmarks/bench_pool_size.py from a clone to make it).")
sweeps = {name: json.loads((RESULTS / name).read_text()) for name in ("pool_size_sweep.json", "pool_size_sweep_1500.json")}
sizes = sorted({r["pool_size"] or 0 for r in sweeps["pool_size_sweep.json"]["runs"]})
label = lambda s: "fresh" if s == 0 else str(s)  # noqa: E731
fig, axes = plt.subplots(1, 3, figsize=(16, 3.6))
x = np.arange(len(sizes))
for k, sweep in enumerate(sweeps.values()):
    stats = {s: np.array([[r["id_error"], r["ood_error"], r["match_largest_4"]] for r in sweep["runs"]
                          if (r["pool_size"] or 0) == s]) for s in sizes}
    for col, ax, name in ((0, axes[0], "ID error"), (1, axes[1], "OOD error"), (2, axes[2], "QK-OV matching, rank 4")):
        ax.errorbar(x + 0.1 * k, [stats[s][:, col].mean() for s in sizes], yerr=[stats[s][:, col].std() for s in sizes],
                    fmt="-o", capsize=4, label=f"{sweep['steps']} steps")
        ax.set(title=f"{name} (mean +- std over 3 seeds)", ylim=(0, 1.05))
    print(f"{sweep['steps']} steps: {len(sweep['runs'])} runs in {sweep['seconds']:.0f} s (recorded by bench_pool_size.py)")
    for s in sizes:
        print(f"  {label(s):>6}: ID {stats[s][:, 0].mean():.3f} +- {stats[s][:, 0].std():.3f}, "
              f"OOD {stats[s][:, 1].mean():.3f} +- {stats[s][:, 1].std():.3f}, matching {stats[s][:, 2].mean():.3f}")
axes[2].axhline(m_base, color="gray", ls="--", label="random baseline")
for ax in axes:
    ax.set_xticks(x, [label(s) for s in sizes])
    ax.set_xlabel("training patterns (pool size)")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reveal.** Read the printed tables. The smallest pools are memorised: their ID error is low and
# their OOD error stays high, with a matching near or below the baseline, at both schedules.
# Pools in between can be too large to memorise and still too small to push the model to the rule:
# both errors stay high. The largest pool and fresh patterns are where the rule, and with it a
# matching above the baseline, appears. Their error bars are wide because the rule is learned
# abruptly, at a step that varies from seed to seed: after 600 steps some seeds have it and some do
# not yet; after 1500 steps more of them are on their way (compare the two OOD means).
#
# %% [markdown]
# **Reveal.** Read the printed table. The smallest pools are memorised: their ID error is low and
# their OOD error stays high, with a matching near the baseline. Pools in between can be too large to
# memorise in 600 steps and still too small to push the model to the rule: both errors stay high.
# The largest pool and fresh patterns are where the rule, and with it a matching above the baseline,
# appears; where their error bar is wide, some seeds learned in 600 steps and some did not yet (the
# rule is learned abruptly, at a step that varies from seed to seed).
#
# ## 11. The bridge in a real model: SmolLM2-135M
#
# SmolLM2-135M (30 layers, 9 query heads and 3 key/value heads per layer, `d_model` 576) ships with
# the course as a quantized GGUF file. `toyattn.models.llama.load_llama_gguf` runs it with the same
# hook points as the toy model (its forward pass is tested against `transformers`' Llama).
#
# We feed it random tokens repeated twice and score every head (Olsson et al.; ARENA):
# **previous-token score**: attention from $t$ to $t-1$; **induction score**: attention from $t$ in
# the second copy to $t - L + 1$, the token after the earlier occurrence. Both are averaged over the
# second copy's queries.
#
# **Predict first:** in which layers do you expect the induction heads, early, middle or late? And the
# previous-token heads relative to them?

# %%
from toyattn.models.llama import load_llama_gguf  # noqa: E402

llm = load_llama_gguf()
L_LLM = 40
llm_tokens = repeated_random_tokens(4, L_LLM, (1000, 20000), torch.Generator().manual_seed(0), prefix=1)
scores = head_scores(llm, llm_tokens, L_LLM)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, key in zip(axes, ("previous_token", "induction"), strict=True):
    im = ax.imshow(scores[key], aspect="auto", vmin=0, vmax=1, cmap="magma")
    ax.set(title=f"{key.replace('_', '-')} score", xlabel="head", ylabel="layer")
    plt.colorbar(im, ax=ax)
plt.tight_layout()
plt.show()
top_prev, top_ind = top_heads(scores["previous_token"], 5), top_heads(scores["induction"], 5)
print("top previous-token heads (layer, head, score):", [(layer, h, round(s, 2)) for layer, h, s in top_prev])
print("top induction heads      (layer, head, score):", [(layer, h, round(s, 2)) for layer, h, s in top_ind])

# %%
# The induction map again, interactive: hover a head to read its layer, index and score.
n_layers_llm, n_heads_llm = np.shape(scores["induction"])
heatmap_plotly(scores["induction"], [f"L{i}" for i in range(n_layers_llm)], [f"H{h}" for h in range(n_heads_llm)],
               title="SmolLM2: induction score (hover a head)", xlabel="head", ylabel="layer",
               colorscale="Magma", zmin=0, zmax=1, annotate=False)

# %% [markdown]
# **Reveal.** The heatmaps and the printed lists answer it: a few heads have induction scores far
# above the rest, in the middle layers, and strong previous-token heads exist in earlier layers (some
# previous-token heads also sit in later layers, where they may serve other circuits).
#
# ## 12. Composition and matching in the real model
#
# Now the two bridge measures for every head that could feed the top induction head's keys: every head
# in an earlier layer, as K-composition and as QK-OV matching at rank 10 (Song et al.'s rank for real
# models), both with the norm gains folded in, each against its random baseline.

# %%
R_LLM = 10
li, hi, _ = top_ind[0]
reader_llm = head_factors(llm, li, hi)
writers = {(layer, h): head_factors(llm, layer, h) for layer in range(li) for h in range(llm.cfg.n_heads)}
kcomp = np.full((li, llm.cfg.n_heads), np.nan)
match = np.full((li, llm.cfg.n_heads), np.nan)
for (layer, h), w in writers.items():
    kcomp[layer, h] = k_composition_factored(w, reader_llm)
    match[layer, h] = pair_matching(w, reader_llm, R_LLM)
kb, kb_std = K.random_composition_baseline(llm.cfg.d_model, llm.cfg.d_head, n_runs=30)
mb, mb_std = random_matching_baseline(llm.cfg.d_model, R_LLM, n_runs=50)
fig, axes = plt.subplots(1, 2, figsize=(11, 5))
for ax, M, base, name in ((axes[0], kcomp, kb, "K-composition"), (axes[1], match, mb, f"QK-OV matching, rank {R_LLM}")):
    im = ax.imshow(M / base, aspect="auto", cmap="viridis")
    ax.set(title=f"{name} into L{li}H{hi}\n(ratio to the random baseline)", xlabel="writer head", ylabel="writer layer")
    for layer, h, _ in top_prev:
        if layer < li:
            ax.plot(h, layer, "r+", ms=10)
    plt.colorbar(im, ax=ax)
plt.tight_layout()
plt.show()
order_k, order_m = np.argsort(-kcomp, axis=None)[:5], np.argsort(-match, axis=None)[:5]
print(f"random baselines: K-composition {kb:.3f} +- {kb_std:.3f}, matching {mb:.3f} +- {mb_std:.3f}")
print("top writers by K-composition:", [divmod(int(i), llm.cfg.n_heads) for i in order_k])
print("top writers by matching:     ", [divmod(int(i), llm.cfg.n_heads) for i in order_m])
prev_in_range = [(layer, h) for layer, h, _ in top_prev if layer < li]
print("top previous-token heads before it (red +):", prev_in_range,
      "K-comp ratio", [round(float(kcomp[p] / kb), 2) for p in prev_in_range],
      "matching ratio", [round(float(match[p] / mb), 2) for p in prev_in_range])

# %% [markdown]
# Both maps are drawn as ratios to their random baselines (1 = chance), with the top previous-token
# heads marked. Read them with the printed lists: which writer heads stand out, and whether the two
# measures rank the same heads first. A top previous-token head is among the five strongest writers
# by both measures (also checked in `tests/test_llama.py`), and most of the strong writers sit in the
# few layers just below the induction head. They need not: K-composition is weighted by singular values, so a
# writer with a few very strong output directions in the reader's key space scores high, while the
# matching counts one well-aligned direction among the top 10 regardless of its strength. In a
# 576-dimensional residual stream with 270 heads, many heads write into overlapping subspaces, so
# neither map is a clean "one previous-token head feeds one induction head" picture.
#
# ## 13. The matching of the top pairs against random head pairs
#
# Song et al. compare the matching of previous-token -> induction pairs with random pairs. Here:
# every pair of a top-5 previous-token head and a top-5 induction head in a later layer, against 300
# random head pairs (writer in an earlier layer than the reader) and against random Gaussian matrices.
#
# **Predict first:** will the top pairs sit in the upper tail of the random-pair distribution?

# %%
pairs = [((lp, hp), (lq, hq)) for lp, hp, _ in top_prev for lq, hq, _ in top_ind if lp < lq]
top_match = np.array([pair_matching(head_factors(llm, *a), head_factors(llm, *b), R_LLM) for a, b in pairs])
rng = np.random.default_rng(0)
random_pairs = []
while len(random_pairs) < 300:
    la, lb = sorted(rng.choice(llm.cfg.n_layers, 2, replace=False))
    random_pairs.append(((int(la), int(rng.integers(llm.cfg.n_heads))), (int(lb), int(rng.integers(llm.cfg.n_heads)))))
factors = {}
get = lambda key: factors.setdefault(key, head_factors(llm, *key))  # noqa: E731
rand_match = np.array([pair_matching(get(a), get(b), R_LLM) for a, b in random_pairs])
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.hist(rand_match, bins=30, density=True, color="gray", alpha=0.7, label="random head pairs (300)")
for v in top_match:
    ax.axvline(v, color="C3", lw=1)
ax.axvline(mb, color="k", ls="--", label="random Gaussian matrices")
ax.plot([], [], color="C3", label=f"top previous-token -> induction pairs ({len(pairs)})")
ax.set(title=f"QK-OV matching (rank {R_LLM}) in SmolLM2-135M", xlabel="largest cosine", ylabel="density")
ax.legend(fontsize=8)
plt.show()
pct = [np.mean(rand_match < v) for v in top_match]
print(f"top pairs: median {np.median(top_match):.3f}; random head pairs: median {np.median(rand_match):.3f}, "
      f"90th percentile {np.quantile(rand_match, 0.9):.3f}; Gaussian baseline {mb:.3f}")
print(f"percentile of each top pair among random head pairs: median {np.median(pct):.0%}, "
      f"{np.mean(np.array(pct) > 0.9):.0%} of them above the 90th")

# %% [markdown]
# **Reveal.** Compare the red lines with the gray histogram, and the printed percentiles. The top
# previous-token -> induction pairs sit in the upper tail of the random head pairs (the printed median
# percentile; `tests/test_llama.py` checks that it is above 75%), though not every one of them does:
# a strong previous-token head need not feed a given induction head. Random *head pairs* sit only a
# little above random *Gaussian* matrices (the dashed line) here, but it is the random heads that are
# the fair baseline for a trained model. The toy model's bridge (sections 4-5) was clean; in a real
# model it is one signal among many.

# %% [markdown]
# ## 14. A causal test in the real model
#
# Weights and attention patterns are still correlations. As on the toy (section 2), silence one head
# at a time (zero ablation) and measure SmolLM2's loss on the second copy of the repeated tokens: the
# top induction head, the strongest previous-token head in an earlier layer, and, as a control, five
# random heads.
#
# **Predict first:** one head out of 270: does removing it change the second-copy loss at all?

# %%
def second_copy_loss(logits):
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, llm_tokens[:, 1:, None])[..., 0]
    return float(-logp[:, -(L_LLM - 1):].mean())  # targets in the second copy that have a twin before them


with torch.no_grad():
    clean_loss = second_copy_loss(llm(llm_tokens))
prev_feeder = max(((layer, h, sc) for layer, h, sc in top_heads(scores["previous_token"], 20) if layer < li), key=lambda t: t[2])
chosen = {f"top induction head L{li}H{hi}": (li, hi),
          f"top previous-token head before it L{prev_feeder[0]}H{prev_feeder[1]}": prev_feeder[:2]}
special = {(layer, h) for layer, h, _ in top_prev + top_ind}
rng_heads = np.random.default_rng(1)
while len(chosen) < 7:
    head = (int(rng_heads.integers(llm.cfg.n_layers)), int(rng_heads.integers(llm.cfg.n_heads)))
    if head not in special:
        chosen[f"random head L{head[0]}H{head[1]}"] = head
ablation_loss = {name: second_copy_loss(ablate_head(llm, llm_tokens, *head)) for name, head in chosen.items()}
fig, ax = plt.subplots(figsize=(8, 3))
ax.barh(list(ablation_loss), [v - clean_loss for v in ablation_loss.values()], color=["C3", "C1"] + ["gray"] * 5)
ax.set(xlabel="second-copy loss increase (nats)", title="Zero-ablating one head of SmolLM2-135M")
ax.invert_yaxis()
plt.show()
print(f"clean second-copy loss {clean_loss:.2f} nats")
for name, v in ablation_loss.items():
    print(f"{name:>45}: {v:.2f} ({v - clean_loss:+.2f})")

# %% [markdown]
# **Reveal.** Read the printed losses. The random heads change the loss much less than the two heads
# of the circuit. The top induction head matters, but the model keeps some copying without it (other
# induction heads share the work). The previous-token head that feeds them can matter even more:
# without the "previous token" it writes, every induction head downstream loses its key. The robust
# version is tested (`tests/test_llama.py`): each of the two circuit heads raises the loss by more than
# a nat, and by more than every random control head.
#
# ## What you saw, and what to try next
#
# * **Causal:** ablating the previous-token head collapses induction; patching its clean output
#   mends "where to look" and not "what to copy"; removing the shared subspace hurts far more than
#   removing random subspaces.
# * **Standard tools:** K-composition and the principal-angle matching both leave their baselines as
#   the circuit forms, but measure different things (weighted overlap vs best-aligned directions).
#   The induction head copies (its full OV circuit); the previous-token head's preference is in its
#   positional QK circuit; folding the layer norm is an exact identity up to one scale per token.
# * **Real model:** induction and previous-token heads are easy to find by their attention; their
#   weight-level bridge must be judged against random *heads*, not random matrices; and ablating them,
#   unlike random heads, breaks in-context copying.
#
# **Try next:**
# 1. Ablate the top three induction heads of SmolLM2 at once (one hook per head on
#    `blocks.{l}.attn.hook_z`): how much copying is left?
# 2. Repeat section 4 with $r = 2$ and $r = 8$: from which rank on does the shared subspace beat random ones?
# 3. Use RMS instead of largest (`pair_matching(..., summary="rms")`) in section 13.
# 4. Run `benchmarks/bench_pool_size.py --steps 3000 --out /tmp/sweep.json` (minutes): do all fresh seeds learn?
# 5. Do the exercises in `exercises/05_induction_circuits.ipynb`.
