"""toyattn.attribution on small random Llamas: the fast per-head patching equals the hooked patch for every head,
the direct logit attribution adds up to the logit, and the factored composition, copying and bridge scores equal
the dense formulas of lessons 4-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toyattn import attribution as A
from toyattn import composition
from toyattn.induction_heads import head_factors, ov_matrix, pair_matching, qk_matrix, token_matrices
from toyattn.models.llama import Llama, LlamaConfig


def tiny(n_kv_heads: int = 2, seed: int = 0, n_layers: int = 3) -> Llama:
    torch.manual_seed(seed)
    model = Llama(LlamaConfig(vocab_size=40, d_model=16, n_layers=n_layers, n_heads=4, n_kv_heads=n_kv_heads, d_mlp=24,
                              rope_base=500.0))
    for p in model.parameters():  # gains away from 1, so a gain left out shows
        p.data.normal_(0.0, 0.5)
    return model.eval()


@pytest.mark.parametrize("n_kv_heads, seed", [(2, 0), (4, 1), (1, 2)])
def test_patch_each_head_equals_the_hooked_patch_for_every_head(n_kv_heads, seed):
    model = tiny(n_kv_heads, seed)
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 40, (3, 10), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2:5] = (clean[:, 2:5] + 11) % 40
    answer, wrong = torch.randint(0, 40, (3,), generator=g), torch.randint(0, 40, (3,), generator=g)
    fast = A.patch_each_head(model, clean, corrupted, answer, wrong)
    for layer in range(3):
        for head in range(4):
            slow = A.logit_difference(A.patch_head(model, clean, corrupted, layer, head), answer, wrong)
            torch.testing.assert_close(fast["patched"][layer, head], slow, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(fast["clean"], A.logit_difference(model(clean), answer, wrong))
        torch.testing.assert_close(fast["corrupted"], A.logit_difference(model(corrupted), answer, wrong))
    assert (fast["patched"] - fast["corrupted"]).abs().max() > 1e-3, "the patches changed nothing: the test is blind"


def test_patching_needs_prompts_of_one_shape():
    model = tiny()
    with pytest.raises(ValueError, match="same shape"):
        A.patch_each_head(model, torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 6, dtype=torch.long),
                          torch.tensor([1]), torch.tensor([2]))


def test_prefix_matching_scores_equal_lesson_5s_head_scores():
    from toyattn.induction_heads import head_scores, repeated_random_tokens

    model = tiny()
    tokens = repeated_random_tokens(3, 6, (0, 40), torch.Generator().manual_seed(2), prefix=1)
    ours, lesson5 = A.prefix_matching_scores(model, tokens, 6), head_scores(model, tokens, 6)
    for key in ("previous_token", "induction"):
        np.testing.assert_allclose(ours[key], lesson5[key], rtol=1e-6)
    each = A.prefix_matching_scores(model, tokens, 6, per_sequence=True)["induction"]
    np.testing.assert_allclose(each[1], head_scores(model, tokens[1:2], 6)["induction"], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="two copies"):
        A.prefix_matching_scores(model, tokens, 20)


def test_logit_attribution_adds_up_and_freezes_the_final_scale():
    model = tiny()
    tokens = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(3))
    targets = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(4))
    parts = A.logit_attribution(model, tokens, targets)
    total = parts["heads"].sum((0, 1)) + parts["mlps"].sum(0) + parts["embed"]
    torch.testing.assert_close(total, parts["logit"], rtol=1e-4, atol=1e-4)
    # one head by hand: its output through the final norm's gain, divided by the final residual's rms
    _, cache = model.run_with_cache(tokens)
    final = cache["blocks.2.hook_resid_post"]
    rms = (final.pow(2).mean(-1) + model.ln_final.eps).sqrt()
    out = cache["blocks.1.attn.hook_z"][:, :, 3] @ model.blocks[1].attn.W_O[3]
    by_hand = (out * (model.ln_final.weight[:, None] * model.W_U)[:, targets].permute(1, 2, 0)).sum(-1) / rms
    torch.testing.assert_close(parts["heads"][1, 3], by_hand, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="targets"):
        A.logit_attribution(model, tokens, targets[:, :3])


def test_token_losses_and_the_icl_score():
    model = tiny()
    tokens = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(5))
    losses = A.token_losses(model, tokens)
    assert losses.shape == (2, 12) and torch.isnan(losses[:, 0]).all()
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(model(tokens)[0, :-1].double(), tokens[0, 1:], reduction="none")
    torch.testing.assert_close(losses[0, 1:], ce, rtol=1e-5, atol=1e-6)
    fake = torch.tensor([[float("nan"), 3.0, 2.0, 1.0], [float("nan"), 5.0, 4.0, 2.0]])
    assert A.icl_score(fake, 1, 3) == pytest.approx(-2.5)  # late minus early: negative when context helps
    with pytest.raises(ValueError, match="early < late"):
        A.icl_score(fake, 3, 1)


def test_factored_composition_equals_the_dense_formulas():
    model = tiny(n_layers=3)
    heads = [(0, 1), (1, 2), (2, 0)]
    dense = {"Q": composition.q_composition, "K": composition.k_composition,
             "V": lambda ov, qk_or_ov: composition.v_composition(ov, qk_or_ov)}
    for kind in A.KINDS:
        M = A.composition_scores(model, heads, kind)
        assert np.isnan(M[1, 0]) and np.isnan(M[0, 0]), "a writer must sit in an earlier layer"
        for i, w in enumerate(heads):
            for j, r in enumerate(heads):
                if w[0] < r[0]:
                    fw, fr = head_factors(model, *w), head_factors(model, *r)
                    reader = ov_matrix(fr) if kind == "V" else qk_matrix(fr)
                    assert M[i, j] == pytest.approx(dense[kind](ov_matrix(fw), reader), rel=1e-9)
    assert A.random_pair_composition(model, "K", n_pairs=5).shape == (5,)
    with pytest.raises(ValueError, match="Q-, K- or V-composition"):
        A.composition_scores(model, heads, "O")


def test_copying_scores_and_the_bridge_equal_lesson_5s_dense_versions():
    model = tiny()
    W_E, W_U = token_matrices(model)
    scores = A.copying_scores(model)
    for layer, head in ((0, 0), (2, 3)):
        dense = composition.copying_eigen_score(W_E, ov_matrix(head_factors(model, layer, head)), W_U)
        assert scores[layer, head] == pytest.approx(dense, abs=1e-9)
    w, r = head_factors(model, 0, 1), head_factors(model, 2, 2)
    assert A.bridge_matching(model, [((0, 1), (2, 2))], 2, 0)[0] == pytest.approx(pair_matching(w, r, 2), abs=1e-9)
    # at a distance, the key directions are those of the rotated QK circuit W_Q R W_K^T
    from toyattn.circuits import qk_ov_matching

    dense = qk_ov_matching(qk_matrix(r, 5, model.cfg.rope_base), ov_matrix(w), 2)
    both = A.bridge_matching(model, [((0, 1), (2, 2)), ((1, 0), (2, 2))], 2, 5)
    assert both[0] == pytest.approx(dense, abs=1e-6)
    assert both[1] == pytest.approx(qk_ov_matching(qk_matrix(r, 5, model.cfg.rope_base), ov_matrix(head_factors(model, 1, 0)), 2),
                                    abs=1e-6)


def test_passages_are_long_english_text_in_a_fixed_order():
    from toyattn.text import passages

    texts = passages(2000)
    assert len(texts) >= 8 and all(len(t) >= 2000 for t in texts)
    assert texts == passages(2000)
    assert sum(t.count(" the ") for t in texts[:4]) > 20
    with pytest.raises(ValueError, match="min_chars"):
        passages(10**9)
