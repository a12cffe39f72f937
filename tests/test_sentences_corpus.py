"""Tests for toyattn.sentences.corpus: vocabulary, encode/decode, next-token targets, labels, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toyattn.sentences.corpus import SENTENCES, VOCAB, ToyCorpus


def test_decode_refuses_floats_and_accepts_numpy_integers():
    corpus = ToyCorpus()
    with pytest.raises(TypeError, match="Token ids must be integers, got 0.0"):
        corpus.decode([0.0, 1.7])
    with pytest.raises(TypeError, match="Token ids must be integers"):
        corpus.decode(torch.tensor([0.0, 1.0]))
    assert corpus.decode([np.int64(1), 2]) == corpus.decode(torch.tensor([1, 2]))


def test_labels_refuses_a_bool():
    with pytest.raises(TypeError, match="got True"):
        ToyCorpus().labels(True)


def test_vocab_and_sizes():
    c = ToyCorpus()
    assert c.vocab == VOCAB and c.vocab_size == 7
    assert c.seq_len == 5
    assert c.token_id("<ST>") == 0 and c.token_id("beef") == 6


def test_encode_decode_roundtrip():
    c = ToyCorpus()
    ids = c.encode("woman ordered the beef")
    assert ids.dtype == torch.long and ids.tolist() == [0, 5, 4, 1, 6]
    assert c.decode(ids) == ["<ST>", "woman", "ordered", "the", "beef"]
    assert c.encode(["<ST>", "man"]).tolist() == [0, 2]  # no second start token
    assert c.encode("man", add_start=False).tolist() == [2]


def test_tensors_are_next_token_targets():
    c = ToyCorpus()
    inputs, targets = c.tensors("cpu")
    assert inputs.shape == targets.shape == (2, 5)
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    assert (targets[:, -1] == c.token_id("<ST>")).all()  # the last position wraps to <ST>
    assert [" ".join(c.decode(row)[1:]) for row in inputs] == list(SENTENCES)


def test_labels_and_positions():
    c = ToyCorpus()
    assert c.labels(1) == ["0 <ST>", "1 woman", "2 ordered", "3 the", "4 beef"]
    assert c.labels(torch.tensor([0, 2])) == ["0 <ST>", "1 man"]
    assert c.position_of("the") == 3 and c.position_of("woman", sentence=1) == 1


def test_bad_tokens_and_lengths_give_clear_errors():
    c = ToyCorpus()
    with pytest.raises(ValueError, match="'dog' is not in the vocabulary. Known tokens: <ST>, the"):
        c.encode("dog ordered the beef")
    with pytest.raises(ValueError, match="at most 5 fit"):
        c.encode("man ordered the chicken the beef", max_len=5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        c.decode([0, 9])
    with pytest.raises(ValueError, match="same number of words"):
        ToyCorpus(sentences=("man ordered the chicken", "woman ordered beef"))
    with pytest.raises(ValueError, match="more than once"):
        ToyCorpus(vocab=("<ST>", "the", "the"), sentences=("the",))
    with pytest.raises(ValueError, match="start token"):
        ToyCorpus(vocab=("a", "b"), sentences=("a b",))
    with pytest.raises(ValueError, match="out of range"):
        c.labels(2)


def test_custom_corpus():
    c = ToyCorpus(vocab=("<ST>", "a", "b", "c"), sentences=("a b", "c b", "b a"))
    inputs, targets = c.tensors("cpu")
    assert inputs.tolist() == [[0, 1, 2], [0, 3, 2], [0, 2, 1]]
    assert targets.tolist() == [[1, 2, 0], [3, 2, 0], [2, 1, 0]]
