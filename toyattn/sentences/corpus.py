"""The toy corpus of lesson 1: two sentences, seven tokens, next-token targets.

Taught in lesson 1 (``notebooks/01_attention_toy``)::

    <ST> man ordered the chicken
    <ST> woman ordered the beef

After "the" (position 3) the model must choose chicken or beef, and the only clue is two positions
before it, at position 1: man or woman. A single attention head can look back; reading how it does is
the lesson.

>>> corpus = ToyCorpus()
>>> corpus.encode("man ordered the chicken").tolist()
[0, 2, 4, 1, 3]
>>> corpus.decode([0, 5, 4, 1, 6])
['<ST>', 'woman', 'ordered', 'the', 'beef']
>>> corpus.labels("man ordered the chicken")
['0 <ST>', '1 man', '2 ordered', '3 the', '4 chicken']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from toyattn.device import get_device

#: The vocabulary, in the order of the research notebook the lesson grew from (not in this repository):
#: token id = index.
VOCAB: tuple[str, ...] = ("<ST>", "the", "man", "chicken", "ordered", "woman", "beef")
#: The two training sentences (the start token is added by :meth:`ToyCorpus.encode`).
SENTENCES: tuple[str, ...] = ("man ordered the chicken", "woman ordered the beef")
START = "<ST>"


@dataclass(frozen=True)
class ToyCorpus:
    """A tiny corpus: a vocabulary, a few sentences of equal length, and their next-token targets.

    Args:
        vocab: the tokens; a token's id is its index. Must contain ``start_token``.
        sentences: space-separated words from ``vocab``, all the same length (they form one batch).
        start_token: prepended to every sentence; the last position's target is this token again
            (the sequence "wraps around", as in the research notebook the lesson grew from).
    """

    vocab: tuple[str, ...] = VOCAB
    sentences: tuple[str, ...] = SENTENCES
    start_token: str = START
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocab", tuple(self.vocab))
        object.__setattr__(self, "sentences", tuple(self.sentences))
        if len(set(self.vocab)) != len(self.vocab):
            dupes = sorted({t for t in self.vocab if self.vocab.count(t) > 1})
            raise ValueError(f"The vocabulary lists {dupes} more than once; each token needs one id.")
        if self.start_token not in self.vocab:
            raise ValueError(f"The start token {self.start_token!r} is not in the vocabulary {list(self.vocab)}.")
        object.__setattr__(self, "_index", {tok: i for i, tok in enumerate(self.vocab)})
        if not self.sentences:
            raise ValueError("The corpus needs at least one sentence.")
        lengths = {len(self.split(s)) for s in self.sentences}
        if len(lengths) != 1:
            raise ValueError(
                f"All sentences must have the same number of words to form one batch, got lengths "
                f"{sorted(lengths)}: {list(self.sentences)}."
            )
        for s in self.sentences:
            self.encode(s)  # unknown words fail here, with the message from encode

    @property
    def vocab_size(self) -> int:
        """Number of tokens (7 for the default corpus)."""
        return len(self.vocab)

    @property
    def seq_len(self) -> int:
        """Tokens per encoded sentence, start token included (5 for the default corpus)."""
        return len(self.split(self.sentences[0])) + 1

    @staticmethod
    def split(sentence: str | Sequence[str]) -> list[str]:
        """Words of a sentence given as a string (split on spaces) or as a list of words."""
        if isinstance(sentence, str):
            return sentence.split()
        if not all(isinstance(w, str) for w in sentence):
            raise TypeError(f"A sentence is a string or a list of strings, got {sentence!r}.")
        return list(sentence)

    def token_id(self, token: str) -> int:
        """The id of one token; unknown tokens raise a ``ValueError`` listing the vocabulary."""
        try:
            return self._index[token]
        except KeyError:
            raise ValueError(
                f"{token!r} is not in the vocabulary. Known tokens: {', '.join(self.vocab)}."
            ) from None

    def encode(
        self,
        sentence: str | Sequence[str],
        *,
        add_start: bool = True,
        max_len: int | None = None,
        device: str | torch.device | None = "cpu",
    ) -> torch.Tensor:
        """Token ids of a sentence, ``[pos]`` (int64), with the start token first by default.

        Args:
            sentence: ``"man ordered the chicken"`` or ``["man", "ordered", "the", "chicken"]``.
            add_start: prepend ``start_token`` (skip it if the sentence already starts with it).
            max_len: raise a ``ValueError`` if the result is longer (e.g. the model's ``max_len``).
            device: where the tensor goes (default CPU; ``None`` means :func:`toyattn.device.get_device`).
        """
        words = self.split(sentence)
        if add_start and (not words or words[0] != self.start_token):
            words = [self.start_token, *words]
        ids = [self.token_id(w) for w in words]
        if max_len is not None and len(ids) > max_len:
            raise ValueError(
                f"The sentence has {len(ids)} tokens (start token included) but at most {max_len} fit "
                f"(the model learned {max_len} positions). Shorten it or build a model with a larger max_len."
            )
        return torch.tensor(ids, dtype=torch.long, device=get_device(device))

    def decode(self, ids: torch.Tensor | Sequence[int]) -> list[str]:
        """Tokens for a 1-D sequence of ids (a tensor on any device, or a list)."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence [pos], got shape {tuple(ids.shape)}; decode rows one by one.")
            ids = ids.tolist()
        out = []
        for i in ids:
            i = _token_id(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"Token id {i} is outside the vocabulary (ids 0 to {self.vocab_size - 1}).")
            out.append(self.vocab[i])
        return out

    def tensors(self, device: str | torch.device | None = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch: ``(inputs, targets)``, each ``[batch, pos]`` int64 on ``device``.

        ``device`` defaults to the CPU, as :meth:`encode`'s does (``None`` means
        :func:`toyattn.device.get_device`): the caller that picked the device passes it.

        ``targets[:, t]`` is the token after ``inputs[:, t]``; the last position's target is the
        start token (what comes next is a new sentence).
        """
        inputs = torch.stack([self.encode(s, device=device) for s in self.sentences])
        start = torch.full_like(inputs[:, :1], self.token_id(self.start_token))
        targets = torch.cat([inputs[:, 1:], start], dim=1)
        return inputs, targets

    def labels(self, sentence: str | Sequence[str] | torch.Tensor | int = 0) -> list[str]:
        """Position labels for plots, ``['0 <ST>', '1 man', ...]``.

        ``sentence`` may be an index into :attr:`sentences`, a sentence, or a ``[pos]`` id tensor.
        """
        if isinstance(sentence, bool):
            raise TypeError(f"sentence must be an index, a sentence or an id tensor, got {sentence!r}.")
        if isinstance(sentence, int):
            if not 0 <= sentence < len(self.sentences):
                raise ValueError(f"Sentence index {sentence} out of range: the corpus has {len(self.sentences)}.")
            sentence = self.sentences[sentence]
        words = self.decode(sentence) if isinstance(sentence, torch.Tensor) else self.decode(self.encode(sentence))
        return [f"{i} {w}" for i, w in enumerate(words)]

    def position_of(self, token: str, sentence: int = 0) -> int:
        """Position of the first ``token`` in an encoded sentence (e.g. ``position_of("the") == 3``)."""
        words = self.decode(self.encode(self.sentences[sentence]))
        if token not in words:
            raise ValueError(f"{token!r} does not occur in sentence {sentence}: {' '.join(words)}.")
        return words.index(token)


def _token_id(i: object) -> int:
    """A token id as an int: Python and NumPy integers (and integer-valued 0-d tensors) only, never a float."""
    if isinstance(i, bool) or not isinstance(i, int | np.integer | torch.Tensor):
        raise TypeError(f"Token ids must be integers, got {i!r} ({type(i).__name__}); floats are not ids.")
    if isinstance(i, torch.Tensor) and (i.dim() != 0 or i.is_floating_point() or i.dtype == torch.bool):
        raise TypeError(f"Token ids must be integers, got a {i.dtype} tensor of shape {tuple(i.shape)}.")
    return int(i)
