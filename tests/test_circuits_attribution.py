"""toyattn.circuits.attribution on small random Llamas: the fast per-head patching equals the hooked patch for
every head, the direct logit attribution adds up to the logit, and the loss per token gives the ICL score."""

from __future__ import annotations

import pytest
import torch
from model_helpers import tiny_llama as tiny

from toyattn.circuits import attribution


@pytest.mark.parametrize("n_kv_heads, seed", [(2, 0), (4, 1), (1, 2)])
def test_patch_each_head_equals_the_hooked_patch_for_every_head(n_kv_heads, seed):
    model = tiny(n_kv_heads, seed)
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 40, (3, 10), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2:5] = (clean[:, 2:5] + 11) % 40
    answer, wrong = torch.randint(0, 40, (3,), generator=g), torch.randint(0, 40, (3,), generator=g)
    fast = attribution.patch_each_head(model, corrupted, clean, answer, wrong)
    for layer in range(3):
        for head in range(4):
            slow = attribution.logit_difference(attribution.patch_head(model, corrupted, clean, layer, head), answer, wrong)
            torch.testing.assert_close(fast["patched"][layer, head], slow, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(fast["clean"], attribution.logit_difference(model(clean), answer, wrong))
        torch.testing.assert_close(fast["corrupted"], attribution.logit_difference(model(corrupted), answer, wrong))
    assert (fast["patched"] - fast["corrupted"]).abs().max() > 1e-3, "the patches changed nothing: the test is blind"


def test_patching_needs_prompts_of_one_shape():
    model = tiny()
    with pytest.raises(ValueError, match="same shape"):
        attribution.patch_each_head(model, torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 6, dtype=torch.long),
                          torch.tensor([1]), torch.tensor([2]))


def test_logit_attribution_adds_up_and_freezes_the_final_scale():
    model = tiny()
    tokens = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(3))
    targets = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(4))
    parts = attribution.logit_attribution(model, tokens, targets)
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
        attribution.logit_attribution(model, tokens, targets[:, :3])


def test_token_losses_and_the_icl_score():
    model = tiny()
    tokens = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(5))
    losses = attribution.token_losses(model, tokens)
    assert losses.shape == (2, 12) and torch.isnan(losses[:, 0]).all()
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(model(tokens)[0, :-1].double(), tokens[0, 1:], reduction="none")
    torch.testing.assert_close(losses[0, 1:], ce, rtol=1e-5, atol=1e-6)
    fake = torch.tensor([[float("nan"), 3.0, 2.0, 1.0], [float("nan"), 5.0, 4.0, 2.0]])
    assert attribution.icl_score(fake, 1, 3) == pytest.approx(-2.5)  # late minus early: negative when context helps
    with pytest.raises(ValueError, match="early < late"):
        attribution.icl_score(fake, 3, 1)
