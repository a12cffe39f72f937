"""toyattn.models.llama: the hand-written Llama forward pass matches transformers' LlamaForCausalLM on the same
weights, and names bad tokens."""

from __future__ import annotations

import pytest
import torch

from toyattn.models.llama import LlamaConfig
from toyattn.weights.llama import llama_from_state_dict

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_forward_matches_transformers_llama(n_kv_heads):
    hf_cfg = transformers.LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=n_kv_heads, rope_theta=500.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(hf_cfg).eval()
    with torch.no_grad():  # non-trivial norm gains, so a gain read from the wrong norm shows
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    cfg = LlamaConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads, d_mlp=48,
                      rope_base=500.0, eps=1e-5)
    ours = llama_from_state_dict(ref.state_dict(), cfg)
    tokens = torch.randint(0, 50, (3, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = ref(tokens, output_attentions=True)
    logits, cache = ours.run_with_cache(tokens)
    torch.testing.assert_close(logits, out.logits, rtol=1e-4, atol=1e-4)
    for layer in range(2):
        torch.testing.assert_close(cache[f"blocks.{layer}.attn.hook_pattern"], out.attentions[layer], rtol=1e-4, atol=1e-5)


def test_bad_tokens_are_named():
    cfg = LlamaConfig(vocab_size=5, d_model=4, n_layers=1, n_heads=2, n_kv_heads=1, d_mlp=8)
    model = llama_from_state_dict({"embed_tokens.weight": torch.zeros(5, 4), "norm.weight": torch.ones(4),
                                   **{f"layers.0.{n}.weight": torch.zeros(s) for n, s in [
                                       ("input_layernorm", (4,)), ("post_attention_layernorm", (4,)),
                                       ("self_attn.q_proj", (4, 4)), ("self_attn.k_proj", (2, 4)),
                                       ("self_attn.v_proj", (2, 4)), ("self_attn.o_proj", (4, 4)),
                                       ("mlp.gate_proj", (8, 4)), ("mlp.up_proj", (8, 4)), ("mlp.down_proj", (4, 8))]}},
                                  cfg)
    with pytest.raises(ValueError, match="batch axis"):
        model(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        model(torch.tensor([[1, 7]]))
