# %% [markdown]
# # Lesson 5 problems: test a circuit causally, score composition, find heads in a real model
#
# *This is the exercise version of the problem set: your code goes where a cell says YOUR CODE HERE; the solved version is in `solutions/`.*
#
# **Learning goals.** After these problems you can
# 1. silence one attention head with a hook, by zero and by mean ablation, and measure what breaks;
# 2. compute the K-composition score of two heads and judge it against random circuits;
# 3. score every head of a real model as a previous-token or induction head from its attention on
#    repeated random tokens, and pick out the heads of the induction circuit.
#
# Read `notebooks/05_induction_circuits` first. Conventions (row vectors, as in the course's models):
# `W_Q, W_K, W_V` are `[d_model, d_head]`, `W_O` is `[d_head, d_model]`; a head's QK circuit
# $W_{qk} = W_Q W_K^\top / \sqrt{d_{head}}$ scores $x_q W_{qk} x_k^\top$ and its OV circuit
# $W_{ov} = W_V W_O$ writes $x W_{ov}$ for a source residual $x$.
#
# Each exercise says what to compute; how is up to you. A **Hint** cell follows some of them: skip it
# unless you are stuck. Every check draws fresh inputs and names the mistake a wrong answer looks like.
# Checks refuse answers that call `toyattn.head_ablation`, `toyattn.composition` or
# `toyattn.induction_heads`, which hold the course's own solutions; use them afterwards to compare.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from toyattn import checks, seed_everything
from toyattn.induction import CopyTaskConfig, TrainConfig, copy_error, make_test_sets, train_copy_model

seed_everything(0)
torch.set_num_threads(1)

# %% [markdown]
# A model to work on: lesson 4's default run (fresh patterns, 600 steps), a checkpoint every 50 steps.

# %%
TASK = CopyTaskConfig()
run = train_copy_model(TASK, train=TrainConfig(checkpoint_every=50), device="cpu")
model = run.model
ood = make_test_sets(TASK, 512, seed=99)["ood"]
print(f"{len(run)} checkpoints; final OOD error {copy_error(model, ood):.3f}")

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
# Now use it. **Predict first**, then run: which ablation hurts the second-copy accuracy more, zero or
# mean? Which head? Decide how you measure accuracy on the second copy (`ood.scored` marks the scored
# targets; position `j` is predicted from the logits at `j - 1`).

# %%
# YOUR CODE HERE
raise NotImplementedError()

# %% [markdown]
# ## Exercise 2: K-composition
#
# Elhage et al. define the composition of two matrices as $\mathrm{comp}(A, B) = \|AB\|_F / (\|A\|_F
# \|B\|_F)$. Write `k_composition(W_ov, W_qk)`: how much the **key side** of a reader head (its QK
# circuit `W_qk`, `[d_model, d_model]`) reads what a writer head writes (its OV circuit `W_ov`), in the
# course's row convention. Return one number.
#
# The key decision is which product to take: follow a source residual $x$ through the writer, and ask
# where the result enters the reader's score $x_q W_{qk} x_k^\top$.

# %%
def k_composition(W_ov, W_qk) -> float:
    """-> the K-composition score of a writer's W_ov and a reader's W_qk (both [d_model, d_model])."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_k_composition(k_composition)

# %% [markdown]
# A score is only meaningful against a baseline. Compute the K-composition of layer 1's head into layer
# 2's head at every checkpoint of `run`, and a baseline from random circuits of the **same shapes and
# rank** as the model's. Plot both against the training step, next to the OOD error. What do you
# conclude? (You choose how to build the random circuits and how many to draw.)

# %%
# YOUR CODE HERE
raise NotImplementedError()

# %% [markdown]
# ## Exercise 3: find the heads of the circuit in a real model
#
# SmolLM2-135M ships with the course. `load_llama_gguf()` runs it with the same hook points as the toy
# model. We feed it a prefix token and then `length` random tokens repeated twice, and cache every
# layer's attention pattern, stacked as `patterns [n_layers, batch, n_heads, T, T]`.
#
# Write `head_scores(patterns, length)` returning two `[n_layers, n_heads]` arrays:
#
# * the **previous-token score**: how much each head attends from a token to the token just before it;
# * the **induction score**: how much each head attends from a token to the position that an induction
#   head would read, the one whose token comes next;
#
# each averaged over the batch and over the queries of the **second** copy. You decide the offsets and
# the positions. The check uses random patterns and tells you if an offset or the start of the second
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
# Now run SmolLM2 (loading takes a few seconds). Then decide: which heads are the induction heads, and
# which previous-token heads could feed them (they must sit in an earlier layer)? Print your picks with
# their scores.

# %%
from toyattn.models.llama import load_llama_gguf  # noqa: E402

llm = load_llama_gguf()
LENGTH = 30
g = torch.Generator().manual_seed(0)
half = torch.randint(1000, 20000, (3, LENGTH), generator=g)
tokens = torch.cat([torch.ones(3, 1, dtype=torch.long), half, half], dim=1)
_, cache = llm.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
patterns = torch.stack([cache[f"blocks.{i}.attn.hook_pattern"] for i in range(llm.cfg.n_layers)])
prev_scores, induction_scores = head_scores(patterns, LENGTH)

# YOUR CODE HERE
raise NotImplementedError()

# %% [markdown]
# ## What next
#
# * Compare your picks with `toyattn.induction_heads.top_heads` and with section 11 of the lesson.
# * Ablate your top induction head in SmolLM2 with your `ablate_head` and measure the loss on the second
#   copy. Then ablate the top three: how much does one head matter?
# * Compute the K-composition of your previous-token heads into your induction heads with
#   `toyattn.induction_heads.k_composition_factored` (the circuits are 576 x 576), against
#   `toyattn.composition.random_composition_baseline(576, 64)`.
