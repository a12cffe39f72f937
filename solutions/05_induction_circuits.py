# %% [markdown]
# # Lesson 5 problems: test a circuit causally, score composition, find heads in a real model
#
# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*
#
# **Learning goals.** After these problems you can
# 1. silence one attention head with a hook, by zero and by mean ablation, and measure what breaks;
# 2. patch one head's output from a clean run into a corrupted one, choosing the positions, and report
#    the share of the damage it undoes on two metrics;
# 3. find the subspace a head's keys read, remove it from what an earlier head writes, and judge the
#    damage against random subspaces and the writer's own strongest directions;
# 4. compute the K-composition score of two heads and judge it against two baselines (random matrices,
#    and the heads of untrained models);
# 5. score every head of a real model as a previous-token or induction head from its attention on
#    repeated random tokens, and pick out the heads of the induction circuit.
#
# Read `notebooks/05_induction_circuits` first; "section N" below means the lesson's section N.
#
# **Conventions** (row vectors, as in the course's models). `W_Q, W_K, W_V` are `[d_model, d_head]`,
# `W_O` is `[d_head, d_model]`. A head does not read the residual stream $x$ itself but its layer-normed
# version $\tilde x = \mathrm{LN}(x)$. Its QK circuit $W_{qk} = W_Q W_K^\top / \sqrt{d_{head}}$ scores
# $\tilde x_q W_{qk} \tilde x_k^\top$ (this is the score at query-key distance 0, without the biases;
# with rotary positions the rotation for the distance sits between $W_Q$ and $W_K^\top$), and its OV
# circuit $W_{ov} = W_V W_O$ adds $\tilde x W_{ov}$ (weighted by the attention) for a source position
# whose normed residual is $\tilde x$. Section 6 shows how folding the norm's gain and centring into
# the weights lets the circuits read $x$ itself, up to one positive scale per token and bias terms
# (section 6); `toyattn.circuits.head_circuits.head_factors(model, layer, head)` returns those folded weights
# as a one-head `HeadWeights` (`toyattn.heads.weights`): `.qk()` is $W_Q W_K^\top$, `.ov()` is $W_V W_O$,
# and `.W_Q[0]` ... `.W_O[0]` are the matrices themselves (torch tensors; `.numpy()` for NumPy).
# Layers and heads are numbered from 0, as in the hook names: layer 0 is `blocks.0`, and L3H5 is head
# 5 of layer 3.
#
# Each exercise says what to compute; how is up to you. A **Hint** cell follows some of them: skip it
# unless you are stuck. Every check draws fresh inputs and names the mistake a wrong answer looks like.
# Checks refuse answers that call `toyattn.circuits.ablation`, `toyattn.circuits.composition`,
# `toyattn.circuits.detection`, `toyattn.circuits.head_circuits` or `toyattn.circuits.matching`, which hold
# the course's own solutions; use them afterwards to compare.
# Where a cell asks you to **decide**, write your answer in the cell below it (a comment, or a print
# built from your numbers); in `solutions/` that cell holds a model answer that prints its reasoning
# from the numbers of its own run.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from toyattn import checks, seed_everything
from toyattn.circuits.copy_scoring import corrupt_first_copy, offset_parity_mask
from toyattn.circuits.copy_task import (
    CopyTaskConfig,
    TrainConfig,
    copy_error,
    make_test_sets,
    train_copy_model,
)
from toyattn.circuits.head_circuits import head_factors

seed_everything(0)
torch.set_num_threads(1)

# %% [markdown]
# A model to work on: not the lecture's run, so that your numbers are your own. This one trains on a
# pool of 1000 patterns (seed 2, 600 steps, a checkpoint every 50 steps) and is tested on another OOD
# batch than the lecture's. Not every seed learns the circuit in 600 steps; the cell says whether
# this one did.

# %%
TASK = CopyTaskConfig()
run = train_copy_model(TASK, pool_size=1000, train=TrainConfig(seed=2, checkpoint_every=50), device="cpu")
model = run.model
ood = make_test_sets(TASK, 512, seed=7)["ood"]
final_error = copy_error(model, ood)
print(f"{len(run)} checkpoints; final OOD error {final_error:.3f} "
      f"({'learned the circuit' if final_error < 0.2 else 'did NOT learn the circuit: the exercises below assume it did'})")

# %% [markdown]
# ## Exercise 1: ablate one head
#
# Write `ablate_head(model, tokens, layer, head, mode)` returning the logits `[batch, pos, vocab]` of a
# run on `tokens` in which head `head` of layer `layer` is silenced, and nothing else changes:
#
# * `mode="zero"`: the head contributes nothing (its output vector is 0; the layer's other heads and
#   its output bias stay);
# * `mode="mean"`: at each position, the head's output is replaced by its average **over the batch**
#   at that position (computed on `tokens` themselves).
#
# You decide where in the model to intervene. Leave no hook attached afterwards. The check uses models
# with one to three heads per layer and random biases, and tells you when an answer looks like the
# whole layer, a mean over the wrong axes, or the wrong head.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# The models have named hook points (`model.hook_points` lists them); `model.run_with_cache(tokens)`
# reads activations and `model.run_with_hooks(tokens, fwd_hooks=[(name, fn)])` edits one for one run,
# where `fn(tensor, hook=...)` returns the edited tensor. Which activation still has a separate axis
# for each head, before the heads are summed into the layer's output?
# </details>

# %%
def ablate_head(model, tokens, layer, head, mode="zero"):
    """-> logits [batch, pos, vocab] with one head silenced ("zero" or "mean")."""
    ### BEGIN SOLUTION
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(tokens, names_filter=name)
    own = cache[name][:, :, head]  # [batch, pos, d_head]
    replacement = torch.zeros_like(own) if mode == "zero" else own.mean(dim=0, keepdim=True).expand_as(own)

    def silence(z, hook):
        z = z.clone()
        z[:, :, head] = replacement
        return z

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, silence)])
    ### END SOLUTION


checks.check_ablate_head(ablate_head)

# %% [markdown]
# Now use it on the trained model. **Predict first** (write it down): silencing which head hurts the
# accuracy on the second copy more, layer 0's or layer 1's? For each, does zero or mean ablation hurt
# more, and by how much? Then measure: decide how you score the second copy (`ood.scored` marks the
# scored targets; position `j` is predicted from the logits at `j - 1`), and print, for the clean run
# and after each of the four ablations, the accuracy and the loss (the mean cross-entropy of the right
# next token), and how many targets you scored.

# %%
### BEGIN SOLUTION
def second_copy_accuracy(logits, batch, targets=None):
    """Share of the scored second-copy targets (or of `targets` among them) predicted right by the argmax."""
    scored = batch.scored if targets is None else batch.scored & targets
    right = logits[:, :-1].argmax(-1) == batch.tokens[:, 1:]
    return float((right & scored[:, 1:]).sum() / scored[:, 1:].sum())


def target_loss(logits, batch, targets=None):
    """Mean cross-entropy (nats) of the right next token over the scored targets (or those in `targets`)."""
    scored = batch.scored if targets is None else batch.scored & targets
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.tokens[:, 1:, None])[..., 0]
    return float(-logp[scored[:, 1:]].mean())


n_targets = int(ood.scored[:, 1:].sum())
with torch.no_grad():
    clean_logits = model(ood.tokens)
clean_acc, clean_loss = second_copy_accuracy(clean_logits, ood), target_loss(clean_logits, ood)
ablation_acc, ablation_loss, ablation_logits = {}, {}, {}
for layer in (0, 1):
    for mode in ("zero", "mean"):
        logits = ablation_logits[(layer, mode)] = ablate_head(model, ood.tokens, layer, 0, mode)
        ablation_acc[(layer, mode)], ablation_loss[(layer, mode)] = second_copy_accuracy(logits, ood), target_loss(logits, ood)
print(f"{n_targets} scored targets; clean: accuracy {clean_acc:.3f}, loss {clean_loss:.2f} nats "
      f"(chance, a uniform guess: accuracy {1 / TASK.vocab_size:.3f}, loss {np.log(TASK.vocab_size):.2f})")
for key, acc in ablation_acc.items():
    print(f"layer {key[0]}, {key[1]} ablation: accuracy {acc:.3f}, loss {ablation_loss[key]:.2f} nats")
### END SOLUTION

# %% [markdown]
# **Decide.** Which ablation hurts more? Is the difference between zero and mean ablation large enough
# to change what you conclude about either head? Write your answer in the cell below.

# %%
### BEGIN SOLUTION
def per_sequence_accuracy(logits, batch):
    """[batch]: the share of each sequence's scored targets predicted right."""
    right = (logits[:, :-1].argmax(-1) == batch.tokens[:, 1:]) & batch.scored[:, 1:]
    return (right.sum(1) / batch.scored[:, 1:].sum(1)).double().numpy()


def paired(a, b):
    """Mean and standard error of the per-sequence differences a - b (both scored on the same sequences)."""
    diff = a - b
    return diff.mean(), diff.std(ddof=1) / np.sqrt(len(diff))


chance = 1 / TASK.vocab_size
n_seq = ood.tokens.shape[0]
per_seq = {key: per_sequence_accuracy(logits, ood) for key, logits in ablation_logits.items()}
per_seq["clean"] = per_sequence_accuracy(clean_logits, ood)
worst = min(ablation_acc, key=ablation_acc.get)
drop, drop_se = paired(per_seq["clean"], per_seq[worst])
print(f"Model answer. The {n_targets} targets come from {n_seq} sequences, and the targets of one sequence are not "
      "independent; every run is scored on the same targets. So each comparison takes the accuracy per sequence and "
      f"the standard error of the paired per-sequence differences over the {n_seq} sequences. The largest drop is layer "
      f"{worst[0]}'s {worst[1]} ablation: {clean_acc:.3f} -> {ablation_acc[worst]:.3f}, a drop of {drop:.3f} +- "
      f"{drop_se:.3f} (chance {chance:.3f}).")
for layer in (0, 1):
    zero, mean = ablation_acc[(layer, "zero")], ablation_acc[(layer, "mean")]
    d_zm, se_zm = paired(per_seq[(layer, "zero")], per_seq[(layer, "mean")])
    kept = max(zero, mean) / clean_acc
    if kept < 0.5:
        verdict = f"both ablations leave at most {kept:.0%} of the clean accuracy: the model needs this head, however it is silenced"
    else:
        verdict = f"one ablation keeps {kept:.0%} of the clean accuracy: the model does much of the task without this head"
    print(f"Layer {layer}: zero {zero:.3f}, mean {mean:.3f} (difference {abs(d_zm):.3f} +- {se_zm:.3f}): {verdict}.")
orders_differ = []
for mode in ("zero", "mean"):
    a, b = ablation_acc[(0, mode)], ablation_acc[(1, mode)]
    same_order = (ablation_loss[(0, mode)] > ablation_loss[(1, mode)]) == (a < b)
    orders_differ += [] if same_order else [mode]
    d01, se01 = paired(per_seq[(0, mode)], per_seq[(1, mode)])
    z = abs(d01) / se01
    lower = 0 if d01 < 0 else 1
    print(f"{mode.capitalize()} ablation: layer 0 {a:.3f}, layer 1 {b:.3f}, {z:.1f} paired standard errors apart: "
          + (f"layer {lower}'s hurts more, even if both are far below the clean accuracy." if z > 3 else
             "this batch cannot rank the two heads on accuracy.")
          + f" The loss: layer 0 {ablation_loss[(0, mode)]:.2f}, layer 1 {ablation_loss[(1, mode)]:.2f} nats "
          f"({'the same order' if same_order else 'the other order'}).")
if orders_differ:
    print(f"For {' and '.join(orders_differ)} ablation, accuracy and loss rank the two heads differently: which head "
          "'hurts more' depends on the metric (the accuracy counts top-1 hits, the loss also how confidently the model "
          "is wrong). What both metrics agree on is that each head is needed.")
print("Mean ablation keeps the head's average output, so a drop under it cannot be blamed on an unusual "
      "all-zero input; where the two agree, the drop comes from losing what the head says about this sequence.")
### END SOLUTION

# %% [markdown]
# ## Exercise 2: patch one head's output from a clean run into a corrupted one
#
# Ablation says a head is needed; patching says what it carries, and where (section 3). Write
# `patch_head(model, tokens, source_tokens, layer, head, where)` returning the logits of a run on
# `tokens` in which head `head` of layer `layer` outputs, at the positions where the bool mask
# `where [batch, pos]` is True, what it output at the same positions in a run on `source_tokens`.
# Everything else is computed as usual: later layers read the patched output. The mask is per sequence
# because the two copies of a pattern sit at different positions in each sequence. The check uses
# random models with one to three heads per layer and names a patch in the wrong direction, of the
# wrong layer, of every head or of every position.

# %%
def patch_head(model, tokens, source_tokens, layer, head, where):
    """-> logits [batch, pos, vocab] of a run on `tokens`, one head's output at `where` taken from `source_tokens`' run."""
    ### BEGIN SOLUTION
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(source_tokens, names_filter=name)
    source = cache[name][:, :, head]  # [batch, pos, d_head]

    def patch(z, hook):
        z = z.clone()
        z[:, :, head] = torch.where(where[..., None], source, z[:, :, head])
        return z

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, patch)])
    ### END SOLUTION


checks.check_patch_head(patch_head)

# %% [markdown]
# A patch is reported as the **share recovered**: 0 when the patched run scores like the corrupted
# run, 1 when it scores like the clean run, linear in between, on whatever metric you use. Write
# `share_recovered(patched, corrupted, clean)` so that it works for a metric that rises when the model
# does well (an accuracy) and for one that falls (a loss), elementwise on arrays. Do not clip: a patch
# can overshoot the clean run (above 1) or make things worse (below 0), and you want to see that.

# %%
def share_recovered(patched, corrupted, clean):
    """-> 0 where `patched` equals `corrupted`, 1 where it equals `clean` (numbers or arrays)."""
    ### BEGIN SOLUTION
    patched, corrupted, clean = (np.asarray(a, dtype=np.float64) for a in (patched, corrupted, clean))
    return (patched - corrupted) / (clean - corrupted)
    ### END SOLUTION


checks.check_share_recovered(share_recovered)

# %% [markdown]
# Now the experiment of section 3, with your own choices. The corrupted input below is built as the
# lesson's (another random draw): in the **first** copy only, every token at an odd offset (1, 3, 5,
# ...) is replaced by a token that is not in the pattern. A second-copy target at an **even** offset therefore has a first-copy twin
# whose *previous* token is wrong (finding the twin is broken); a target at an **odd** offset has a
# twin that is itself wrong (what to copy is broken). `even_targets` and `odd_targets` mark them.
#
# Design the experiment that tests the claim "layer 0's head tells layer 1 **where** to look": decide
# which head to patch, in which direction (which run's output goes into which run), and at which
# positions (more than one set of positions can be worth a try: where does layer 1 read what it needs
# from layer 0?). Score even and odd targets separately on the accuracy and the loss of exercise 1,
# and print the share recovered of each.
#
# **Predict first** (write it down): which of your shares (which patch, even or odd targets) come out
# near 1, and which near 0?

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# `ood.first`, `ood.second` and `ood.length` (`[batch]`) give each sequence's copies: compare
# `torch.arange(ood.tokens.shape[1])` with them to build `[batch, pos]` masks. For the loss, take
# `torch.log_softmax` of the logits at `j - 1` and read the entry of the token at `j`.
# </details>

# %%
corrupted = corrupt_first_copy(ood, TASK.vocab_size, torch.Generator().manual_seed(1))
even_targets, odd_targets = offset_parity_mask(ood, 0), offset_parity_mask(ood, 1)

### BEGIN SOLUTION
positions = torch.arange(ood.tokens.shape[1])[None, :]
first_copy = (positions >= ood.first[:, None]) & (positions < (ood.first + ood.length)[:, None])
second_copy = (positions >= ood.second[:, None]) & (positions < (ood.second + ood.length)[:, None])


def metrics(logits):
    return {(metric, part): fn(logits, ood, mask) for part, mask in (("even", even_targets), ("odd", odd_targets))
            for metric, fn in (("accuracy", second_copy_accuracy), ("loss", target_loss))}


with torch.no_grad():
    reference = {"clean": metrics(model(ood.tokens)), "corrupted": metrics(model(corrupted))}
patches = {"layer 0, first copy": (0, first_copy), "layer 0, second copy": (0, second_copy),
           "layer 1, second copy": (1, second_copy)}
patched = {name: metrics(patch_head(model, corrupted, ood.tokens, layer, 0, where))
           for name, (layer, where) in patches.items()}
shares = {name: {key: float(share_recovered(m[key], reference["corrupted"][key], reference["clean"][key])) for key in m}
          for name, m in patched.items()}
keys = list(reference["clean"])
print(f"{'run':>22} " + " ".join(f"{m + ' ' + p:>14}" for m, p in keys))
for name, m in {**reference, **patched}.items():
    print(f"{name:>22} " + " ".join(f"{m[key]:14.3f}" for key in keys))
print("share recovered")
for name, s in shares.items():
    print(f"{name:>22} " + " ".join(f"{s[key]:14.2f}" for key in keys))
### END SOLUTION

# %% [markdown]
# **Decide.** What do the shares say layer 0's head carries, and at which positions does it matter?
# Would patching layer 1's head at the second copy be a good test of the claim?

# %%
### BEGIN SOLUTION
def where_it_helps(name):
    s = shares[name]
    return (f"even targets {s[('accuracy', 'even')]:.2f} (accuracy) and {s[('loss', 'even')]:.2f} (loss), "
            f"odd targets {s[('accuracy', 'odd')]:.2f} and {s[('loss', 'odd')]:.2f}")


key_side = shares["layer 0, first copy"]
mends_where = min(key_side[("accuracy", "even")], key_side[("loss", "even")]) > 0.5
mends_what = max(key_side[("accuracy", "odd")], key_side[("loss", "odd")]) > 0.5
print(f"Model answer. Patching layer 0 at the first copy recovers {where_it_helps('layer 0, first copy')}.")
print(f"Patching layer 0 at the second copy recovers {where_it_helps('layer 0, second copy')}.")
if mends_where and not mends_what:
    print("So layer 0's output at the first copy, where the keys that layer 1 looks for sit, tells layer 1 where the "
          "twin is: it mends the even targets and not the odd ones, whose copied token is wrong however well layer 1 "
          "looks.")
else:
    print("These shares do not show the clean split 'even mended, odd not' of section 3: look at the table before "
          "drawing a conclusion (did this run learn the circuit?).")
# Why the second copy has little to mend: how much did the corruption change layer 0's output there?
z_name = "blocks.0.attn.hook_z"
z_clean, z_corrupted = (model.run_with_cache(t, names_filter=z_name)[1][z_name][:, :, 0] for t in (ood.tokens, corrupted))
change = {part: float((z_clean - z_corrupted)[mask].norm() / z_clean[mask].norm())
          for part, mask in (("first", first_copy), ("second", second_copy))}
second_shares = shares["layer 0, second copy"].values()
print(f"The corruption changed layer 0's output by {change['first']:.0%} (relative norm) at the first copy and by "
      f"{change['second']:.0%} at the second copy, whose own tokens it left alone (the head reads some earlier "
      "positions too). " + (
          "Putting the second-copy change back recovers nothing (every share within 0.1 of 0): what layer 1 needs from "
          "layer 0 sits at the keys it looks for, not at its queries." if max(map(abs, second_shares)) < 0.1 else
          "Putting the second-copy change back recovers part of the damage too: layer 1 also uses layer 0's output at "
          "its query positions here."))
print(f"Patching layer 1 at the second copy recovers {where_it_helps('layer 1, second copy')}: it hands the "
      "answer itself to the positions that predict, so it recovers what layer 1 writes there whatever the mechanism; "
      "it cannot tell 'where' from 'what'. The informative patches are the ones that can fail.")
### END SOLUTION

# %% [markdown]
# ## Exercise 3: the subspace a head's keys read, removed from what an earlier head writes
#
# Lesson 4 found that layer 1's keys read a few directions that layer 0's OV circuit writes; section 4
# tests it causally. First find the subspace. Write `key_subspace(W_qk, r)`: an orthonormal basis
# `[d_model, r]` of the $r$-dimensional subspace of key inputs $\tilde x_k$ that the scores
# $\tilde x_q W_{qk} \tilde x_k^\top$ respond to most, the subspace spanned by orthonormal $B$ that
# makes $\|W_{qk} B\|_F$ largest. The check compares subspaces, so any orthonormal basis of the right
# one passes, and tells you when yours is the query side, the weakest directions, or rows and columns
# of a decomposition swapped.

# %%
def key_subspace(W_qk, r):
    """-> [d_model, r] orthonormal columns: the r key-side directions W_qk responds to most."""
    ### BEGIN SOLUTION
    _, _, Vh = np.linalg.svd(np.asarray(W_qk, dtype=np.float64))
    return Vh[:r].T  # the rows of Vh are the right singular vectors, largest first
    ### END SOLUTION


checks.check_key_subspace(key_subspace)

# %% [markdown]
# Then remove a subspace. Write `remove_subspace(model, tokens, layer, directions)` returning the logits
# of a run in which the span of the **columns** of `directions [d_model, r]` is removed from what layer
# `layer`'s attention writes into the residual stream, at every position: each output vector
# is replaced by its orthogonal projection onto the complement of that span; the rest of the model runs
# as usual. `directions` is any basis of the subspace: its columns need not be orthonormal.

# %%
def remove_subspace(model, tokens, layer, directions):
    """-> logits [batch, pos, vocab] with span(directions' columns) removed from layer `layer`'s attention output."""
    ### BEGIN SOLUTION
    Q = torch.linalg.qr(torch.as_tensor(directions, dtype=torch.float64)).Q.float()  # orthonormal first

    def remove(x, hook):
        return x - (x @ Q) @ Q.T

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_attn_out", remove)])
    ### END SOLUTION


checks.check_remove_subspace(remove_subspace)

# %% [markdown]
# Now the test of section 4, with your choices: remove $r = 4$ of the 32 directions from what layer 0
# writes, to test the claim "the circuit runs through the subspace that layer 1's keys read". Decide
# which 4 directions test it (the folded weights `head_factors(model, layer, 0)` give you each head's
# circuits), and which controls would tell that claim apart from "removing any 4 directions hurts"
# and from "removing what layer 0 writes most hurts". Score the second-copy accuracy of each removal.
#
# **Predict first:** order your removals by how much accuracy they cost.

# %%
R = 4
### BEGIN SOLUTION
reader, writer = head_factors(model, 1, 0), head_factors(model, 0, 0)
shared_keys = key_subspace(reader.qk().numpy(), R)
# x W_ov lies in the row space of W_ov: its top right singular vectors, which key_subspace returns
writer_own = key_subspace(writer.ov().numpy(), R)
logits_keys = remove_subspace(model, ood.tokens, 0, shared_keys)
logits_own = remove_subspace(model, ood.tokens, 0, writer_own)
acc_keys, acc_own = second_copy_accuracy(logits_keys, ood), second_copy_accuracy(logits_own, ood)
g = torch.Generator().manual_seed(0)
acc_random = np.array([second_copy_accuracy(remove_subspace(model, ood.tokens, 0, torch.randn(model.cfg.d_model, R, generator=g)), ood)
                       for _ in range(20)])
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(acc_random, bins=20, range=(0, 1), color="gray", label=f"random {R}-dim subspaces (20 draws)")
ax.axvline(acc_keys, color="C3", lw=2, label="layer 1's top key directions")
ax.axvline(acc_own, color="C2", lw=2, ls=":", label="layer 0's top output directions")
ax.axvline(clean_acc, color="C0", ls="--", label="nothing removed")
ax.set(xlabel="accuracy, second copy (OOD)", ylabel="draws", title=f"Removing {R} directions from layer 0's output")
ax.legend(fontsize=8)
plt.show()
overlap = np.linalg.svd(shared_keys.T @ writer_own, compute_uv=False)  # cosines of the principal angles
print(f"cosines of the principal angles between the two chosen subspaces: {np.round(overlap, 2)}")
print(f"nothing removed {clean_acc:.3f}; layer 1's key subspace {acc_keys:.3f}; layer 0's own top directions "
      f"{acc_own:.3f}; random subspaces median {np.median(acc_random):.3f} (min {acc_random.min():.3f}, "
      f"max {acc_random.max():.3f})")
### END SOLUTION

# %% [markdown]
# The histogram shows the accuracy after each random removal (gray), the two chosen removals (lines)
# and the clean accuracy (dashed). **Decide.** Does the circuit run through the subspace that layer 1's
# keys read? What does each of your controls add to that answer?

# %%
### BEGIN SOLUTION
beats = np.mean(acc_keys < acc_random)
print(f"Model answer. Removing layer 1's key subspace leaves an accuracy of {acc_keys:.3f} on the second copy, lower "
      f"than {'every one' if beats == 1 else f'{beats:.0%}'} of the {len(acc_random)} random removals (median {np.median(acc_random):.3f}): "
      + ("those 4 directions carry more of what layer 1 needs than 4 random ones." if beats >= 0.9 else
         "this run does not single them out from random directions."))
relation = (f"share directions (largest cosine of their principal angles {overlap[0]:.2f})" if overlap[0] >= 0.5 else
            f"are nearly orthogonal (largest cosine of their principal angles {overlap[0]:.2f})")
# both removals are scored on the same targets: compare them per sequence (paired), as in exercise 1
d_ko, se_ko = paired(per_sequence_accuracy(logits_keys, ood), per_sequence_accuracy(logits_own, ood))
if abs(d_ko) <= 2 * se_ko:
    own = (f"Removing layer 0's own 4 strongest output directions leaves {acc_own:.3f}, against {acc_keys:.3f}: a "
           f"difference of {abs(d_ko):.3f} +- {se_ko:.3f} (paired standard error over the sequences), less than 2 "
           f"standard errors, so this batch cannot tell the two removals apart; the two subspaces {relation}. This test "
           "alone cannot say whether the circuit runs through the subspace layer 1's keys read or through what layer 0 "
           "writes most strongly.")
elif d_ko > 0:
    own = (f"Removing layer 0's own 4 strongest output directions costs more ({acc_own:.3f} left, {d_ko:.3f} +- "
           f"{se_ko:.3f} less than after removing the key subspace), and the two subspaces "
           f"{relation}. So this test alone cannot say that the circuit runs through the subspace layer 1's keys read "
           "rather than through what layer 0 writes most; a finer test removes the part of the key subspace orthogonal "
           "to layer 0's top directions.")
else:
    own = (f"Removing layer 0's own 4 strongest output directions costs less ({acc_own:.3f} left, {abs(d_ko):.3f} +- "
           f"{se_ko:.3f} more than after removing the key subspace), and the two subspaces {relation}: on this batch, what layer 1's "
           "keys read matters more than what layer 0 writes most strongly.")
print(own)
near_chance = min(acc_keys, acc_own) < 2 * chance
print(f"{'One removal brings' if near_chance else 'Neither removal brings'} the accuracy near chance ({chance:.3f}): "
      f"{R} of {model.cfg.d_model} directions hold {'nearly all' if near_chance else 'part'} of what layer 1 needs.")
### END SOLUTION

# %% [markdown]
# ## Exercise 4: K-composition
#
# Elhage et al. define the composition of two matrices as $\mathrm{comp}(A, B) = \|AB\|_F / (\|A\|_F
# \|B\|_F)$. Write `k_composition(W_ov, W_qk)`: how much the **key side** of a reader head (its QK
# circuit `W_qk`, `[d_model, d_model]`) reads what a writer head writes (its OV circuit `W_ov`), in the
# course's row convention. Return one number.
#
# The key decision is which product to take: follow a source's normed residual $\tilde x$ through the
# writer (it adds $\tilde x W_{ov}$ to the residual stream at its position), and ask where that enters
# the reader's score $\tilde x_q W_{qk} \tilde x_k^\top$. (The reader normalises the residual stream,
# the writer's output included, before reading it; with the norm's gain and centring folded into the
# reader's $W_{qk}$, section 6, the score reads the residual stream itself up to one scale per token
# and bias terms, so the same product, with the folded $W_{qk}$, answers the question.)

# %%
def k_composition(W_ov, W_qk) -> float:
    """-> the K-composition score of a writer's W_ov and a reader's W_qk (both [d_model, d_model])."""
    ### BEGIN SOLUTION
    W_ov, W_qk = np.asarray(W_ov, dtype=np.float64), np.asarray(W_qk, dtype=np.float64)
    return float(np.linalg.norm(W_ov @ W_qk.T) / (np.linalg.norm(W_ov) * np.linalg.norm(W_qk)))
    ### END SOLUTION


checks.check_k_composition(k_composition)

# %% [markdown]
# A score is only meaningful against a baseline. Compute the K-composition of layer 0's head into layer
# 1's head at every checkpoint of `run`, with the folded weights (`head_factors`), and two baselines:
# random Gaussian circuits of the **same shapes** as the model's, and the same two heads in
# **freshly initialised** models of the same architecture (what training starts from). Section 13
# argues, for a real model, that random heads *of the same trained model* are a fairer baseline than
# random matrices; with one head per layer the toy has no other heads, so untrained models are the
# closest thing here. You choose how many to draw.
# Plot the score against the training step, with both baselines, next to the OOD error.
#
# **Predict first:** does the trained score leave both baselines, and does it do so at the same
# checkpoints where the OOD error falls?

# %%
### BEGIN SOLUTION
from toyattn.circuits.copy_task import default_model_config  # noqa: E402
from toyattn.models.transformer import Transformer  # noqa: E402


def circuits(m):
    w, r = head_factors(m, 0, 0), head_factors(m, 1, 0)  # folded: they read the residual itself
    return w.ov().numpy(), r.qk().numpy() / np.sqrt(m.cfg.d_head)


scores = np.array([k_composition(*circuits(run.load(i))) for i in range(len(run))])
rng = np.random.default_rng(0)
d, dh = model.cfg.d_model, model.cfg.d_head  # same shapes (the folded circuits have rank <= d - 1: the centring)
random_circuit = lambda: rng.standard_normal((d, dh)) @ rng.standard_normal((dh, d))  # noqa: E731
gaussian = np.array([k_composition(random_circuit(), random_circuit()) for _ in range(200)])
fresh = []
for seed in range(50):
    torch.manual_seed(1000 + seed)
    fresh.append(k_composition(*circuits(Transformer(default_model_config(TASK)))))
fresh = np.array(fresh)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].plot(run.steps, run.history["ood_error"], "-o", ms=3)
axes[0].set(title="OOD error", xlabel="step", ylim=(0, 1))
axes[1].plot(run.steps, scores, "-o", ms=3, color="k", label="layer 0 -> layer 1 (trained)")
for base, color, name in ((gaussian, "gray", "random Gaussian circuits"), (fresh, "C1", "untrained models")):
    axes[1].axhspan(base.mean() - 2 * base.std(), base.mean() + 2 * base.std(), color=color, alpha=0.3,
                    label=f"{name}, mean +- 2 std")
axes[1].set(title="K-composition", xlabel="step", ylim=(0, 1))
axes[1].legend(fontsize=8)
plt.show()
print(f"K-composition at step 0 {scores[0]:.3f}, final {scores[-1]:.3f}")
print(f"random Gaussian circuits {gaussian.mean():.3f} +- {gaussian.std():.3f}; "
      f"untrained models {fresh.mean():.3f} +- {fresh.std():.3f}")
### END SOLUTION

# %% [markdown]
# The left panel is the OOD error of the run, the right one the score at each checkpoint (black) with
# the two baselines as bands (mean +- 2 std). **Decide.** What do you conclude, from this one run,
# about layer 1's keys and layer 0's output? Do the two baselines differ? What can this weight-level
# score not tell you?

# %%
### BEGIN SOLUTION
top = max(gaussian.mean() + 2 * gaussian.std(), fresh.mean() + 2 * fresh.std())
z_fresh = (scores[-1] - fresh.mean()) / fresh.std()
above = np.flatnonzero(scores > top)
learned = np.flatnonzero(np.array(run.history["ood_error"]) < 0.5)
gap = abs(fresh.mean() - gaussian.mean()) / np.hypot(fresh.std(), gaussian.std())
print(f"Model answer. The two baselines: untrained models {fresh.mean():.3f} +- {fresh.std():.3f}, random Gaussian "
      f"circuits {gaussian.mean():.3f} +- {gaussian.std():.3f}, {gap:.1f} (combined) std apart: "
      + ("untrained heads score like random matrices, so here the choice of baseline hardly matters (section 13 asks "
         "the same question of random heads in a trained real model)." if gap < 1 else "the untrained heads are not like random matrices, "
         "so the baseline matters even here."))
print(f"The final score {scores[-1]:.3f} is {z_fresh:.1f} std of the untrained models above their mean "
      f"({'above' if scores[-1] > top else 'not above'} the upper edge of both bands, {top:.3f}).")
if len(above) and len(learned):
    print(f"It first lies above both bands at step {run.steps[above[0]]}; the OOD error first falls below 0.5 at step "
          f"{run.steps[learned[0]]}. In this run the two move "
          f"{'together (within one checkpoint)' if abs(int(above[0]) - int(learned[0])) <= 1 else 'at different times'}; "
          "one run is one observation, not a law (section 10's sweep shows how much seeds differ).")
else:
    print("In this run the score never lies above both bands, or the OOD error never falls below 0.5: no timing to compare.")
print("The score measures how much of what layer 0 writes lands where layer 1's keys read, weighted by the "
      "singular values; it is a correlation in the weights. Whether the model uses that path is what the "
      "ablation, the patching and the removal of exercises 1 to 3 test.")
### END SOLUTION

# %% [markdown]
# ## Exercise 5: find the heads of the circuit in a real model
#
# SmolLM2-135M-Instruct ships with the course. `load_llama_gguf()` runs it with the same hook points as
# the toy model. We feed it a prefix token and then `length` random tokens repeated twice, and cache
# every layer's attention pattern, stacked as `patterns [n_layers, batch, n_heads, T, T]`.
#
# Write `head_scores(patterns, length)` returning two `[n_layers, n_heads]` arrays:
#
# * the **previous-token score**: how much each head attends from a token to the token just before it;
# * the **induction score**: how much each head attends from a token to the position that an induction
#   head would read, the one whose token comes next;
#
# each averaged over the batch and over all `length` queries of the **second** copy, its first token
# included. You decide the offsets. The check uses random patterns and tells you if an offset or the start of the second
# copy looks wrong.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Write out a small example: prefix `P`, then `a b c a b c`. At the second `b`, which earlier position
# holds the token that comes next? How many positions back is it, in terms of `length`?
# </details>

# %%
def head_scores(patterns, length):
    """-> (previous_token_scores [n_layers, n_heads], induction_scores [n_layers, n_heads])."""
    ### BEGIN SOLUTION
    T = patterns.shape[-1]
    q = torch.arange(T - length, T)  # the second copy's queries
    prev = patterns[:, :, :, q, q - 1].mean(dim=(1, 3))
    induction = patterns[:, :, :, q, q - length + 1].mean(dim=(1, 3))
    return prev.numpy(), induction.numpy()
    ### END SOLUTION


checks.check_head_scores(head_scores)

# %% [markdown]
# Now run SmolLM2 (loading takes a few seconds). **Predict first:** in which layers do you expect the
# induction heads, and the previous-token heads that feed them?

# %%
from toyattn.weights.llama import load_llama_gguf  # noqa: E402

llm = load_llama_gguf()
LENGTH = 30
g = torch.Generator().manual_seed(0)
half = torch.randint(1000, 20000, (3, LENGTH), generator=g)
tokens = torch.cat([torch.ones(3, 1, dtype=torch.long), half, half], dim=1)
_, cache = llm.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
patterns = torch.stack([cache[f"blocks.{i}.attn.hook_pattern"] for i in range(llm.cfg.n_layers)])
prev_scores, induction_scores = head_scores(patterns, LENGTH)

# %% [markdown]
# **Decide.** Which heads are the induction heads, and which previous-token heads could feed them (they
# must sit in an earlier layer)? Plot the two score maps, and print your picks with their scores next
# to the scores of a typical head, so that a reader can see why you picked them.

# %%
### BEGIN SOLUTION
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, s, name in ((axes[0], prev_scores, "previous-token"), (axes[1], induction_scores, "induction")):
    im = ax.imshow(s, aspect="auto", vmin=0, vmax=1)
    ax.set(title=f"{name} score", xlabel="head", ylabel="layer")
    plt.colorbar(im, ax=ax)
plt.show()
print(f"a typical head: median previous-token score {np.median(prev_scores):.2f}, "
      f"median induction score {np.median(induction_scores):.2f}")
best = np.argsort(induction_scores, axis=None)[::-1][:3]
for i in best:
    layer, head = divmod(int(i), llm.cfg.n_heads)
    earlier = prev_scores[:layer]
    pl, ph = divmod(int(earlier.argmax()), llm.cfg.n_heads)
    print(f"induction head L{layer}H{head} ({induction_scores[layer, head]:.2f}); "
          f"strongest earlier previous-token head L{pl}H{ph} ({prev_scores[pl, ph]:.2f})")
### END SOLUTION

# %% [markdown]
# The left map colours each head (column) of each layer (row) by its previous-token score, the right
# one by its induction score; the printed lines name the top three induction heads and, for each, the
# strongest previous-token head in an earlier layer. High attention scores make a head a candidate:
# whether it does the work is a causal question (section 14, and the second item below).
#
# ## What next
#
# * Compare your picks with `toyattn.circuits.detection.top_heads` and with section 11 of the lesson.
# * Ablate your top induction head in SmolLM2 with your `ablate_head`, by **mean** ablation over at
#   least 32 sequences of repeated random tokens, and measure the loss on the second copy with an error
#   bar (the spread over sequences). Then ablate the top three at once (one hook per head): how much
#   does one head matter?
# * Compute the K-composition of your previous-token heads into your induction heads with
#   `toyattn.circuits.composition.k_composition(ov_factors(writer), qk_factors(reader))` (the circuits
#   kept factored by `toyattn.circuits.head_circuits.ov_factors` and `qk_factors`: they are 576 x 576), against
#   `toyattn.circuits.composition.random_composition_baseline(576, 64)`, and compare with section 13, which
#   already sets K-composition against random head pairs of the model. Then do what the lesson does
#   not: compute the **Q-composition** of the same pairs (`toyattn.circuits.composition.q_composition`)
#   against random head pairs, and see whether the circuit heads stand out there too.
