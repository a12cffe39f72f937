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
# # Warm-up: tensors, softmax and one-hot vectors
#
# *This is the exercise version of the problem set: your code goes where a cell says YOUR CODE HERE; the solved version is in `solutions/`.*
#
# **Learning goals.** After this warm-up you can
# 1. write a numerically stable softmax, the function that turns attention scores into weights, and
#    say what adding to or scaling the scores does to the weights;
# 2. turn token ids into one-hot vectors, the simplest embedding, and explain why multiplying one by a
#    matrix looks up a row;
# 3. use the course's checks: run the check cell right below each exercise and read its message.
#
# After each exercise comes a question: answer it before you run the cell below it.
#
# Each exercise has a cell with `# YOUR CODE HERE` and `raise NotImplementedError()`. Replace those
# two lines with your code, run the cell, then run the check below it. A check prints one line
# starting with ✅ when your answer matches the reference, and otherwise tells you what it expected
# and what it got.

# %%
import torch

from toyattn import checks, seed_everything

_ = seed_everything(0)  # returns a generator; `_ =` keeps it from being displayed

# %% [markdown]
# ## Exercise 1: a softmax that does not overflow
#
# Attention turns a row of scores $s_1, \dots, s_n$ into weights $w_i = e^{s_i} / \sum_j e^{s_j}$:
# positive, summing to 1, largest where the score is largest. Computed literally, $e^{1000}$ overflows
# to `inf` in float32.
#
# Write `softmax(x)` over the last axis of a tensor of any shape, from elementary operations
# (not `torch.softmax` or its relatives: the check notices). It must give the right weights for
# scores around 1000, and for a masked row whose scores are `-inf` except one. How you keep the
# exponentials from overflowing is your decision.

# %% [markdown]
# <details><summary>Hint (open it if you are stuck)</summary>
#
# Multiplying the numerator and the denominator by the same number $e^{-c}$ does not change the
# weights. Which $c$ makes the largest exponent exactly $e^0 = 1$? Tensors have `.max(dim=-1,
# keepdim=True)`, `.exp()` and `.sum(dim=-1, keepdim=True)`; `keepdim=True` keeps the axis, so the
# result broadcasts against `x`.
# </details>

# %%
def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis. x: [..., n] -> [..., n], each row sums to 1."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_softmax(softmax)

# %% [markdown]
# **Predict first**, then run the next cell: for the scores `[1000, 1001, 1002]`,
# 1. what does the literal formula `x.exp() / x.exp().sum()` return?
# 2. what does your `softmax` return, and how does it compare with `softmax` of `[0, 1, 2]`?
# 3. what happens to the weights if you add 5 to every score? If you multiply every score by 10?

# %%
scores = torch.tensor([1000.0, 1001.0, 1002.0])
print("literal formula   :", scores.exp() / scores.exp().sum())
print("softmax(scores)   :", softmax(scores))
print("softmax([0, 1, 2]):", softmax(scores - 1000))
print("scores + 5        :", softmax(scores + 5))
print("scores * 10       :", softmax(scores * 10))

# %% [markdown]
# The literal formula gives `nan`: $e^{1000}$ is `inf`, and `inf / inf` is not a number. Your softmax
# gives the same weights as for `[0, 1, 2]`: adding the same number to every score multiplies the
# numerator and the denominator by the same factor, which cancels. That is also why subtracting the
# maximum is allowed. Multiplying the scores, on the other hand, changes the weights: larger
# differences make the softmax sharper, closer to putting all weight on the largest score. That is why
# attention divides its scores by $\sqrt{d_{head}}$ (lesson 1): a query-key score is a sum of
# $d_{head}$ products, so for random entries of variance 1 its standard deviation grows like
# $\sqrt{d_{head}}$; dividing by it keeps the scores, and so the softmax's sharpness, on the same scale
# whatever the head size.
#
# ## Exercise 2: one-hot vectors
#
# In lesson 1 the vocabulary has 7 tokens. A one-hot vector for token id 3 is
# `[0, 0, 0, 1, 0, 0, 0]`. Write `one_hot(ids, n_classes)` for a tensor of token ids of any shape,
# returning a **float** tensor of shape `[*ids.shape, n_classes]` (floats, so it can be multiplied with
# weights). Note that `n_classes` is given: the ids need not contain the largest token.

# %%
def one_hot(ids: torch.Tensor, n_classes: int) -> torch.Tensor:
    """ids: [...] integer tensor -> [..., n_classes] float tensor."""
    # YOUR CODE HERE
    raise NotImplementedError()


checks.check_one_hot(one_hot)

# %% [markdown]
# **Predict first:** `E` below is a `[7, 3]` embedding matrix (one row of 3 numbers per token).
# What is `one_hot(ids, 7) @ E` for `ids = [3, 0, 3]`: which numbers, in which shape? Run the next
# cell to see.

# %%
E = torch.arange(21.0).reshape(7, 3)
ids = torch.tensor([3, 0, 3])
print("one_hot(ids, 7) @ E =\n", one_hot(ids, 7) @ E)
print("E[ids] =\n", E[ids])

# %% [markdown]
# A `[3, 3]` matrix holding rows 3, 0 and 3 of `E`: multiplying a one-hot vector by a matrix picks
# out one row. That is what an embedding layer does, only faster (`E[ids]`, or `nn.Embedding`).
#
# ## What you practised, and what to try next
#
# * Subtracting the maximum is why every deep-learning library's softmax is stable; the course's
#   attention code relies on `torch.softmax`, which does the same.
# * Multiplying a one-hot vector by a matrix is a row lookup: that is what `nn.Embedding` does, faster.
#
# **Try next:** give `softmax` a row of scores that are all `-inf`. What comes out, and why? (A causal
# mask never does this: every query may see at least itself.) Then open `notebooks/01_attention_toy`
# to meet a whole attention head.
