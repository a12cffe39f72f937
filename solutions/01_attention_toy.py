# %% [markdown]
# # Lesson 1 problem set: build and probe one attention head
#
# *This is the solved version of the problem set.* Students work in `exercises/01_attention_toy`.
#
# Work through `notebooks/01_attention_toy` first: it trains one causal attention head on
#
#     <ST> man ordered the chicken
#     <ST> woman ordered the beef
#
# and shows that "the" predicts chicken or beef by looking back at *man* or *woman*. Here you
# write the pieces yourself.
#
# **Learning goals.** After this problem set you can
# 1. build a causal mask and explain why it is applied once, before the softmax;
# 2. write the forward pass of scaled dot-product attention and check it against a real model;
# 3. read a model's prediction at one position from a `run_with_cache` cache;
# 4. split a head's output into what each query reads from each key;
# 5. write an activation-patching intervention with a temporary hook, and use it to flip
#    the model's answer.
#
# Each exercise has a cell with `# YOUR CODE HERE` and `raise NotImplementedError()`. Replace those
# two lines with your code, run the cell, then run the check below it. A check prints one line
# starting with ✅ when your answer matches the reference, and otherwise tells you what it expected
# and what it got.

# %%
import math

import matplotlib.pyplot as plt
import torch

from toyattn import checks, get_device
from toyattn.corpus import ToyCorpus
from toyattn.plotting import heatmap
from toyattn.training import train_one_head

device = get_device()
corpus = ToyCorpus()
trained = train_one_head(seed=77, device=device)  # the lesson's model: default recipe, seed 77
model, inputs = trained.model, trained.inputs
THE = corpus.position_of("the")  # 3
print(f"trained in {trained.seconds:.2f} s on {device}, final loss {trained.losses[-1]:.4f}")

# %% [markdown]
# ## Exercise 1: the causal mask
#
# A causal model at position $i$ may read positions $0, \dots, i$ and nothing after. Write
# `causal_mask(n_pos)` returning a **bool** tensor `[n_pos, n_pos]` with `True` where query $i$
# (row) may attend to key $j$ (column), i.e. where $j \le i$.
#
# **Predict first:** how many `True` entries does the mask for 5 positions have?
#
# *Hint:* `torch.ones(..., dtype=torch.bool)` and `.tril()`.

# %%
def causal_mask(n_pos: int) -> torch.Tensor:
    """[n_pos, n_pos] bool, True on and below the diagonal (query i may read keys 0..i)."""
    ### BEGIN SOLUTION
    return torch.ones(n_pos, n_pos, dtype=torch.bool).tril()
    ### END SOLUTION


checks.check_causal_mask(causal_mask)

# %% [markdown]
# 15 of 25: row $i$ has $i + 1$ allowed keys, $1 + 2 + 3 + 4 + 5 = 15$. The model uses the mask
# **once**: masked scores become $-\infty$ *before* the softmax, so their weight is exactly 0 and
# each row's remaining weights still sum to 1. (The original research notebook also multiplied
# the weights by the mask after the softmax: harmless, since they were already 0, but it hides
# where masking really happens.)

# %%
heatmap(causal_mask(5).int(), corpus.labels(0), corpus.labels(0), title="Causal mask (1 = may attend)",
        xlabel="key", ylabel="query", cmap="Greys", fmt="{:.0f}")
plt.show()

# %% [markdown]
# ## Exercise 2: the attention forward pass
#
# Write `attention(q, k, v)` for queries and keys `[batch, pos, d_head]` and values
# `[batch, pos, d_v]`. Return `(z, pattern)`:
#
# * scores $s = q k^\top / \sqrt{d_{head}}$, shape `[batch, q_pos, k_pos]`;
# * masked with your `causal_mask`: $-\infty$ where a key is in the query's future;
# * `pattern` = softmax of the scores over the **key** axis (each row sums to 1);
# * `z = pattern @ v`, shape `[batch, pos, d_v]`.
#
# *Hint:* `k.transpose(-2, -1)`, `scores.masked_fill(~mask, float("-inf"))`, `torch.softmax(..., dim=-1)`.

# %%
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal scaled dot-product attention. Returns (z [batch, pos, d_v], pattern [batch, q_pos, k_pos])."""
    ### BEGIN SOLUTION
    d_head = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)
    mask = causal_mask(q.shape[-2]).to(q.device)
    scores = scores.masked_fill(~mask, float("-inf"))
    pattern = torch.softmax(scores, dim=-1)
    return pattern @ v, pattern
    ### END SOLUTION


checks.check_attention_forward(attention)

# %% [markdown]
# Your function should reproduce the trained model exactly. `run_with_cache` gives us the model's
# own queries, keys and values; feed them to your `attention` and compare with the model's
# pattern and output. **Predict first:** how large will the largest difference be?

# %%
logits, cache = model.run_with_cache(inputs)
z_mine, pattern_mine = attention(cache["hook_q"], cache["hook_k"], cache["hook_v"])
print("largest |pattern difference|:", (pattern_mine - cache["hook_pattern"]).abs().max().item())
print("largest |z difference|      :", (z_mine - cache["hook_z"]).abs().max().item())

# %% [markdown]
# Zero, or a rounding error around $10^{-7}$: the model is nothing more than this function
# plus embeddings and a skip connection.
#
# ## Exercise 3: read the prediction from the cache
#
# The cache holds `hook_logits`, `[batch, pos, vocab]`: the model's output before the softmax.
# Write `next_token_probs(cache, position)` returning the next-token probabilities at
# `position` for every sentence, `[batch, vocab]`.

# %%
def next_token_probs(cache: dict[str, torch.Tensor], position: int) -> torch.Tensor:
    """Softmax of cache['hook_logits'] at `position`, over the vocabulary: [batch, vocab]."""
    ### BEGIN SOLUTION
    return torch.softmax(cache["hook_logits"][:, position], dim=-1)
    ### END SOLUTION


checks.check_next_token_probs(next_token_probs)

# %% [markdown]
# **Predict first:** what does the trained model predict after "the" in each sentence?

# %%
probs_the = next_token_probs(cache, THE)
for b in range(2):
    best = probs_the[b].argmax().item()
    print(f"{corpus.sentences[b]!r}: after 'the' -> {corpus.vocab[best]!r} (p = {probs_the[b, best]:.3f})")

# %% [markdown]
# ## Exercise 4: what does one query read from one key?
#
# The head's output at position $q$ is a sum over keys: $z_q = \sum_k a_{q,k} v_k$. Each term
# $a_{q,k} v_k$ is what query $q$ reads from key $k$, a vector with one vote per token. Write
# `edge_contribution(cache, query_pos, key_pos)` returning that term for every sentence,
# `[batch, d_v]`, from `cache["hook_pattern"]` `[batch, q_pos, k_pos]` and `cache["hook_v"]`
# `[batch, pos, d_v]`.
#
# *Hint:* index the weight as `[:, query_pos, key_pos, None]` so it broadcasts over `d_v`.

# %%
def edge_contribution(cache: dict[str, torch.Tensor], query_pos: int, key_pos: int) -> torch.Tensor:
    """pattern[:, query_pos, key_pos] * v[:, key_pos], shape [batch, d_v]."""
    ### BEGIN SOLUTION
    return cache["hook_pattern"][:, query_pos, key_pos, None] * cache["hook_v"][:, key_pos]
    ### END SOLUTION


checks.check_edge_contribution(edge_contribution)

# %% [markdown]
# Now split what "the" reads into one row per key. **Predict first:** which row carries the
# chicken/beef votes?

# %%
for b in range(2):
    rows = torch.stack([edge_contribution(cache, THE, key)[b] for key in range(THE + 1)])
    heatmap(rows, [f"from {lab}" for lab in corpus.labels(b)[: THE + 1]], list(corpus.vocab),
            title=f"What 'the' reads from each key: {corpus.sentences[b]}", cmap="RdBu_r", center=0, fmt="{:.1f}")
    plt.show()

# %% [markdown]
# Almost everything comes from position 1: the value of *man* votes for *chicken*, that of
# *woman* for *beef* (both also vote for *ordered*, which the skip connection cancels, as the
# lecture notebook shows). The other rows are close to 0 because their weights are.
#
# ## Exercise 5: patching, with a hook that cleans up after itself
#
# Write `patch_value(model, tokens, source_tokens, key_pos)`:
#
# 1. run the model on `source_tokens` with `model.run_with_cache` and keep its `hook_v`;
# 2. run it on `tokens` with a hook on `"hook_v"` that returns a copy of the activation in which
#    position `key_pos` is replaced by the source run's value there;
# 3. return the logits of that patched run, `[batch, pos, vocab]`.
#
# A hook is a function `fn(activation, *, hook)` returning `None` (just look) or a tensor of the
# same shape (replace). Attach it with `model.run_with_hooks(tokens, fwd_hooks=[("hook_v", fn)])`
# or inside `with model.hooks([("hook_v", fn)]):`. Both remove the hook afterwards, even if
# something raises; the check makes sure no hook is left behind.
#
# *Hint:* don't edit the activation in place: `v = v.clone()` first.

# %%
def patch_value(model, tokens: torch.Tensor, source_tokens: torch.Tensor, key_pos: int) -> torch.Tensor:
    """Logits of `tokens` with hook_v at key_pos copied from the run on `source_tokens`."""
    ### BEGIN SOLUTION
    _, source_cache = model.run_with_cache(source_tokens, names_filter="hook_v")
    source_v = source_cache["hook_v"]

    def put_source_value(v: torch.Tensor, *, hook) -> torch.Tensor:
        v = v.clone()
        v[:, key_pos] = source_v[:, key_pos]
        return v

    return model.run_with_hooks(tokens, fwd_hooks=[("hook_v", put_source_value)])
    ### END SOLUTION


checks.check_patch_value(patch_value)

# %% [markdown]
# The causal test. **Predict first:** run the *woman* sentence with the value at position 1 taken
# from the *man* sentence. What comes after "the"? And what if you patch position 2 ("ordered",
# the same token in both sentences) instead?

# %%
man, woman = inputs[:1], inputs[1:]
with torch.no_grad():
    for key_pos in (1, 2):
        patched = patch_value(model, woman, man, key_pos)
        p = torch.softmax(patched[0, THE], dim=-1)
        print(f"woman run, value at position {key_pos} from the man run: after 'the' -> "
              f"{corpus.vocab[p.argmax().item()]!r}  (p(chicken) = {p[corpus.token_id('chicken')]:.3f}, "
              f"p(beef) = {p[corpus.token_id('beef')]:.3f})")

# %% [markdown]
# Patching position 1 turns *beef* into *chicken*: what "the" reads from position 1 does not just
# correlate with the answer, it causes it. Patching position 2 changes nothing, because that
# value is the same in both runs and "the" hardly reads it.
#
# ## What to try next
#
# * Patch `hook_k` at position 1 instead of `hook_v`. The pattern changes but the value read does
#   not: does the answer flip? Why, or why not?
# * Write `ablate_edge`: a hook on `hook_pattern` that sets `pattern[:, 3, 1] = 0`, and compare
#   with `toyattn.interventions.ablate_edge`. What happens to p(chicken) and p(beef)?
# * Train with `train_one_head(seed=2)`, a seed that gets stuck (lecture, section 9), and use your
#   `edge_contribution` to see what "the" reads instead.
