"""One causal attention head you can read: the model of lesson 1 (``notebooks/01_attention_toy``).

The whole model, for tokens ``x`` of one sentence (every size is tiny on purpose)::

    resid = W_E[x] + W_pos[0..pos)           # [pos, d_model], d_model = vocab_size = 7
    q, k  = resid @ W_Q, resid @ W_K          # [pos, d_head]  (d_head = 20 by default)
    v     = resid @ W_V                       # [pos, vocab_size]: values are already "votes" for tokens
    scores  = q @ k.T / sqrt(d_head), with -inf above the diagonal (causal: no peeking ahead)
    pattern = softmax(scores)                 # [q_pos, k_pos], each row sums to 1
    z       = pattern @ v                     # what each position read from the earlier ones
    logits  = z + resid                       # the skip connection adds the input embedding back

There is no MLP and no output matrix: with ``d_model = vocab_size`` the value vectors and the
embedding live directly in "token space", so every number in a heatmap has a token's name.

Hook points (TransformerLens names; one head, so there is no head axis):

=====================  ===============================  ==========================================
name                   shape                            what it is
=====================  ===============================  ==========================================
``hook_embed``         ``[batch, pos, d_model]``        token embeddings ``W_E[x]``
``hook_pos_embed``     ``[batch, pos, d_model]``        position embeddings (only if ``positions``)
``hook_resid_pre``     ``[batch, pos, d_model]``        their sum, the head's input
``hook_q``             ``[batch, pos, d_head]``         queries
``hook_k``             ``[batch, pos, d_head]``         keys
``hook_v``             ``[batch, pos, vocab_size]``     values
``hook_attn_scores``   ``[batch, q_pos, k_pos]``        scaled scores, ``-inf`` above the diagonal
``hook_pattern``       ``[batch, q_pos, k_pos]``        attention weights (softmax of the scores)
``hook_z``             ``[batch, pos, vocab_size]``     the head's output, ``pattern @ v``
``hook_logits``        ``[batch, pos, vocab_size]``     ``z`` (+ ``resid_pre`` with the skip)
=====================  ===============================  ==========================================
"""

from __future__ import annotations

import math

import torch
from torch import nn

from toyattn.hooks import HookedModule, HookPoint
from toyattn.models.attention import causal_mask
from toyattn.validate import positive_int


class OneHeadAttention(HookedModule):
    """A single causal attention head with a skip connection, trained on :mod:`toyattn.sentences.corpus`.

    Args:
        vocab_size: tokens in the vocabulary; also ``d_model`` (the embedding size), as in the
            research notebook the lesson grew from.
        max_len: longest sequence (number of learned positions).
        d_head: size of queries and keys (the original's ``H``; try 10, 20, 40).
        positions: learn position embeddings (``False``: the head sees only which tokens there are).
        skip: add the input embedding to the head's output (``False``: the prediction comes from
            the head alone).

    ``forward(tokens)`` takes ``[batch, pos]`` (or one sequence ``[pos]``) int64 ids and returns
    logits ``[batch, pos, vocab_size]`` (``[pos, vocab_size]`` for one sequence). Use
    :meth:`probs` for probabilities; training uses cross-entropy on the logits, which is
    numerically safer than taking the log of a softmax.
    """

    def __init__(
        self, vocab_size: int = 7, max_len: int = 5, d_head: int = 20, *, positions: bool = True, skip: bool = True
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("max_len", max_len), ("d_head", d_head)):
            positive_int(value, name)
        self.vocab_size = vocab_size
        self.d_model = vocab_size
        self.max_len = max_len
        self.d_head = d_head
        self.positions = bool(positions)
        self.skip = bool(skip)

        self.embed = nn.Embedding(vocab_size, self.d_model)
        self.pos_embed = nn.Embedding(max_len, self.d_model) if self.positions else None
        # Plain bias-free linear maps, as in the original; weights are [out, in] (nn.Linear's layout).
        self.W_Q = nn.Linear(self.d_model, d_head, bias=False)
        self.W_K = nn.Linear(self.d_model, d_head, bias=False)
        self.W_V = nn.Linear(self.d_model, vocab_size, bias=False)
        # A buffer follows the model to its device with .to(device): no global device inside forward.
        self.register_buffer("mask", causal_mask(max_len), persistent=False)

        self.hook_embed = HookPoint()
        if self.positions:  # like TransformerLens: no position embedding, no hook point for it
            self.hook_pos_embed = HookPoint()
        self.hook_resid_pre = HookPoint()
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        self.hook_logits = HookPoint()
        self.setup_hooks()

    @classmethod
    def from_corpus(cls, corpus, **kwargs) -> OneHeadAttention:
        """A model sized for a :class:`toyattn.sentences.corpus.ToyCorpus` (vocabulary and sentence length)."""
        return cls(vocab_size=corpus.vocab_size, max_len=corpus.seq_len, **kwargs)

    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(
                f"tokens must be a torch tensor of token ids, got {type(tokens).__name__}; "
                f"use corpus.encode(...) or corpus.tensors()."
            )
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"tokens must hold integer ids, got dtype {tokens.dtype}; convert with tokens.long().")
        if tokens.dim() not in (1, 2):
            raise ValueError(f"tokens must be [batch, pos] or [pos], got shape {tuple(tokens.shape)}.")
        n_pos = tokens.shape[-1]
        if n_pos == 0:
            raise ValueError("tokens is empty: give at least one token.")
        if n_pos > self.max_len:
            raise ValueError(
                f"The sequence has {n_pos} tokens but the model has {self.max_len} positions (max_len). "
                f"Shorten the input or build the model with max_len >= {n_pos}."
            )
        device = self.embed.weight.device
        if tokens.device != device:
            raise ValueError(
                f"tokens are on {tokens.device} but the model is on {device}; move them with tokens.to({str(device)!r})."
            )
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(f"Token ids must be in 0..{self.vocab_size - 1}, got values from {lo} to {hi}.")
        return tokens.long()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, pos, vocab_size]`` for token ids ``[batch, pos]`` (or ``[pos]`` -> ``[pos, vocab_size]``)."""
        tokens = self._check_tokens(tokens)
        single = tokens.dim() == 1
        if single:
            tokens = tokens.unsqueeze(0)
        n_pos = tokens.shape[1]

        resid = self.hook_embed(self.embed(tokens))  # [batch, pos, d_model]
        if self.pos_embed is not None:
            pos = torch.arange(n_pos, device=tokens.device)
            pos_embed = self.hook_pos_embed(self.pos_embed(pos).expand_as(resid))
            resid = resid + pos_embed
        resid = self.hook_resid_pre(resid)

        q = self.hook_q(self.W_Q(resid))  # [batch, pos, d_head]
        k = self.hook_k(self.W_K(resid))  # [batch, pos, d_head]
        v = self.hook_v(self.W_V(resid))  # [batch, pos, vocab_size]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # [batch, q_pos, k_pos]
        scores = scores.masked_fill(~self.mask[:n_pos, :n_pos], float("-inf"))  # the one and only mask
        scores = self.hook_attn_scores(scores)
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = self.hook_z(pattern @ v)  # [batch, pos, vocab_size]
        logits = z + resid if self.skip else z
        logits = self.hook_logits(logits)
        return logits[0] if single else logits

    def probs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token probabilities, ``softmax(forward(tokens))`` over the vocabulary (no gradient)."""
        with torch.no_grad():
            return torch.softmax(self(tokens), dim=-1)

    def extra_repr(self) -> str:
        return (
            f"vocab_size={self.vocab_size}, d_model={self.d_model}, max_len={self.max_len}, d_head={self.d_head}, "
            f"positions={self.positions}, skip={self.skip}"
        )
