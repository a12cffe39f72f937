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
# Lesson 4 read the induction circuit from the weights: the second block's keys read the subspace that
# the first block's OV circuit writes. A correlation in the weights is not yet a cause. This lesson
# **intervenes** on the trained toy model, reads it with the **standard circuit tools** of the
# interpretability literature, and then looks for the same bridge in a **real language model**,
# SmolLM2-135M-Instruct, which ships with the course.
#
# **Naming.** Layers and heads are counted from 0, as in the code: `L0H0` is head 0 of the first
# block (`blocks.0`), the toy's previous-token head; `L1H0` is the toy's induction head (`blocks.1`).
# SmolLM2's heads are named the same way (`L18H6` is head 6 of `blocks.18`). Lesson 4 counts the toy's
# layers from 1: its "layer 1" (previous-token head) is `L0H0` here, and its "layer 2" (induction head,
# "layer 2's $W_{qk}$") is `L1H0`.
#
# **Learning goals.** After this lesson you can
# 1. test a circuit causally: ablate a head (zero and mean), patch its output from a clean run into a
#    corrupted one, and remove a subspace from what it writes, each with a control;
# 2. compute the K-composition score of two heads against a random baseline, and say where it agrees
#    and disagrees with lesson 4's principal-angle matching;
# 3. read a head's full OV circuit and its copying score, the positional QK circuit of a
#    previous-token head, and state exactly what folding a layer norm into the weights does, and what
#    the biases and the rotary positions add to the score;
# 4. find previous-token and induction heads in a real model from their attention on repeated random
#    tokens, test whether their QK-OV matching and K-composition stand out from random head pairs,
#    and test the circuit causally with mean ablation and error bars.
#
# Sources (details in `../docs/references.md`): Song, Xu & Zhong, *Out-of-distribution
# generalization via composition: a lens through induction heads in Transformers* (arXiv 2408.09503);
# Elhage et al., *A Mathematical Framework for Transformer Circuits* (Anthropic, 2021,
# transformer-circuits.pub/2021/framework); Olsson et al.,
# *In-context Learning and Induction Heads* (2022, arXiv 2209.11895); ARENA 3.0, chapter 1.2.
# Conventions are the course's row vectors: $W_{qk} = W_Q R W_K^\top/\sqrt{d_{head}}$ (score
# $x_q W_{qk} x_k^\top$), $W_{ov} = W_V W_O$ (a source residual $x$ writes $x W_{ov}$).
#
# The exercises for this lesson are in `exercises/05_induction_circuits.ipynb`.

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import toyattn
from toyattn.circuits import composition, matching
from toyattn.circuits.ablation import ablate_head, orthonormal_basis, project_out, random_subspace
from toyattn.circuits.copy_scoring import (
    copy_accuracy,
    copy_loss,
    copy_positions,
    corrupt_first_copy,
    offset_parity_mask,
)
from toyattn.circuits.copy_task import (
    CopyTaskConfig,
    TrainConfig,
    default_model_config,
    make_test_sets,
    train_copy_model,
    zipf_probs,
)
from toyattn.circuits.detection import head_scores, repeated_random_tokens, top_heads
from toyattn.circuits.head_circuits import (
    head_factors,
    key_directions,
    output_directions,
    ov_factors,
    ov_matrix,
    qk_factors,
    qk_matrix,
    token_matrices,
)
from toyattn.device import limit_blas_threads, seed_everything
from toyattn.plotting import heatmap_plotly
from toyattn.sentences.interventions import patch_activation, patch_positions

seed_everything(0)
# The matrices here are small: one thread each for PyTorch and NumPy keeps threads from spinning against
# each other on a busy shared machine, where several BLAS threads made section 12 many times slower.
torch.set_num_threads(1)
limit_blas_threads(1)

# %% [markdown]
# ## 1. The model: lesson 4's run
#
# The same task and model as lesson 4 (2 layers, one head each, rotary positions, layer norm, no
# MLP, `d_model` 32), trained on fresh patterns for 600 steps, a checkpoint every 25 steps. The code
# below says whether this seed learned the circuit, and everything after it assumes a model that did
# (whether every seed does is section 10's question).

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
# Is L0H0 needed for the second copy? Two ways to silence a head (`toyattn.circuits.ablation.ablate_head`,
# a temporary hook on `blocks.0.attn.hook_z`):
#
# * **zero ablation**: its output becomes 0;
# * **mean ablation**: its output at each position becomes its *average* over a batch of sequences,
#   so it still writes what it writes on average, but nothing about *this* sequence.
#
# **Predict first:** the accuracy on the second copy is printed above. After each ablation, is it
# close to the clean accuracy, half of it, or near chance (a few percent)? And if we silence the
# induction head L1H0 instead?

# %%
HEADS = {"L0H0 (previous-token)": (0, 0), "L1H0 (induction)": (1, 0)}
ablated = {(name, mode): copy_accuracy(ablate_head(model, ood.tokens, *head, mode), ood)
           for name, head in HEADS.items() for mode in ("zero", "mean")}
chance = 1 / TASK.vocab_size

fig, ax = plt.subplots(figsize=(7, 3))
labels = ["clean"] + [f"{n}\n{m} ablation" for (n, m) in ablated]
ax.bar(labels, [clean_acc, *ablated.values()], color=["C0"] + ["C3", "C1"] * 2)
ax.axhline(chance, color="gray", ls="--", label=f"chance (1/{TASK.vocab_size})")
ax.set(ylabel="accuracy, second copy (OOD)", ylim=(0, 1), title="Ablating either head of the circuit")
ax.tick_params(axis="x", labelsize=7)
ax.legend(fontsize=8)
plt.show()
for (name, mode), acc in ablated.items():
    print(f"{name:>22}, {mode} ablation: accuracy {clean_acc:.3f} -> {acc:.3f} "
          f"({acc / clean_acc:.0%} of the clean accuracy; chance is {chance:.3f})")
n_half = sum(acc < 0.5 * clean_acc for acc in ablated.values())
print(f"In this run, {n_half} of the {len(ablated)} ablations take away more than half of the accuracy.")

# %% [markdown]
# **Reveal.** Look at how close each bar comes to the dashed chance line, and at the printed shares of
# the clean accuracy. Without L0H0's "my previous token was ...", L1H0 has nothing to match its query
# against; without L1H0, nothing reads the match. A drop under **mean** ablation cannot be blamed on
# an unusual all-zero input: where zero and mean ablation agree, the drop comes from losing what the
# head says about this sequence. The tests (`tests/test_circuits_ablation.py`) check the robust version
# on the runs listed there, two seeds (fresh patterns seed 0, also trained with 2 threads, and a pool
# of 1000 patterns seed 2; on a machine where one of them does not learn in 600 steps, another seed
# takes its place): on each that learned the circuit, both ablations of L0H0 take away more than half
# of the accuracy.
#
# ## 3. Patching: what exactly does the previous-token head carry?
#
# Ablation says the head is needed; patching says *what for*. We corrupt the input and copy the
# head's clean output back in (lesson 1's tool, on `blocks.0.attn.hook_z`). The corruption is chosen
# so that the experiment has its own control: in the **first copy**, every token at an odd offset
# (1, 3, 5, ...) is replaced by a token that is not in the pattern; the second copy is untouched.
#
# * A target at an **even** offset $j$ in the second copy: its twin in the first copy kept its own
#   token, but the token *before* the twin was replaced. The induction head cannot find the twin
#   (L0H0 wrote the wrong "previous token" there): **where to look** is broken.
# * A target at an **odd** offset: its twin's *own* token was replaced. Even looking in the right
#   place, L1H0 would copy the wrong token: **what to copy** is broken.
#
# We patch three ways: at every position (`toyattn.sentences.interventions.patch_activation`), only at the
# **first copy's** positions (the keys L1H0 searches) and only at the **second copy's** positions
# (the queries that search), each with `toyattn.sentences.interventions.patch_positions`. Two metrics: the
# accuracy, and the **loss** on the targets (cross-entropy in nats, `copy_loss`), which also moves
# when the right token gains probability without becoming the top guess. For each we report the
# **share recovered**, $(m_\text{patched} - m_\text{corrupted}) / (m_\text{clean} - m_\text{corrupted})$:
# 0 means the patch left the corrupted run as it was, 1 means it restored the clean run.
#
# **Predict first:** which targets recover, even, odd, both or neither? And which of the two partial
# patches, keys or queries, does the work?

# %%
HOOK_Z0 = "blocks.0.attn.hook_z"
corrupted_tokens = corrupt_first_copy(ood, TASK.vocab_size, torch.Generator().manual_seed(0))
targets = {"even": offset_parity_mask(ood, 0), "odd": offset_parity_mask(ood, 1)}
with torch.no_grad():
    corrupted_logits = model(corrupted_tokens)
patch_runs = {
    "clean": clean_logits,
    "corrupted": corrupted_logits,
    "patched: all positions": patch_activation(model, corrupted_tokens, ood.tokens, HOOK_Z0),
    "patched: first copy (keys)": patch_positions(model, corrupted_tokens, ood.tokens, HOOK_Z0, copy_positions(ood, "first")),
    "patched: second copy (queries)": patch_positions(model, corrupted_tokens, ood.tokens, HOOK_Z0, copy_positions(ood, "second")),
}
metric = {"accuracy": copy_accuracy, "loss": copy_loss}
table = {run_name: {(m, part): fn(logits, ood, mask) for m, fn in metric.items() for part, mask in targets.items()}
         for run_name, logits in patch_runs.items()}


def share_recovered(run_name, key):
    """0: the patched run scores like the corrupted one; 1: like the clean one."""
    return (table[run_name][key] - table["corrupted"][key]) / (table["clean"][key] - table["corrupted"][key])


fig, axes = plt.subplots(1, 2, figsize=(13, 3.4))
x = np.arange(len(patch_runs))
for ax, m in zip(axes, metric, strict=True):
    ax.bar(x - 0.2, [table[r][(m, "even")] for r in patch_runs], 0.4, label="even offsets: 'where' broken")
    ax.bar(x + 0.2, [table[r][(m, "odd")] for r in patch_runs], 0.4, label="odd offsets: 'what' broken")
    ax.set_xticks(x, [r.replace(": ", "\n") for r in patch_runs], fontsize=7)
    ax.set(ylabel=m if m == "accuracy" else "loss (nats)", title=f"Patching L0H0's clean output: {m}")
    ax.legend(fontsize=8)
axes[0].set_ylim(0, 1)
plt.tight_layout()
plt.show()
for r in patch_runs:
    print(f"{r:>31}: accuracy even {table[r][('accuracy', 'even')]:.3f} odd {table[r][('accuracy', 'odd')]:.3f}; "
          f"loss even {table[r][('loss', 'even')]:.2f} odd {table[r][('loss', 'odd')]:.2f} nats")
for r in list(patch_runs)[2:]:
    print(f"{r}: share recovered on even offsets {share_recovered(r, ('accuracy', 'even')):.2f} (accuracy), "
          f"{share_recovered(r, ('loss', 'even')):.2f} (loss); on odd offsets {share_recovered(r, ('accuracy', 'odd')):.2f} (accuracy), "
          f"{share_recovered(r, ('loss', 'odd')):.2f} (loss)")
z_runs = {name: model.run_with_cache(t, names_filter=HOOK_Z0)[1][HOOK_Z0][:, :, 0] for name, t in (("clean", ood.tokens), ("corrupted", corrupted_tokens))}
second_pos = copy_positions(ood, "second")
z_change = float((z_runs["clean"] - z_runs["corrupted"])[second_pos].norm() / z_runs["clean"][second_pos].norm())
print(f"The corruption changed L0H0's output at the second copy by {z_change:.0%} (relative norm), and patching it back there "
      f"recovers {share_recovered('patched: second copy (queries)', ('accuracy', 'even')):.2f} of the even-offset accuracy.")

# %% [markdown]
# **Reveal.** Compare the even and odd bars of each patched run, in both panels, and the printed
# shares. The full patch should mend the even offsets and not the odd ones if L0H0's output tells
# L1H0 **where** the twin is, while the token that is copied comes from the twin's own embedding,
# which the patch leaves corrupted (the patch replaces L0H0's output at the twin's position, but not
# the embedding that L1H0's value also reads there). A small recovery on the odd offsets (the printed
# odd-offset shares, loss more than accuracy) probably comes from that replaced part: L0H0's clean
# output at the twin's position may carry a little of the twin's own token too. The two partial patches say *where* that message is read: the
# first copy is where the corrupted "previous tokens" sit. The second copy's tokens are untouched,
# yet L0H0's output there does change (the last printed line: the head also attends to some earlier,
# corrupted positions); if patching it back recovers almost nothing, L1H0's queries do not use that
# part of L0H0's output. (Tested on the two seeds of `tests/test_circuits_ablation.py`: the full patch
# brings back more than half of the even-offset accuracy and loss, and the first-copy patch more than
# half of the even-offset accuracy; the odd-offset accuracy stays below 0.3 under the full patch and
# under the first-copy patch.)
#
# ## 4. Removing the shared subspace, against random subspaces
#
# Lesson 4's weight reading suggests that the **shared** subspace carries the circuit, not just any
# directions; here is a causal test of that. We remove, from what the first block's attention writes (`blocks.0.hook_attn_out`), the
# top-$r$ key directions of L1H0's QK circuit (the subspace that lesson 4 found aligned with L0H0's
# OV output), and compare with two controls: random $r$-dimensional subspaces (20 draws), and L0H0's
# **own** top-$r$ output directions (the strongest directions it writes, whether or not L1H0's keys
# read them). The circuits are read with the layer norm's gain folded in (section 6 says exactly
# what that means).
#
# **Predict first:** removing 4 of 32 directions from L0H0's output: how much accuracy do random
# directions cost? The shared ones? The writer's own strongest ones?

# %%
R = 4
g = torch.Generator().manual_seed(0)
writer, reader = head_factors(model, 0, 0), head_factors(model, 1, 0)
subspaces = {"shared (L1H0's top key directions)": key_directions(reader)[:, :R],
             "L0H0's own top output directions": output_directions(writer)[:, :R]}
removed_logits = {name: project_out(model, ood.tokens, 0, orthonormal_basis(B)) for name, B in subspaces.items()}
removed_acc = {name: copy_accuracy(lg, ood) for name, lg in removed_logits.items()}
random_acc = np.array([copy_accuracy(project_out(model, ood.tokens, 0, random_subspace(D, R, g)), ood) for _ in range(20)])

fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(random_acc, bins=20, range=(0, 1), color="gray", label=f"random {R}-dim subspaces (20 draws)")
for (name, acc), color in zip(removed_acc.items(), ("C3", "C2"), strict=True):
    ax.axvline(acc, color=color, lw=2, label=name)
ax.axvline(clean_acc, color="C0", ls="--", label="nothing removed")
ax.set(xlabel="accuracy, second copy (OOD)", ylabel="draws", title=f"Removing {R} directions from L0H0's output")
ax.legend(fontsize=8)
plt.show()
print(f"random subspaces removed: median accuracy {np.median(random_acc):.3f} "
      f"(min {random_acc.min():.3f}, max {random_acc.max():.3f}; nothing removed: {clean_acc:.3f})")
for name, acc in removed_acc.items():
    print(f"{name} removed: accuracy {acc:.3f}, lower than {np.mean(acc < random_acc):.0%} of the random draws")
_, cache0 = model.run_with_cache(ood.tokens, names_filter="blocks.0.hook_attn_out")
written = cache0["blocks.0.hook_attn_out"].reshape(-1, D).double()  # what the first block's attention writes
top_out = torch.from_numpy(output_directions(writer)[:, :R])
cos_shared_own = torch.linalg.svdvals(torch.from_numpy(subspaces["shared (L1H0's top key directions)"].T
                                                     @ subspaces["L0H0's own top output directions"])).numpy()
print("cosines of the principal angles between the two removed subspaces:", np.round(cos_shared_own, 2))
print(f"L0H0's top {R} output directions carry {float((written @ top_out).pow(2).sum() / written.pow(2).sum()):.0%} "
      f"of the squared norm of what it writes on this batch; a random {R}-dim subspace carries {R / D:.1%} on average.")
shared_acc, own_acc = removed_acc.values()


def per_sequence_accuracy(logits, batch):
    """[batch] share of each sequence's scored second-copy targets predicted right."""
    right = (logits[:, :-1].argmax(-1) == batch.tokens[:, 1:]) & batch.scored[:, 1:]
    return (right.sum(1) / batch.scored[:, 1:].sum(1)).double().numpy()


# the two removals are scored on the same targets: the error bar is that of the paired per-sequence differences
diff = per_sequence_accuracy(removed_logits["shared (L1H0's top key directions)"], ood) - per_sequence_accuracy(
    removed_logits["L0H0's own top output directions"], ood)
diff_se = diff.std(ddof=1) / np.sqrt(len(diff))
print(f"shared minus own removal: {diff.mean():+.3f} accuracy, paired standard error {diff_se:.3f} over {len(diff)} sequences")
if abs(diff.mean()) <= 2 * diff_se:
    verdict = ("and the two removals cannot be told apart on this batch (less than 2 paired standard errors): this "
               "experiment does not single out the shared subspace from L0H0's strongest output directions")
elif diff.mean() > 0:
    verdict = ("so this experiment does not single out the shared subspace: L0H0's strongest output directions, which "
               "overlap it (the cosines above), carry more of the circuit than the shared ones")
else:
    verdict = "so the directions L1H0's keys read matter more than the writer's strongest directions as such"
near = [name.split(" (")[0] for name, acc in removed_acc.items() if acc < 2 * chance]
print(f"In this run, removing L0H0's own top directions costs {clean_acc - own_acc:.3f} of accuracy ({own_acc:.3f} left) and "
      f"removing the shared ones {clean_acc - shared_acc:.3f} ({shared_acc:.3f} left), {verdict}. "
      + (f"Removing {' and '.join(near)} brings the accuracy near chance ({chance:.3f})." if near else
         f"Neither removal comes near chance ({chance:.3f}): {R} directions hold part of the circuit, not all of it."))

# %% [markdown]
# **Reveal.** Where does each colored line sit in the gray histogram? Random directions cost little
# when what L0H0 writes is concentrated in a few directions (the line "L0H0's top 4 output directions
# carry ..." measures how concentrated), so that a random 4-dimensional subspace catches only a small part of it. The shared
# directions cost more than most random draws (the printed share), which is what the weight reading
# predicts. The second control asks whether it is enough to remove *any* strong directions of the
# writer: if removing L0H0's own top output directions costs as much as removing the shared ones,
# the experiment cannot tell "the shared subspace" from "the writer's main output"; the printed
# cosines say how much the two subspaces overlap in this run. The verdict ranks the two removals only
# when their accuracies differ by more than 2 paired standard errors (per-sequence differences: both
# removals are scored on the same targets, and the targets of one sequence are not independent). The test asserts the
# robust part as a fraction (the shared removal worse than at least 80% of random draws, on the two
# seeds of `tests/test_circuits_ablation.py`), not as one run's numbers.
#
# ## 5. K-composition next to the principal-angle matching
#
# Elhage et al. measure how much one head reads what another writes by a **composition score**,
# $\mathrm{comp}(A, B) = \|AB\|_F / (\|A\|_F\|B\|_F)$. For K-composition the key side of L1H0 reads
# L0H0's output: $\mathrm{comp}(W_{ov}^1, (W_{qk}^2)^\top)$ in our convention (ARENA's formula).
# Random circuits do **not** score 0, so each score comes with a baseline of random circuits of the
# same shapes.
#
# **Predict first:** over training, do the two scores rise at the same step? Which one leaves its
# baseline further behind?

# %%
def bridge_scores(m, distance=0):
    W_ov = ov_matrix(head_factors(m, 0, 0))
    W_qk = qk_matrix(head_factors(m, 1, 0), distance, m.cfg.rotary_base)
    return composition.k_composition(W_ov, W_qk), matching.qk_ov_matching(W_qk, W_ov, R, "largest")


over_training = np.array([bridge_scores(run.load(i)) for i in range(len(run))])
k_base, k_std = composition.random_composition_baseline(D, model.cfg.d_head, n_runs=200)
m_base, m_std = matching.random_baseline(D, R, n_runs=50)

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


def first_step(condition):
    """The first checkpoint step where ``condition`` holds, or None."""
    hits = np.flatnonzero(condition)
    return run.steps[hits[0]] if len(hits) else None


leave_k = first_step(over_training[:, 0] > k_base + 2 * k_std)
leave_m = first_step(over_training[:, 1] > m_base + 2 * m_std)
ood_falls = first_step(np.array(run.history["ood_error"]) < 0.5)
print(f"In this run: K-composition first leaves its band at step {leave_k}, the matching at step {leave_m}, "
      f"and the OOD error first drops below 0.5 at step {ood_falls}.")

# %% [markdown]
# **Reveal.** Look at where each curve sits against its gray band at step 0 and at the end, and at
# the printed steps where each leaves its band and where the OOD error falls. Where the two scores
# agree, both see L1H0's keys start to read L0H0's output. One run gives one order of these events;
# lesson 4, section 6, trains three fresh seeds and shows how much the timing varies between them, so
# treat the printed steps as this run's, not as a clock. Where the two scores **differ**, and why:
#
# * The matching compares only the top-$r$ directions and ignores how strong they are; one shared
#   direction is enough for a large "largest cosine". It can jump to near 1 as soon as the leading
#   directions line up.
# * K-composition weighs every direction by its singular values in both circuits (a Frobenius norm of
#   the product), so it also counts everything else the two heads do: the parts of $W_{ov}^1$ that
#   L1H0's keys ignore pull it down. It stays far below 1 even for a working circuit; what matters
#   is its distance from the random baseline, printed in standard deviations.
# * With one head per layer there is only one pair, so the toy shows the two scores against their
#   baselines over training; the heatmap over many head pairs comes with the real model in section 12,
#   and the comparison with random *head pairs* in section 13.
#
# ## 6. What is computed: folding the layer norm, and the real query-key distance
#
# The second block does not read the residual stream $x$ itself but $\mathrm{LN}(x) = \gamma \odot (x -
# \bar{x})/\sigma(x) + \beta$ ($\sigma$ includes the norm's small $\epsilon$). This identity is exact
# (`toyattn.heads.weights.fold_norm`, tested in `tests/test_heads_weights.py`):
#
# $$\mathrm{LN}(x)\, W = \frac{x}{\sigma(x)}\, \tilde W + \beta W, \qquad \tilde W = C\, \mathrm{diag}(\gamma)\, W,
# \qquad C = I - \tfrac{1}{d}\mathbf{1}\mathbf{1}^\top .$$
#
# The folded $\tilde W$ reads the residual directions themselves. Put into a score (with
# $b_q = \beta W_Q + b_Q$, $b_k = \beta W_K + b_K$, the attention's own biases included; both are
# added *before* the rotary rotation, so the relative rotation $R(\delta)$ for the query-key distance
# $\delta$ sits in every term; $1/\sqrt{d_{head}}$ is left out):
#
# $$s(x_q, x_k) = \frac{x_q}{\sigma_q} \tilde W_Q R(\delta) \tilde W_K^\top \frac{x_k^\top}{\sigma_k}
# + \frac{x_q}{\sigma_q} \tilde W_Q R(\delta) b_k^\top + b_q R(\delta) \tilde W_K^\top \frac{x_k^\top}{\sigma_k}
# + b_q R(\delta) b_k^\top .$$
#
# * **Without rotary** ($R = I$) the second and fourth terms are the same for all keys of one query
#   and cancel in the softmax, and if also $b_q = 0$, $1/\sigma_q$ is a temperature for that query.
#   **With rotary** neither holds: through $R(\delta)$ the second and fourth terms change with the
#   key's position (a positional preference: section 8 scores the mean query and key, whose bias parts are these terms),
#   the third depends on the query's position as well as on the key, and $1/\sigma_q$ scales only the
#   first two terms, so it can change which key wins when $b_q \neq 0$.
# * $1/\sigma_k$ differs from key to key and scales the first and third terms: a key with a small
#   $\sigma$ gets those terms magnified in absolute value.
#
# The cell below splits L1H0's scores in this run into the four terms (from the model's own
# activations, rotation included), checks that they add up to the model's scores, and measures how
# much each term varies across the keys that a second-copy query can see.

# %%
from toyattn.models.transformer import apply_rotary  # noqa: E402

attn1, ln1 = model.blocks[1].attn, model.blocks[1].ln1
_, cache1 = model.run_with_cache(ood.tokens, names_filter=["blocks.1.hook_resid_pre", "blocks.1.attn.hook_attn_scores"])
positions = torch.arange(ood.tokens.shape[1])
with torch.no_grad():
    normed1 = ln1(cache1["blocks.1.hook_resid_pre"]).double()
    parts = {}  # side -> (x part, bias part), both rotated, [batch, pos, d_head]
    for side, W, b in (("q", attn1.W_Q[0], attn1.b_Q[0]), ("k", attn1.W_K[0], attn1.b_K[0])):
        W, bias = W.double(), ln1.bias.double() @ W.double() + b.double()  # bias: b_q or b_k
        rot = lambda v: apply_rotary(v[:, :, None], positions, model.cfg.rotary_base)[:, :, 0]  # noqa: E731
        x_part = normed1 @ W - ln1.bias.double() @ W  # (x / sigma) W~: the norm's centring and gain folded in
        parts[side] = (rot(x_part), rot(bias.expand_as(x_part)))
term = {f"term {1 + 2 * i + j}": torch.einsum("bqe,bke->bqk", parts["q"][i], parts["k"][j]) / np.sqrt(model.cfg.d_head)
        for i in range(2) for j in range(2)}
full = sum(term.values())
causal = torch.ones(len(positions), len(positions), dtype=torch.bool).tril()
query = copy_positions(ood, "second")[:, :, None] & causal  # [batch, query, key]: keys a second-copy query sees
rows = copy_positions(ood, "second")


def spread(t):
    """Max minus min over the visible keys, averaged over second-copy queries."""
    return float((t.masked_fill(~query, -np.inf).amax(-1) - t.masked_fill(~query, np.inf).amin(-1))[rows].mean())


def top_key(t):
    return t.masked_fill(~query, -np.inf).argmax(-1)[rows]


model_scores = cache1["blocks.1.attn.hook_attn_scores"][:, 0].double()
print(f"L1H0: the four terms add up to the model's scores (largest difference {float((full - model_scores)[query].abs().max()):.1e})")
print("spread across the keys a second-copy query sees (max - min, mean over queries): "
      + ", ".join(f"{name} {spread(t):.2f}" for name, t in term.items()) + f"; full score {spread(full):.2f}")
changed = {"dropping terms 2 and 4": top_key(term["term 1"] + term["term 3"])}
for c in (0.5, 2.0):
    changed[f"1/sigma_q scaled by {c}"] = top_key(c * (term["term 1"] + term["term 2"]) + term["term 3"] + term["term 4"])
flips = {name: float(np.mean((top_key(full) != k).numpy())) for name, k in changed.items()}
print("In this run the top key of a second-copy query changes for "
      + "; ".join(f"{share:.1%} of the queries when {name}" for name, share in flips.items())
      + (": these terms rarely decide the winner here, but they do decide it sometimes." if 0 < max(flips.values()) < 0.1 else
         "." if max(flips.values()) == 0 else ": these terms often decide the winner here."))

# %% [markdown]
# Compare the spreads of terms 2 and 4, which would cancel without rotary, with the full score's
# spread, and read in the last line how often they and $1/\sigma_q$ decide which key wins. So the folded
# $W_{qk}$ (the first term) says which residual directions the two sides read; it is not the whole
# score. Lesson 4 used the unfolded weights; sections 4, 5, 7, 12 and 13 use the folded ones, and the
# rest of this section compares the two.
#
# With rotary positions the circuit also depends on the query-key distance. The induction head's
# query sits in the second copy at position $s + j$ and reads the key at $f + j + 1$, so the real
# distance is $s - f - 1 = L + \text{gap} - 1$, not 0.
#
# **Predict first:** is the matching at the real distances lower than at distance 0?

# %%
real_distances = sorted(set((ood.second - ood.first - 1).tolist()))


def matching_at(m, distance, fold):
    W_qk = qk_matrix(head_factors(m, 1, 0, fold=fold), distance, m.cfg.rotary_base)
    return matching.qk_ov_matching(W_qk, ov_matrix(head_factors(m, 0, 0, fold=fold)), R, "largest")


checkpoints = range(0, len(run), 2)
loaded = [run.load(i) for i in checkpoints]
curves = {
    "distance 0, unfolded (lesson 4)": [matching_at(m, 0, False) for m in loaded],
    "distance 0, LN folded": [matching_at(m, 0, True) for m in loaded],
    "real distances (mean), LN folded": [np.mean([matching_at(m, d, True) for d in real_distances]) for m in loaded],
}
fig, ax = plt.subplots(figsize=(7, 3.4))
for name, ys in curves.items():
    ax.plot([run.steps[i] for i in checkpoints], ys, "-o", ms=3, label=name)
ax.axhline(m_base, color="gray", ls="--", label="random baseline")
ax.set(title=f"QK-OV matching (rank {R}) over training", xlabel="step", ylabel="largest cosine", ylim=(0, 1.05))
ax.legend(fontsize=8)
plt.show()
print(f"real query-key distances in the OOD batch: {real_distances} (the third curve averages the matching over all of them)")
for name, ys in curves.items():
    print(f"{name:>34}: {ys[0]:.3f} at step 0 -> {ys[-1]:.3f} at the end")
end = {name: ys[-1] for name, ys in curves.items()}
print(f"In this run, folding changes the final matching by {end['distance 0, LN folded'] - end['distance 0, unfolded (lesson 4)']:+.3f}; "
      f"the real distances change it by {end['real distances (mean), LN folded'] - end['distance 0, LN folded']:+.3f} "
      f"(random baseline {m_base:.3f}).")

# %% [markdown]
# **Reveal.** Compare the three curves and the printed gaps. If the unfolded curve also rises, folding
# the gain does not create the alignment; if the real-distance curve ends close to the distance-0
# one, the key directions L1H0 reads change little under the rotary matrix at these distances
# (lesson 4, section 8, ends with a hint on why a rotation can leave them nearly in place).
#
# ## 7. The full OV circuit and the copying score of the induction head
#
# What does L1H0 write into the logits when it attends to a token? Its **full OV circuit** maps a
# token's embedding through the head to the unembedding, $W_E\, W_{ov}\, W_U$ (`[vocab, vocab]`,
# entry $[a, b]$: how much attending to token $a$ raises the logit of token $b$; the norms' gains
# folded in, `toyattn.circuits.head_circuits.token_matrices`).
#
# **Predict first:** if L1H0 does what an induction head has to do, which entries of this matrix
# stand out?

# %%
W_E, W_U = token_matrices(model)
ov = {"L1H0 (induction)": ov_matrix(head_factors(model, 1, 0)), "L0H0 (previous-token)": ov_matrix(head_factors(model, 0, 0))}
full_ov = composition.full_ov_circuit(W_E, ov["L1H0 (induction)"], W_U)
fig, ax = plt.subplots(figsize=(4.5, 4))
im = ax.imshow(full_ov, cmap="RdBu_r", vmin=-np.abs(full_ov).max(), vmax=np.abs(full_ov).max())
ax.set(title="Full OV circuit of L1H0", xlabel="output logit of token", ylabel="attended token")
plt.colorbar(im)
plt.show()

# %% [markdown]
# **Reveal.** Look for the diagonal: a head that copies raises the logit of the very token it
# attends to. Two summaries put numbers on it:
#
# * an **eigenvalue score**: Elhage et al. read copying from the eigenvalues of the full OV circuit
#   (mostly positive: the head raises the logit of the token it attends to); one number that sums
#   them up is $\sum\lambda / \sum|\lambda|$ (`composition.copying_eigen_score`), in $[-1, 1]$: mostly positive
#   real eigenvalues score near 1, mostly negative near $-1$. It is a summary, not a proof of copying: a non-normal matrix can have only positive
#   eigenvalues and still send token $a$ mostly to a *different* token $b$ (the cell below builds one).
# * ARENA's **top-1 test**: the share of tokens $a$ whose own logit is the largest in row $a$. It checks
#   the diagonal directly, which is why it is there next to the eigenvalue score.
#
# The previous-token head L0H0 is printed next to it: its output is meant for L1H0's keys, not for
# the unembedding, so nothing requires its direct path to the logits to copy. Look at the **sign** of
# its two scores, not only their size: near 0 means its direct path ignores the token it attends
# to; strongly negative means it *lowers* the logit of that token (anti-copying).

# %%
for name, W_ov in ov.items():
    print(f"{name:>22}: eigenvalue copying score {composition.copying_eigen_score(W_E, W_ov, W_U):+.3f}, "
          f"top-1 copying {composition.copying_top1(composition.full_ov_circuit(W_E, W_ov, W_U)):.2f}")
shift = np.eye(3) + 3 * np.eye(3, k=1)  # eigenvalues all 1, yet rows 0 and 1 favour the next token
print(f"a non-normal example {shift.tolist()}: eigenvalue score {composition.copying_eigen_score(np.eye(3), shift, np.eye(3)):+.2f}, "
      f"top-1 copying {composition.copying_top1(shift):.2f}")

# %% [markdown]
# Read the two printed lines for the heads together: a head that copies scores near 1 on **both**
# (the tests check both above 0.5 for the induction head on the two seeds of
# `tests/test_circuits_ablation.py`). The example in the last line scores +1 on eigenvalues and only 1/3
# on the top-1 test. The line printed below says which way L0H0 points in this run. A strongly
# negative score has a possible reason, which this lesson does not test: L0H0 attends to the
# previous token, and in a pattern drawn without repeats the next token is never the previous one,
# so lowering its logit costs nothing and helps a little. The tests check only the sign (negative on
# both seeds of `tests/test_circuits_ablation.py`).

# %%
prev_eig = composition.copying_eigen_score(W_E, ov["L0H0 (previous-token)"], W_U)
print(f"In this run L0H0's eigenvalue score is {prev_eig:+.3f}: "
      + ("it anti-copies, lowering the logit of the token it attends to." if prev_eig < -0.5 else
         "it copies the token it attends to." if prev_eig > 0.5 else "its direct path neither clearly copies nor anti-copies."))

# %% [markdown]
# ## 8. The positional QK circuit of the previous-token head
#
# Is L0H0's preference for a position written in its weights, independent of the tokens? With rotary
# positions its score for fixed input vectors depends only on the query-key distance $\delta$.
# Averaged over independent query and key tokens, the score is exactly the score of the **mean**
# query and key (it is bilinear): `composition.positional_qk_scores` evaluates it at every distance. The first
# block reads the layer-normed embedding directly (rotary models add no position embedding to the
# residual).
#
# **Predict first:** at which distance is the curve highest, and how far above its neighbours?

# %%
attn0 = model.blocks[0].attn
with torch.no_grad():
    normed = model.blocks[0].ln1(model.embed.W_E)  # [vocab, d_model]: the first block's input for each token
    q_mean = (normed @ attn0.W_Q[0] + attn0.b_Q[0]).mean(0).double().numpy()
    k_mean = (normed @ attn0.W_K[0] + attn0.b_K[0]).mean(0).double().numpy()
distances = np.arange(TASK.seq_len)
pos_scores = composition.positional_qk_scores(q_mean, k_mean, None, None, distances, model.cfg.rotary_base)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(distances, pos_scores, "-o", ms=3)
ax.set(title="L0H0: score of the mean query and key", xlabel="query - key distance", ylabel="score")
plt.show()

# %% [markdown]
# **Reveal.** Look for the peak at distance **1**, the previous token (the line below prints the peak
# and its margin for this run; `tests/test_circuits_ablation.py` checks the peak on its two seeds): where
# it is there, the head's preference, averaged over tokens, is written in its positional QK circuit
# (lesson 4, section 9, measures whether its $W_Q$ and $W_K$ read the embedding part that
# all tokens share, which is how a rotary head can prefer a distance whatever the tokens are).

# %%
print(f"highest score at distance {int(distances[pos_scores.argmax()])}; "
      f"score at 1 minus the mean at 2..5: {pos_scores[1] - pos_scores[2:6].mean():.2f}")

# %% [markdown]
# ## 9. Loss by position on a repeated random sequence
#
# Olsson et al. (arXiv 2209.11895) measure in-context learning on text with an **in-context learning
# score**: the loss at the 500th token of a context minus the loss at the 50th, averaged over
# examples of text. The toy's context
# is 32 tokens, so here is a cousin of it, the **repeated-sequence loss**: a random sequence of 15
# tokens drawn *without replacement* from the 24 ids (`distinct=True`: every token of the second
# half has exactly one earlier occurrence and one successor to copy, as in the toy's training
# patterns), then repeated once, so the second half is a copy of the first. Copying cannot help in
# the first half; from its second token on, the second half can be predicted by copying. The first
# half is not quite unpredictable either: its token $i$ is one of the $24 - i$ ids not seen yet, so
# the best possible loss there averages $\ln(24 - i)$ over its predicted tokens, below $\ln 24$.
#
# **Predict first:** plotted over training, does the second-half loss fall gradually or suddenly, and
# when? And where should the first-half loss end: at that best possible loss, at the uniform guess
# $\ln 24$, or above both?

# %%
L_REP = 15
rep_tokens = repeated_random_tokens(256, L_REP, (0, TASK.vocab_size), torch.Generator().manual_seed(1), distinct=True)
loss_by_pos = []
for i in range(len(run)):
    with torch.no_grad():
        logp = torch.log_softmax(run.load(i)(rep_tokens)[:, :-1], -1).gather(-1, rep_tokens[:, 1:, None])[..., 0]
    loss_by_pos.append(-logp.mean(0).numpy())
loss_by_pos = np.array(loss_by_pos)  # [checkpoint, position of the predicted token - 1]
first_half, second_half = loss_by_pos[:, : L_REP - 1].mean(1), loss_by_pos[:, L_REP:].mean(1)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
axes[0].plot(run.steps, first_half, label="first half (nothing to copy)")
axes[0].plot(run.steps, second_half, label="second half (copyable)")
zipf = zipf_probs(TASK.vocab_size, TASK.zipf_shift).double()
first_half_floor = float(np.mean(np.log(TASK.vocab_size - np.arange(1, L_REP))))  # token i: one of 24 - i unseen ids
zipf_ce = float(-zipf.log().mean())  # predicting the Zipf training law on uniform tokens
axes[0].axhline(np.log(TASK.vocab_size), color="gray", ls="--", label="ln 24: uniform guess")
axes[0].axhline(first_half_floor, color="gray", ls=":", label="first half: best possible (no repeats)")
axes[0].axhline(zipf_ce, color="C3", ls="--", lw=0.8, label="the Zipf training law on uniform tokens")
axes[0].set(title="Loss on a repeated random sequence", xlabel="step", ylabel="cross-entropy (nats)")
axes[0].legend(fontsize=8)
im = axes[1].imshow(loss_by_pos.T, aspect="auto", origin="lower", cmap="viridis",
                    extent=(run.steps[0], run.steps[-1], 1, 2 * L_REP - 1))
axes[1].set(title="Loss by position over training", xlabel="step", ylabel="position of the predicted token")
plt.colorbar(im, ax=axes[1])
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reveal.** Look at how many checkpoints the orange curve takes to fall, compared with the whole
# run, and at where the blue curve ends against the three horizontal lines. The cell below prints
# both from this run, and the reason the first half can end *above* the uniform guess: the model was
# trained on Zipf-distributed background tokens, and where there is nothing to copy it keeps
# predicting that distribution, which costs more than a uniform guess on uniform tokens (the red
# dashed line).
#
# The right panel shows the same losses position by position: each column is a checkpoint, each row
# the position of a predicted token, rows 1-14 the first half and rows 15-29 the second. Look for the
# rows of the second half turning dark (low loss) together, at the step where the orange curve falls,
# while the first half's rows stay bright; row 15, the first token of the second copy, has no twin
# before it that says it comes next, so it should stay bright too.

# %%
fall = second_half[0] - second_half[-1]
step_90, step_10 = first_step(second_half < second_half[0] - 0.1 * fall), first_step(second_half < second_half[0] - 0.9 * fall)
print(f"second-half loss {second_half[0]:.2f} -> {second_half[-1]:.2f} nats; 10% of the fall done at step {step_90}, "
      f"90% at step {step_10} (of {run.steps[-1]} steps); the OOD error dropped below 0.5 at step {ood_falls}")
with torch.no_grad():
    predicted = torch.softmax(model(rep_tokens)[:, : L_REP - 1].double(), -1).mean((0, 1))  # first half, averaged
print(f"first-half loss {first_half[-1]:.2f} nats vs the uniform guess ln {TASK.vocab_size} = {np.log(TASK.vocab_size):.2f} "
      f"and the best possible first-half loss {first_half_floor:.2f}. "
      f"Predicting the Zipf training distribution on uniform tokens costs -mean(log p_zipf) = {zipf_ce:.2f} nats; "
      f"the model's average first-half prediction is {float((predicted * (predicted / zipf).log()).sum()):.3f} nats "
      f"(KL) from that distribution.")
print(f"repeated-sequence loss (second half minus first half) at the end: {second_half[-1] - first_half[-1]:+.2f} nats")

# %% [markdown]
# ## 10. Pool size: every seed, two schedules
#
# Lesson 4 compared two single-seed runs (pools of 20 and 3000). Here is the curve: six pool sizes,
# three seeds each, with the lesson's 600-step schedule and with 1500 steps. Thirty-six trainings do
# not fit in this notebook's time limit, so `benchmarks/bench_pool_size.py` ran them, one training at
# a time (`--one-at-a-time`, and `--steps 1500 --out ...` for the second set), and recorded the
# numbers and its measured time in `benchmarks/results/`; this cell plots those files. The QK-OV
# matching in these files is lesson 4's, from the **unfolded** weights (section 6 compares it with the
# folded one used in section 5). Outcomes can be bimodal (a seed has learned the
# rule or not yet), so every seed is drawn as its own point, not as a mean and a standard deviation.
#
# **Predict first:** is there a pool size below which the OOD error stays high? Does training longer
# move it? Does the QK-OV matching rise above its baseline exactly on the seeds whose OOD error fell?

# %%
RESULTS = Path(toyattn.__file__).resolve().parents[1] / "benchmarks" / "results"
SWEEP_FILES = ("pool_size_sweep.json", "pool_size_sweep_1500.json")
for name in SWEEP_FILES:
    if not (RESULTS / name).exists():
        raise FileNotFoundError(f"{RESULTS / name} is missing; it comes with the course repository "
                                "(or run benchmarks/bench_pool_size.py from a clone to make it).")
sweeps = {json.loads((RESULTS / name).read_text())["steps"]: json.loads((RESULTS / name).read_text()) for name in SWEEP_FILES}
sizes = sorted({r["pool_size"] or 0 for r in sweeps[600]["runs"]})
label = lambda s: "fresh" if s == 0 else str(s)  # noqa: E731
LEARNED = 0.2  # OOD error below this: the seed has learned the rule
PARTLY = 0.6  # OOD error below this: partly learned (a seed that has learned nothing errs on about 1 - 1/vocab_size of the targets)
fig, axes = plt.subplots(1, 3, figsize=(16, 3.6))
x = np.arange(len(sizes))
for k, (steps, sweep) in enumerate(sweeps.items()):
    for col, ax, name in ((0, axes[0], "ID error"), (1, axes[1], "OOD error"), (2, axes[2], "QK-OV matching, rank 4, unfolded (lesson 4's)")):
        for r in sweep["runs"]:
            value = (r["id_error"], r["ood_error"], r["match_largest_4"])[col]
            ax.plot(sizes.index(r["pool_size"] or 0) + 0.15 * k + 0.04 * (r["seed"] - 1), value, "os"[k],
                    color=f"C{r['seed']}", mfc="none" if k else None, ms=6)
        ax.set(title=f"{name} (each seed a point)", ylim=(0, 1.05))
    print(f"{steps} steps: {len(sweep['runs'])} runs in {sweep['seconds']:.0f} s (recorded by bench_pool_size.py, "
          f"{'stacked' if sweep.get('stacked') else 'one training at a time'})")
print("These times are not comparable with each other: the files were recorded on different machines or under "
      "different loads, and the files do not say which.")
for seed in range(3):
    axes[0].plot([], [], "o", color=f"C{seed}", label=f"seed {seed}")
axes[0].plot([], [], "o", color="k", label="600 steps")
axes[0].plot([], [], "s", color="k", mfc="none", label="1500 steps")
axes[2].axhline(m_base, color="gray", ls="--", label="random baseline")
axes[1].axhline(LEARNED, color="gray", ls=":", label="learned below this")
for ax in axes:
    ax.set_xticks(x, [label(s) for s in sizes])
    ax.set_xlabel("training patterns (pool size)")
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reveal.** Read the plot seed by seed, and the lines printed below (all built from the two
# files). Look for: which pool sizes have an ID error low and an OOD error high (memorised); which
# have both high; which seeds learned the rule at each schedule; and whether a seed's matching is
# above the dashed baseline exactly when its OOD error is low. The matching at distance 0, rank 4,
# largest cosine is a **noisy proxy** for the circuit: it often moves with the OOD error, but not
# always, and these files contain counterexamples in both directions if the lines below print any.
# The second kind is looser than "learned": it names seeds **partly** learned (OOD error below 0.6,
# far under the chance level of about 0.96, but above the learned threshold 0.2) whose matching is
# still below its baseline.

# %%
for steps, sweep in sweeps.items():
    by_size = {s: sorted((r for r in sweep["runs"] if (r["pool_size"] or 0) == s), key=lambda r: r["seed"]) for s in sizes}
    print(f"{steps} steps:")
    for s, rs in by_size.items():
        print(f"  {label(s):>6}: " + "; ".join(f"seed {r['seed']} ID {r['id_error']:.2f} OOD {r['ood_error']:.2f} match {r['match_largest_4']:.2f}"
                                       for r in rs))
    where = lambda r: f"{label(r['pool_size'] or 0)} seed {r['seed']} (match {r['match_largest_4']:.2f}, OOD {r['ood_error']:.2f})"  # noqa: E731
    learned = [(label(r["pool_size"] or 0), r["seed"]) for r in sweep["runs"] if r["ood_error"] < LEARNED]
    print(f"  learned the rule (OOD error < {LEARNED}): {learned}")
    high_match = [where(r) for r in sweep["runs"] if r["ood_error"] > 0.5 and r["match_largest_4"] > m_base + 2 * m_std]
    print(f"  matching more than 2 std above its baseline ({m_base:.2f}) while the OOD error is above 0.5: {high_match or 'none'}")
    low_match = [where(r) for r in sweep["runs"] if r["ood_error"] < PARTLY and r["match_largest_4"] < m_base]
    print(f"  matching below its baseline although the rule is at least partly learned (OOD error below {PARTLY}, "
          f"chance level {1 - 1 / TASK.vocab_size:.2f}): {low_match or 'none'}")
before = {(label(r["pool_size"] or 0), r["seed"]) for r in sweeps[600]["runs"] if r["ood_error"] < LEARNED}
after = {(label(r["pool_size"] or 0), r["seed"]) for r in sweeps[1500]["runs"] if r["ood_error"] < LEARNED}
print(f"seeds that learned only with the longer schedule: {sorted(after - before, key=str) or 'none'}; "
      f"learned at 600 but not at 1500 steps: {sorted(before - after, key=str) or 'none'}")
moved = [f"{label(r6['pool_size'] or 0)} seed {r6['seed']} ({r6['ood_error']:.2f} -> {r15['ood_error']:.2f})" for r6 in sweeps[600]["runs"]
         for r15 in sweeps[1500]["runs"] if (r6["pool_size"], r6["seed"]) == (r15["pool_size"], r15["seed"])
         and r6["ood_error"] >= LEARNED and r15["ood_error"] < r6["ood_error"] - 0.1]
print(f"seeds not yet learned at 600 steps whose OOD error is lower by more than 0.1 at 1500: {moved or 'none'}")

# %% [markdown]
# One caveat: three seeds per pool size say which outcomes occur, not how often they occur.
#
# ## 11. The bridge in a real model: SmolLM2-135M-Instruct
#
# The model loaded here is SmolLM2-135M-**Instruct** (the chat-tuned checkpoint of SmolLM2-135M, the
# same file lesson 3 uses; 30 layers, 9 query heads and 3 key/value heads per layer, `d_model` 576) ships with
# the course as a quantized GGUF file. `toyattn.weights.llama.load_llama_gguf` runs it with the same
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
from toyattn.weights.llama import load_llama_gguf  # noqa: E402

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

# %% [markdown]
# **Reveal.** Look in the heatmaps for the few bright cells, the rows they sit in, and whether the
# bright cells of the previous-token map sit above or below those of the induction map. The cell
# below prints the answer for this model and these tokens.

# %%
n_layers_llm, n_heads_llm = np.shape(scores["induction"])
print(f"induction scores: top five {[round(s, 2) for _, _, s in top_ind]}, median over all {n_layers_llm * n_heads_llm} heads "
      f"{np.median(scores['induction']):.3f}; the top five sit in layers {sorted({layer for layer, _, _ in top_ind})} of 0-{n_layers_llm - 1}")
print(f"previous-token scores: top five {[round(s, 2) for _, _, s in top_prev]}, median {np.median(scores['previous_token']):.3f}; "
      f"{sum(layer < top_ind[0][0] for layer, _, _ in top_prev)} of the top five sit below the top induction head's layer "
      f"{top_ind[0][0]}, in layers {sorted({layer for layer, _, _ in top_prev})}")

# %%
# The induction map again, interactive: hover a head to read its layer, index and score.
heatmap_plotly(scores["induction"], [f"L{i}" for i in range(n_layers_llm)], [f"H{h}" for h in range(n_heads_llm)],
               title="SmolLM2: induction score (hover a head)", xlabel="head", ylabel="layer",
               colorscale="Magma", zmin=0, zmax=1, annotate=False)

# %% [markdown]
# **bfloat16, when you ask for it.** On a GPU you would often run a model like this one in
# `torch.bfloat16`: half the memory of float32 for the weights and activations, and faster products
# on GPUs that support it, keeping only about 2–3 significant decimal digits (8 significant bits, against about 7 digits for float32). The cell below makes a
# bfloat16 copy of SmolLM2 (after `toyattn.device.check_dtype` has checked that this device can
# multiply in bfloat16; `load_llama_gguf(dtype=torch.bfloat16)` does the same at load time), runs
# one short batch, and prints how far its logits on the second copy are from float32's. Look at two
# numbers: the largest absolute logit difference, read against the span of the logits printed next
# to it, and the share of second-copy positions where the two runs predict the same top-1 token
# (what matters for copying). The last number printed says whether the positions where they
# disagree are ones where float32 itself hesitates: its margin between the top two tokens there,
# against its median margin everywhere.

# %%
import copy  # noqa: E402

from toyattn.device import check_dtype  # noqa: E402

check_dtype(torch.bfloat16, "cpu")
llm_bf16 = copy.deepcopy(llm).to(torch.bfloat16)
with torch.no_grad():
    logits32, logits16 = (m(llm_tokens[:2])[:, -L_LLM:].double() for m in (llm, llm_bf16))  # second-copy positions
del llm_bf16
agree = float((logits32.argmax(-1) == logits16.argmax(-1)).double().mean())
print(f"bfloat16 vs float32 on the second copy ({logits32.shape[0]} sequences x {L_LLM} positions): largest |logit "
      f"difference| {float((logits32 - logits16).abs().max()):.3f} (float32 logits span {float(logits32.min()):.1f} to "
      f"{float(logits32.max()):.1f}); the top-1 prediction agrees on {agree:.1%} of the positions.")
top2 = logits32.topk(2, dim=-1).values
margin, differ = top2[..., 0] - top2[..., 1], logits32.argmax(-1) != logits16.argmax(-1)
if differ.any():
    print(f"float32's top-1 minus top-2 logit: median {float(margin[differ].median()):.2f} where the two runs disagree, "
          f"{float(margin.median()):.2f} over all positions")

# %% [markdown]
# ## 12. Composition and matching in the real model
#
# Now the two bridge measures for every head that could feed the top induction head's keys: every head
# in an earlier layer, as K-composition and as QK-OV matching at rank 10 (Song et al.'s rank for real
# models), both with the norm gains folded in, each drawn as a ratio to its baseline of random
# Gaussian matrices (section 13 adds the fairer baseline of random *head pairs*).
#
# **Predict first:** will the strongest writers into the top induction head's keys be previous-token
# heads? In which layers?

# %%
R_LLM = 10
li, hi, _ = top_ind[0]
reader_llm = head_factors(llm, li, hi)
writers = {(layer, h): head_factors(llm, layer, h) for layer in range(li) for h in range(llm.cfg.n_heads)}
kcomp = np.full((li, llm.cfg.n_heads), np.nan)
match = np.full((li, llm.cfg.n_heads), np.nan)
for (layer, h), w in writers.items():
    kcomp[layer, h] = composition.k_composition(ov_factors(w), qk_factors(reader_llm))
    match[layer, h] = matching.qk_ov_matching(qk_factors(reader_llm), ov_factors(w), R_LLM)
kb, kb_std = composition.random_composition_baseline(llm.cfg.d_model, llm.cfg.d_head, n_runs=30)
mb, mb_std = matching.random_baseline(llm.cfg.d_model, R_LLM, n_runs=50)
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
for name, order in (("K-composition", order_k), ("matching", order_m)):
    top5 = [divmod(int(i), llm.cfg.n_heads) for i in order]
    hits = [p for p in top5 if p in prev_in_range]
    print(f"by {name}: {len(hits)} of the five strongest writers are top previous-token heads {hits}; "
          f"{sum(layer >= li - 3 for layer, _ in top5)} of the five sit in the 3 layers just below L{li}")

# %% [markdown]
# **Reveal.** Both maps are drawn as ratios to their Gaussian baselines (1 = chance for random
# matrices), with the top previous-token heads marked. Look for the bright cells, whether the red
# marks are on them, and whether the two measures rank the same heads first; the last two printed
# lines count it. `tests/test_weights_llama.py` checks that a top previous-token head is among the five
# strongest writers by both measures. The two rankings need not agree: K-composition is weighted by
# singular values, so a writer with a few very strong output directions in the reader's key space
# scores high, while the matching counts one well-aligned direction among the top 10 regardless of
# its strength. In a 576-dimensional residual stream with 270 heads, many heads can write into
# overlapping subspaces, so neither map need show a clean "one previous-token head feeds one
# induction head" picture.
#
# ## 13. The top pairs against random head pairs
#
# Song et al.'s baseline for the matching is random Gaussian pairs (section 12's). Here we add random
# head pairs of the same model:
# every pair of a top-5 previous-token head and a top-5 induction head in a later layer, against 300
# random head pairs (writer in an earlier layer than the reader) and against random Gaussian
# matrices, for both bridge measures: the QK-OV matching and K-composition. Random Gaussian matrices
# know nothing of what trained heads have in common (shared norm gains, directions every head
# writes or reads); random heads of the same model do, which makes them the fairer baseline.
#
# **Predict first:** will the top pairs sit in the upper tail of the random-pair distributions, under
# both measures?

# %%
pairs = [((lp, hp), (lq, hq)) for lp, hp, _ in top_prev for lq, hq, _ in top_ind if lp < lq]
rng = np.random.default_rng(0)
random_pairs = []
while len(random_pairs) < 300:
    la, lb = sorted(rng.choice(llm.cfg.n_layers, 2, replace=False))
    random_pairs.append(((int(la), int(rng.integers(llm.cfg.n_heads))), (int(lb), int(rng.integers(llm.cfg.n_heads)))))
factors = {}
get = lambda key: factors.setdefault(key, head_factors(llm, *key))  # noqa: E731
MEASURES = {f"QK-OV matching (rank {R_LLM})": (lambda a, b: matching.qk_ov_matching(qk_factors(get(b)), ov_factors(get(a)), R_LLM), mb),
            "K-composition": (lambda a, b: composition.k_composition(ov_factors(get(a)), qk_factors(get(b))), kb)}
bridge = {name: (np.array([fn(a, b) for a, b in pairs]), np.array([fn(a, b) for a, b in random_pairs]))
          for name, (fn, _) in MEASURES.items()}
fig, axes = plt.subplots(1, 2, figsize=(13, 3.4))
for ax, (name, (top_vals, rand_vals)) in zip(axes, bridge.items(), strict=True):
    ax.hist(rand_vals, bins=30, density=True, color="gray", alpha=0.7, label="random head pairs (300)")
    for v in top_vals:
        ax.axvline(v, color="C3", lw=1)
    ax.axvline(MEASURES[name][1], color="k", ls="--", label="random Gaussian matrices")
    ax.plot([], [], color="C3", label=f"top previous-token -> induction pairs ({len(pairs)})")
    ax.set(title=f"{name} in SmolLM2-135M-Instruct", xlabel="score", ylabel="density")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
for name, (top_vals, rand_vals) in bridge.items():
    pct = np.array([np.mean(rand_vals < v) for v in top_vals])
    print(f"{name}: top pairs median {np.median(top_vals):.3f}; random head pairs median {np.median(rand_vals):.3f}, "
          f"90th percentile {np.quantile(rand_vals, 0.9):.3f}; Gaussian baseline {MEASURES[name][1]:.3f}")
    print(f"    percentile of each top pair among random head pairs: median {np.median(pct):.0%}, "
          f"{np.mean(pct > 0.9):.0%} of them above the 90th; random head pairs above the Gaussian baseline: "
          f"{np.mean(rand_vals > MEASURES[name][1]):.0%}")

# %% [markdown]
# **Reveal.** Compare the red lines with the gray histograms, and the printed percentiles: how far
# into the upper tail of the random head pairs the top pairs sit under each measure, whether every
# top pair does, and how far the random head pairs sit from the dashed Gaussian baseline.
# `tests/test_weights_llama.py` checks that the median percentile of the top pairs' matching is above 75%.
# A strong previous-token head need not feed a given induction head, so some red lines can sit in the
# bulk. Where the random head pairs sit above the Gaussian line, a ratio to the Gaussian baseline
# (section 12's maps) overstates how special a pair is. The toy model's bridge (sections 4-5) had
# one pair and no competitors; in a real model it is one signal among many.

# %% [markdown]
# ## 14. A causal test in the real model
#
# Weights and attention patterns are still correlations. As on the toy (section 2), silence one head
# at a time and measure SmolLM2's loss on the second copy of repeated random tokens: the top induction
# head, the strongest previous-token head in an earlier layer, and, as a control, three random heads.
# The ablation is a **mean ablation** (each head's output replaced, at each position, by its mean over
# the batch). The batch is a fresh one of 32 sequences (16 random tokens, repeated), so that each
# loss change comes with an error bar: the mean over sequences, $\pm 2$ standard errors.
#
# **Predict first:** one head out of 270: does removing it change the second-copy loss at all?

# %%
N_ABL, L_ABL = 32, 16
abl_tokens = repeated_random_tokens(N_ABL, L_ABL, (1000, 20000), torch.Generator().manual_seed(2), prefix=1)


def second_copy_loss_per_seq(logits):
    """Mean loss per sequence on the second-copy targets that have a twin before them, ``[n_seq]``."""
    logp = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, abl_tokens[:, 1:, None])[..., 0]
    return -logp[:, -(L_ABL - 1):].mean(1).numpy()


prev_feeder = max(((layer, h, sc) for layer, h, sc in top_heads(scores["previous_token"], 20) if layer < li), key=lambda t: t[2])
chosen = {f"top induction head L{li}H{hi}": (li, hi),
          f"top previous-token head before it L{prev_feeder[0]}H{prev_feeder[1]}": prev_feeder[:2]}
special = {(layer, h) for layer, h, _ in top_prev + top_ind}
rng_heads = np.random.default_rng(1)
while len(chosen) < 5:
    head = (int(rng_heads.integers(llm.cfg.n_layers)), int(rng_heads.integers(llm.cfg.n_heads)))
    if head not in special and head not in chosen.values():
        chosen[f"random head L{head[0]}H{head[1]}"] = head
z_names = sorted({f"blocks.{layer}.attn.hook_z" for layer, _ in chosen.values()})
with torch.no_grad():
    abl_logits, abl_cache = llm.run_with_cache(abl_tokens, names_filter=z_names)
clean_per_seq = second_copy_loss_per_seq(abl_logits)
first_copy_loss = float(-torch.log_softmax(abl_logits[:, :L_ABL].double(), -1).gather(-1, abl_tokens[:, 1 : L_ABL + 1, None])[:, 1:].mean())
rise = {}  # name -> per-sequence loss increase under mean ablation
for name, (layer, h) in chosen.items():
    mean_z = abl_cache[f"blocks.{layer}.attn.hook_z"][:, :, h].mean(0)
    rise[name] = second_copy_loss_per_seq(ablate_head(llm, abl_tokens, layer, h, "mean", mean_z=mean_z)) - clean_per_seq
rise_mean = {name: float(r.mean()) for name, r in rise.items()}
rise_err = {name: float(2 * r.std(ddof=1) / np.sqrt(len(r))) for name, r in rise.items()}
fig, ax = plt.subplots(figsize=(8, 3))
ax.barh(list(rise), list(rise_mean.values()), xerr=list(rise_err.values()), capsize=3, color=["C3", "C1"] + ["gray"] * 3)
ax.axvline(0, color="k", lw=0.5)
ax.set(xlabel="second-copy loss increase (nats), mean +- 2 SE over 32 sequences",
       title="Mean-ablating one head of SmolLM2-135M-Instruct")
ax.invert_yaxis()
plt.show()
second_top1 = float((abl_logits[:, :-1].argmax(-1) == abl_tokens[:, 1:])[:, -(L_ABL - 1):].double().mean())
target_losses = -torch.log_softmax(abl_logits[:, -L_ABL:-1].double(), -1).gather(-1, abl_tokens[:, -(L_ABL - 1):, None])[..., 0]
print(f"clean second-copy loss {clean_per_seq.mean():.2f} nats (mean over {N_ABL} sequences; the geometric mean of the "
      f"right token's probability is {np.exp(-clean_per_seq.mean()):.1%}), median over targets "
      f"{float(target_losses.median()):.2f} nats, top-1 accuracy {second_top1:.0%}; the first copy, which cannot be "
      f"predicted, has a loss of {first_copy_loss:.2f} nats")
for name in rise:
    print(f"{name:>45}: {rise_mean[name]:+.2f} +- {rise_err[name]:.2f} nats")

# %% [markdown]
# **Reveal.** First the clean line: how strongly does SmolLM2 copy here at all? Compare the
# second-copy loss with the first copy's, and the mean loss with the median and the top-1 accuracy.
# If the top-1 accuracy is far above the geometric-mean probability and the median far below the
# mean, the model copies many targets well and the mean loss comes from a minority it gets badly
# wrong, not from a uniformly weak copy. These are random mid-vocabulary token ids (1000-20000) with
# nothing but one prefix token before them, unlike the text the model was trained on; that is a
# plausible reason for the misses, which this cell does not test. Then look at the two colored bars against the gray ones, and at whether the error bars
# overlap. The cell below compares them for this batch. Because the ablation keeps each head's mean
# output, a rise in loss cannot be blamed on feeding the model an all-zero head output it never sees.
# The test (`tests/test_weights_llama.py`) checks the
# robust part on its own batch: under mean ablation, each of the two circuit heads raises the loss by
# more than every random control head, beyond the error bars. If the top induction head's bar is
# much shorter than the loss a model that cannot copy would have, other induction heads are doing
# part of the work (the first "Try next" below tests that).

# %%
controls = [name for name in rise if name.startswith("random")]
worst_control = max(controls, key=lambda n: rise_mean[n] + rise_err[n])
for name in list(rise)[:2]:
    apart = rise_mean[name] - rise_err[name] > rise_mean[worst_control] + rise_err[worst_control]
    print(f"{name}: {rise_mean[name]:+.2f} +- {rise_err[name]:.2f} nats, "
          f"{'above' if apart else 'NOT clearly above'} the largest control ({worst_control}: "
          f"{rise_mean[worst_control]:+.2f} +- {rise_err[worst_control]:.2f}); it leaves "
          f"{clean_per_seq.mean() + rise_mean[name]:.2f} nats of loss where the first copy costs "
          f"{first_copy_loss:.2f}")

# %% [markdown]
# ## What you saw, and what to try next
#
# * **Causal** (each tested on the two seeds of `tests/test_circuits_ablation.py`): ablating the
#   previous-token head takes away more than half of the second-copy accuracy (how close to chance it
#   comes is this run's printed answer); patching its clean output, at the first copy's positions,
#   mends "where to look" and not "what to copy"; removing the shared subspace hurts more than most
#   random subspaces. Whether it hurts more than removing the writer's own strongest directions is
#   this run's printed answer.
# * **Standard tools:** K-composition and the principal-angle matching measure different things
#   (weighted overlap vs best-aligned directions); the distance-0 matching is a noisy proxy that
#   the pool-size files show moving apart from the OOD error on some seeds. The induction head
#   copies by both copying scores; the previous-token head's preference for distance 1 is in its
#   positional QK circuit; folding the layer norm is exact, and leaves a per-token $1/\sigma$ and
#   bias terms. With rotary positions none of them is a mere constant: the relative rotation sits in
#   every term, so the bias terms can prefer some key positions and $1/\sigma_q$ can change which key
#   wins; without rotary, two of the four terms would cancel in the softmax.
# * **Real model:** induction and previous-token heads are easy to find by their attention; their
#   weight-level bridge must be judged against random *heads*, not only random matrices; and
#   mean-ablating them raises the second-copy loss more than random heads do.
#
# **Try next:**
# 1. Mean-ablate the top three induction heads of SmolLM2 at once (one hook per head on
#    `blocks.{l}.attn.hook_z`): how much copying is left?
# 2. In section 4, remove the part of the key subspace orthogonal to L0H0's top-4 output directions:
#    does what is left still cost more than random directions?
# 3. Use RMS instead of largest (`matching.qk_ov_matching(..., summary="rms")`) in section 13.
# 4. Run `benchmarks/bench_pool_size.py --steps 3000 --out /tmp/sweep.json` (minutes): do all fresh seeds learn?
# 5. Do the exercises in `exercises/05_induction_circuits.ipynb`.
