"""toyattn.weights.bert: a BERT attention layer as nn.MultiheadAttention (MiniLM matches transformers)."""

from __future__ import annotations

import pytest
import torch
from pretrained_helpers import pretrained

from toyattn.heads.fused_qkv import (
    permute_mha,
)
from toyattn.heads.matching import (
    recover_permutation,
)
from toyattn.heads.permutations import (
    random_permutation,
    recovery_accuracy,
)
from toyattn.heads.weights import HeadWeights, rotate_within_heads
from toyattn.weights import checkpoints
from toyattn.weights.bert import bert_attention_as_mha
from toyattn.weights.pretrained import (
    minilm_path,
)

transformers = pytest.importorskip("transformers")


safetensors_torch = pytest.importorskip("safetensors.torch")


gguf = pytest.importorskip("gguf")


def test_bert_attention_without_safetensors_says_how_to_install(monkeypatch, tmp_path):
    real_import = checkpoints.importlib.import_module

    def no_safetensors(name, *args):
        if name == "safetensors":
            raise ImportError("No module named 'safetensors'")
        return real_import(name, *args)

    monkeypatch.setattr(checkpoints.importlib, "import_module", no_safetensors)
    with pytest.raises(ImportError, match="optional package `safetensors`"):
        bert_attention_as_mha(tmp_path / "model.safetensors", 0, n_heads=2)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.pretrained
def test_minilm_layer_as_mha_matches_transformers_and_recovers_its_heads():

    from toyattn.weights.bert import bert_attention_as_mha

    path = pretrained(minilm_path)
    mha = bert_attention_as_mha(path, 2, n_heads=12)
    g = gen(10)
    x = torch.randn(2, 6, 384, generator=g)
    transformers = pytest.importorskip("transformers")
    bert = transformers.AutoModel.from_pretrained(str(path.parent)).eval()
    attention = bert.encoder.layer[2].attention
    with torch.no_grad():
        expected = attention.output.dense(attention.self(x)[0])
        out, _ = mha(x, x, x)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
        p = random_permutation(12, g)
        torch.testing.assert_close(permute_mha(mha, p)(x, x, x)[0], out, atol=1e-5, rtol=1e-4)
    ref = HeadWeights.from_mha(mha)
    client = rotate_within_heads(ref.permute(p), g)
    assert torch.equal(recover_permutation(ref, client, features="invariant"), p)
    assert recovery_accuracy(recover_permutation(ref, client, features="raw"), p) < 1.0
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        bert_attention_as_mha(path, 9, n_heads=12)
