"""Lesson 6's general claims about SmolLM2, on prompts and passages other than the lesson's: the course's model
matches transformers' LlamaForCausalLM built from the same GGUF file (offline) within the lesson's tolerance and
generates the same greedy tokens; the direct logit attribution adds up; the top heads by prefix-matching
attention are mostly top heads by per-head patching; most heads recover almost nothing; the in-context
learning score is negative."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from toyattn.circuits import attribution  # noqa: E402
from toyattn.circuits.detection import head_scores, top_heads  # noqa: E402
from toyattn.circuits.real_text import passages, repeat_passage  # noqa: E402
from toyattn.device import cpu_threads  # noqa: E402

pytestmark = [pytest.mark.pretrained, pytest.mark.slow]

#: The tolerance lesson 6 (section 3) states and prints: max |logit difference| / max |logit|, float32.
TOLERANCE = 1e-4
L = 60


@pytest.fixture(scope="module")
def files():
    from pretrained_helpers import pretrained

    from toyattn.weights.pretrained import smollm2_gguf_path

    return pretrained(smollm2_gguf_path)


@pytest.fixture(scope="module")
def offline():
    with pytest.MonkeyPatch.context() as m:  # no network: a hub lookup would fail, not download
        m.setenv("HF_HUB_OFFLINE", "1")
        m.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def smollm2(files):
    from toyattn.weights.llama import load_llama_gguf

    return load_llama_gguf(files)


@pytest.fixture(scope="module")
def tokenizer(files, offline):
    from toyattn.weights.llama import load_tokenizer

    return load_tokenizer(files)


def test_logits_match_transformers_built_from_the_same_gguf_offline(files, offline, smollm2, tokenizer):
    from toyattn.weights.llama import load_transformers_llama

    hf = load_transformers_llama(files)
    prompts = ["Dictionaries map hashable keys to arbitrary values.", "import numpy as np\nx = np.zeros(3)",
               "Once upon a time, in a small village by the sea, there lived",
               # lesson 6's own two prompts (section 3), whose assert this test stands behind
               "The for statement is used to iterate over the elements of a sequence",
               "Attention heads that copy what came after an earlier copy of the current token are called"]
    diffs = {}
    with cpu_threads(1):
        for text in prompts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            with torch.no_grad():
                reference = hf(ids).logits
                diffs[text[:30]] = float((smollm2(ids) - reference).abs().max() / reference.abs().max())
    assert max(diffs.values()) < TOLERANCE, f"max |logit difference| / max |logit| per prompt {diffs}, tolerance {TOLERANCE}"
    ids = torch.tensor([tokenizer("The while statement is used for")["input_ids"]])
    ours = ids
    with torch.no_grad():
        for _ in range(6):
            ours = torch.cat([ours, smollm2(ours)[:, -1].argmax(-1, keepdim=True)], dim=1)
        theirs = hf.generate(ids, max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(ids),
                             pad_token_id=tokenizer.eos_token_id)
    assert torch.equal(ours, theirs)


def test_the_tokenizer_comes_from_the_gguf_file_and_round_trips(tokenizer):
    text = "for x in range(3): print(x)"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and len(tokenizer) == 49152
    tokens = repeat_passage(tokenizer, passages()[0], 20)
    assert tokens.shape == (41,) and torch.equal(tokens[1:21], tokens[21:]) and int(tokens[0]) == tokenizer.bos_token_id


def _prompts(tokenizer, texts, j):
    clean, corrupted, answer, wrong = [], [], [], []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:L]
        x = next(t for t in ids[j + 1:] if t not in ids[:j + 1])
        first = list(ids)
        first[j] = x
        clean.append([tokenizer.bos_token_id, *ids, *ids[:j]])
        corrupted.append([tokenizer.bos_token_id, *first, *ids[:j]])
        answer.append(ids[j])
        wrong.append(x)
    return [torch.tensor(v) for v in (clean, corrupted, answer, wrong)]


def test_top_heads_by_attention_are_mostly_top_by_patching(smollm2, tokenizer):
    """Lesson 6, sections 8-9, on passages 6-11 (the lesson uses 0-3), 12 prompts (6 passages, 2 positions): on at
    least 75% of them, at least 2 of the top 3 heads by prefix-matching score are among the top 10 by patching; and on
    every prompt the median |share recovered| over all heads is below 0.02."""
    texts = passages()[6:12]
    rep = torch.stack([repeat_passage(tokenizer, t, L) for t in texts])
    agree, medians = [], []
    with cpu_threads(1):
        attn_top = [top_heads(head_scores(smollm2, rep[p:p + 1], L)["induction"], 3) for p in range(len(texts))]
        for j in (20, 40):
            clean, corrupted, answer, wrong = _prompts(tokenizer, texts, j)
            out = attribution.patch_each_head(smollm2, corrupted, clean, answer, wrong)
            assert (out["clean"] > out["corrupted"]).all(), "the corruption must move the prediction toward x"
            share = ((out["patched"] - out["corrupted"]) / (out["clean"] - out["corrupted"])).numpy()
            for p in range(len(texts)):
                top10 = {(a, b) for a, b, _ in top_heads(share[:, :, p], 10)}
                agree.append(sum((a, b) in top10 for a, b, _ in attn_top[p]))
                medians.append(float(np.median(np.abs(share[:, :, p]))))
    assert np.mean(np.array(agree) >= 2) >= 0.75, agree
    assert max(medians) < 0.02, medians


def test_direct_logit_attribution_adds_up_on_smollm2(smollm2, tokenizer):
    rep = repeat_passage(tokenizer, passages()[7], 30)[None]
    targets = torch.cat([rep[:, 1:], rep[:, :1]], dim=1)
    with cpu_threads(1):
        parts = attribution.logit_attribution(smollm2, rep, targets)
    total = parts["heads"].sum((0, 1)) + parts["mlps"].sum(0) + parts["embed"]
    assert float((total - parts["logit"]).abs().max()) < 1e-3


@pytest.mark.parametrize("first", [4, 8])
def test_the_in_context_learning_score_is_negative(smollm2, tokenizer, first):
    """Olsson et al.'s score (loss at token 500 minus loss at token 50) on 3 passages the lesson does not use."""
    long = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in passages()]
    long = [ids[:511] for ids in long if len(ids) >= 511][first:first + 3]
    assert len(long) == 3
    book = torch.tensor([[tokenizer.bos_token_id, *ids] for ids in long])
    with cpu_threads(2):
        score = attribution.icl_score(attribution.token_losses(smollm2, book), 50, 500)
    assert score < 0, score
