# %% [markdown]
# # Warm-up: tensors, softmax and one-hot vectors
#
# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*
#
# **Learning goals.** After this warm-up you can
# 1. write a numerically stable softmax, the function that turns attention scores into weights;
# 2. turn token ids into one-hot vectors, the simplest embedding;
# 3. use the course's checks: run the check cell right below each exercise and read its message.
#
# Each exercise has a cell with `# YOUR CODE HERE` and `raise NotImplementedError()`. Replace those
# two lines with your code, run the cell, then run the check below it. A check prints one line
# starting with ✅ when your answer matches the reference, and otherwise tells you what it expected
# and what it got.

# %%
import torch

from toyattn import checks, seed_everything

seed_everything(0)

# %% [markdown]
# ## Exercise 1: a softmax that does not overflow
#
# Attention turns a row of scores $s_1, \dots, s_n$ into weights $w_i = e^{s_i} / \sum_j e^{s_j}$.
# Computed literally, $e^{1000}$ overflows to `inf` and the result is `nan`.
#
# **Predict first:** what does subtracting the row's maximum from every score change in the result?
# (Nothing: the factor $e^{-m}$ cancels between numerator and denominator. But now the largest
# exponent is $e^0 = 1$, so nothing overflows.)
#
# Write `softmax(x)` over the last axis of a tensor of any shape. Use only `exp`, `max` and `sum`
# (not `torch.softmax`). A row of scores that are `-inf` except one (a masked row) must still work.

# %%
def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis. x: [..., n] -> [..., n], each row sums to 1."""
    ### BEGIN SOLUTION
    shifted = x - x.max(dim=-1, keepdim=True).values
    e = shifted.exp()
    return e / e.sum(dim=-1, keepdim=True)
    ### END SOLUTION


checks.check_softmax(softmax)

# %% [markdown]
# ## Exercise 2: one-hot vectors
#
# In lesson 1 the vocabulary has 7 tokens. A one-hot vector for token id 3 is
# `[0, 0, 0, 1, 0, 0, 0]`: multiplying it by an embedding matrix picks out row 3.
#
# Write `one_hot(ids, n_classes)` returning a **float** tensor of shape `[*ids.shape, n_classes]`
# (floats, so it can be multiplied with weights).

# %%
def one_hot(ids: torch.Tensor, n_classes: int) -> torch.Tensor:
    """ids: [...] integer tensor -> [..., n_classes] float tensor."""
    ### BEGIN SOLUTION
    out = torch.zeros(*ids.shape, n_classes)
    out.scatter_(-1, ids.unsqueeze(-1), 1.0)
    return out
    ### END SOLUTION


checks.check_one_hot(one_hot)

# %% [markdown]
# ## What you practised, and what to try next
#
# * Subtracting the maximum is why every deep-learning library's softmax is stable; the course's
#   attention code relies on `torch.softmax`, which does the same.
# * Multiplying a one-hot vector by a matrix is a row lookup: that is what `nn.Embedding` does, faster.
#
# **Try next:** check that `softmax(x + 5)` equals `softmax(x)` for any `x` (why?), and open
# `notebooks/01_attention_toy` to meet a whole attention head.
