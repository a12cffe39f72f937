# %% [markdown]
# # Lesson 5 problems: test a circuit causally, score composition, find heads in a real model
#
# *This is the exercise version of the problem set: your code goes where a cell says YOUR CODE HERE; the solved version is in `solutions/`.*
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
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_ablate_head(ablate_head)

# %% [markdown]
# Now use it on the trained model. **Predict first** (write it down): silencing which head hurts the
# accuracy on the second copy more, layer 0's or layer 1's? For each, does zero or mean ablation hurt
# more, and by how much? Then measure: decide how you score the second copy (`ood.scored` marks the
# scored targets; position `j` is predicted from the logits at `j - 1`), and print, for the clean run
# and after each of the four ablations, the accuracy and the loss (the mean cross-entropy of the right
# next token), and how many targets you scored.

# %%
# YOUR CODE HERE
raise NotImplementedError()

# %% [markdown]
# **Decide.** Which ablation hurts more? Is the difference between zero and mean ablation large enough
# to change what you conclude about either head? Write your answer in the cell below.

# %%
# YOUR CODE HERE
raise NotImplementedError()

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
    # YOUR CODE HERE
    raise NotImplementedError()


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
    # YOUR CODE HERE
    raise NotImplementedError()


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

# YOUR CODE HERE
raise NotImplementedError()

# %% [markdown]
# **Decide.** What do the shares say layer 0's head carries, and at which positions does it matter?
# Would patching layer 1's head at the second copy be a good test of the claim?

# %%
# YOUR CODE HERE
raise NotImplementedError()

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
    # YOUR CODE HERE
    raise NotImplementedError()


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
    # YOUR CODE HERE
    raise NotImplementedError()


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
# YOUR CODE HERE
raise NotImplementedError()

# %% [markdown]
# The histogram shows the accuracy after each random removal (gray), the two chosen removals (lines)
# and the clean accuracy (dashed). **Decide.** Does the circuit run through the subspace that layer 1's
# keys read? What does each of your controls add to that answer?

# %%
# YOUR CODE HERE
raise NotImplementedError()

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
    # YOUR CODE HERE
    raise NotImplementedError()


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
# YOUR CODE HERE
raise NotImplementedError()

# %% [markdown]
# The left panel is the OOD error of the run, the right one the score at each checkpoint (black) with
# the two baselines as bands (mean +- 2 std). **Decide.** What do you conclude, from this one run,
# about layer 1's keys and layer 0's output? Do the two baselines differ? What can this weight-level
# score not tell you?

# %%
# YOUR CODE HERE
raise NotImplementedError()

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
    # YOUR CODE HERE
    raise NotImplementedError()


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
# YOUR CODE HERE
raise NotImplementedError()

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
