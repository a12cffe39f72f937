# %% [markdown]
# # Lesson 5 problems: test a circuit causally, score composition, find heads in a real model
#
# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*
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
# Now use it. **Predict first**, then run: which ablation hurts the second-copy accuracy more, zero or
# mean? Which head? Decide how you measure accuracy on the second copy (`ood.scored` marks the scored
# targets; position `j` is predicted from the logits at `j - 1`).

# %%
### BEGIN SOLUTION
def second_copy_accuracy(logits, batch):
    right = logits[:, :-1].argmax(-1) == batch.tokens[:, 1:]
    scored = batch.scored[:, 1:]
    return float((right & scored).sum() / scored.sum())


with torch.no_grad():
    print(f"clean: {second_copy_accuracy(model(ood.tokens), ood):.3f}")
for layer in (0, 1):
    for mode in ("zero", "mean"):
        acc = second_copy_accuracy(ablate_head(model, ood.tokens, layer, 0, mode), ood)
        print(f"layer {layer + 1}, {mode} ablation: {acc:.3f}")
### END SOLUTION

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
    ### BEGIN SOLUTION
    W_ov, W_qk = np.asarray(W_ov, dtype=np.float64), np.asarray(W_qk, dtype=np.float64)
    return float(np.linalg.norm(W_ov @ W_qk.T) / (np.linalg.norm(W_ov) * np.linalg.norm(W_qk)))
    ### END SOLUTION


checks.check_k_composition(k_composition)

# %% [markdown]
# A score is only meaningful against a baseline. Compute the K-composition of layer 1's head into layer
# 2's head at every checkpoint of `run`, and a baseline from random circuits of the **same shapes and
# rank** as the model's. Plot both against the training step, next to the OOD error. What do you
# conclude? (You choose how to build the random circuits and how many to draw.)

# %%
### BEGIN SOLUTION
def circuits(m):
    a1, a2 = m.blocks[0].attn, m.blocks[1].attn
    W_ov = (a1.W_V[0] @ a1.W_O[0]).detach().numpy()
    W_qk = (a2.W_Q[0] @ a2.W_K[0].T).detach().numpy() / np.sqrt(a2.W_Q.shape[-1])
    return W_ov, W_qk


scores = [k_composition(*circuits(run.load(i))) for i in range(len(run))]
rng = np.random.default_rng(0)
d, dh = model.cfg.d_model, model.cfg.d_head
random_circuit = lambda: rng.standard_normal((d, dh)) @ rng.standard_normal((dh, d))  # noqa: E731
baseline = np.array([k_composition(random_circuit(), random_circuit()) for _ in range(200)])
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].plot(run.steps, run.history["ood_error"])
axes[0].set(title="OOD error", xlabel="step")
axes[1].plot(run.steps, scores, "-o", ms=3, label="layer 1 -> layer 2")
axes[1].axhspan(baseline.mean() - 2 * baseline.std(), baseline.mean() + 2 * baseline.std(), color="gray", alpha=0.3,
                label="random circuits, mean +- 2 std")
axes[1].set(title="K-composition", xlabel="step", ylim=(0, 1))
axes[1].legend()
plt.show()
print(f"final {scores[-1]:.3f}; random {baseline.mean():.3f} +- {baseline.std():.3f}")
### END SOLUTION

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
    ### BEGIN SOLUTION
    T = patterns.shape[-1]
    q = torch.arange(T - length, T)  # the second copy's queries
    prev = patterns[:, :, :, q, q - 1].mean(dim=(1, 3))
    induction = patterns[:, :, :, q, q - length + 1].mean(dim=(1, 3))
    return prev.numpy(), induction.numpy()
    ### END SOLUTION


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

### BEGIN SOLUTION
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, s, name in ((axes[0], prev_scores, "previous-token"), (axes[1], induction_scores, "induction")):
    im = ax.imshow(s, aspect="auto", vmin=0, vmax=1)
    ax.set(title=f"{name} score", xlabel="head", ylabel="layer")
    plt.colorbar(im, ax=ax)
plt.show()
best = np.argsort(induction_scores, axis=None)[::-1][:3]
for i in best:
    layer, head = divmod(int(i), llm.cfg.n_heads)
    earlier = prev_scores[:layer]
    pl, ph = divmod(int(earlier.argmax()), llm.cfg.n_heads)
    print(f"induction head L{layer}H{head} ({induction_scores[layer, head]:.2f}); "
          f"strongest earlier previous-token head L{pl}H{ph} ({prev_scores[pl, ph]:.2f})")
### END SOLUTION

# %% [markdown]
# ## What next
#
# * Compare your picks with `toyattn.induction_heads.top_heads` and with section 11 of the lesson.
# * Ablate your top induction head in SmolLM2 with your `ablate_head` and measure the loss on the second
#   copy. Then ablate the top three: how much does one head matter?
# * Compute the K-composition of your previous-token heads into your induction heads with
#   `toyattn.induction_heads.k_composition_factored` (the circuits are 576 x 576), against
#   `toyattn.composition.random_composition_baseline(576, 64)`.
