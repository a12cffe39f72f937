"""Reading Q/K weights from checkpoints (toyattn.weights.checkpoints, lesson 3): tiny Hugging Face models built
from configs (no downloads), safetensors and GGUF files written by the tests, and the packaged checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_helpers import llama_cpp_permute
from pretrained_helpers import pretrained

from toyattn.symmetry.report import score_model
from toyattn.symmetry.scores import symmetry_score
from toyattn.weights import checkpoints
from toyattn.weights.checkpoints import iter_qk_layers, load_qk
from toyattn.weights.pretrained import (
    minilm_path,
)

transformers = pytest.importorskip("transformers")


safetensors_torch = pytest.importorskip("safetensors.torch")


gguf = pytest.importorskip("gguf")


D, N_HEADS, N_KV, N_LAYERS = 32, 4, 2, 3


def tiny_bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=50, hidden_size=D, num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS, intermediate_size=40
    )
    return transformers.BertModel(cfg).eval()


def tiny_gpt2():
    torch.manual_seed(1)
    cfg = transformers.GPT2Config(vocab_size=50, n_embd=D, n_layer=N_LAYERS, n_head=N_HEADS, n_positions=16)
    return transformers.GPT2Model(cfg).eval()


def tiny_llama():
    torch.manual_seed(2)
    cfg = transformers.LlamaConfig(
        vocab_size=50,
        hidden_size=D,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=N_KV,
        intermediate_size=40,
    )
    return transformers.LlamaModel(cfg).eval()


def per_head(out: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[batch, n_heads * d_head] projections -> [n_heads, batch, d_head]."""
    return out.reshape(out.shape[0], n_heads, -1).transpose(0, 1)


def test_bert_heads_reproduce_the_models_queries_and_keys():
    model = tiny_bert()
    layers = iter_qk_layers(model)
    assert (layers.architecture, layers.n_layers, layers.n_heads, layers.n_kv_heads) == ("bert", N_LAYERS, N_HEADS, N_HEADS)
    x = torch.randn(5, D)
    for layer in layers:
        attn = model.encoder.layer[layer.layer].attention.self
        with torch.no_grad():
            q = per_head(attn.query(x) - attn.query.bias, N_HEADS)
            k = per_head(attn.key(x) - attn.key.bias, N_HEADS)
        torch.testing.assert_close(x @ layer.W_Q, q)
        torch.testing.assert_close(x @ layer.W_K, k)


def test_gpt2_fused_conv1d_is_split_into_heads():
    model = tiny_gpt2()
    layers = iter_qk_layers(model)
    assert layers.architecture == "gpt2" and layers.n_heads == N_HEADS
    x = torch.randn(5, D)
    for layer in layers:
        c_attn = model.h[layer.layer].attn.c_attn
        with torch.no_grad():
            qkv = c_attn(x) - c_attn.bias
        q, k = qkv[:, :D], qkv[:, D : 2 * D]
        torch.testing.assert_close(x @ layer.W_Q, per_head(q, N_HEADS))
        torch.testing.assert_close(x @ layer.W_K, per_head(k, N_HEADS))


def test_llama_gqa_heads():
    model = tiny_llama()
    layers = iter_qk_layers(model)
    assert (layers.architecture, layers.n_heads, layers.n_kv_heads) == ("llama", N_HEADS, N_KV)
    x = torch.randn(5, D)
    for layer in layers:
        attn = model.layers[layer.layer].self_attn
        assert layer.W_Q.shape == (N_HEADS, D, D // N_HEADS)
        assert layer.W_K.shape == (N_KV, D, D // N_HEADS)
        with torch.no_grad():
            torch.testing.assert_close(x @ layer.W_Q, per_head(attn.q_proj(x), N_HEADS))
            torch.testing.assert_close(x @ layer.W_K, per_head(attn.k_proj(x), N_KV))
    report = score_model(model, device="cpu")
    assert report.head_scores.shape == (N_LAYERS, N_HEADS) and report.n_kv_heads == N_KV


def test_state_dict_needs_head_counts_from_somewhere():
    model = tiny_bert()
    state = model.state_dict()
    with pytest.raises(ValueError, match="pass n_heads="):
        iter_qk_layers(state)
    W_Q, W_K = load_qk(state, n_heads=N_HEADS)
    W_Q2, _ = load_qk(state, config={"num_attention_heads": N_HEADS})
    ref_Q, ref_K = load_qk(model)
    torch.testing.assert_close(W_Q, ref_Q)
    torch.testing.assert_close(W_K, ref_K)
    torch.testing.assert_close(W_Q2, ref_Q)
    # A prefixed state dict (as in BertForMaskedLM) is found too.
    prefixed = {f"bert.{k}": v for k, v in state.items()}
    torch.testing.assert_close(load_qk(prefixed, n_heads=N_HEADS)[0], ref_Q)


@pytest.mark.parametrize("build", [tiny_bert, tiny_gpt2, tiny_llama])
def test_saved_directory_reads_like_the_model(tmp_path, build):
    model = build()
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file()
    from_file = load_qk(tmp_path)
    from_model = load_qk(model)
    for a, b in zip(from_file, from_model, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(
        score_model(tmp_path / "model.safetensors", device="cpu").head_scores,
        score_model(model, device="cpu").head_scores,
    )


def test_safetensors_streaming_reads_only_qk_one_layer_at_a_time(tmp_path, monkeypatch):
    model = tiny_llama()
    model.save_pretrained(tmp_path, safe_serialization=True)
    events = []
    real_open = checkpoints.require_package("safetensors").safe_open

    class Spy:
        def __init__(self, handle):
            self.handle = handle

        def keys(self):
            return self.handle.keys()

        def get_tensor(self, name):
            events.append(name)
            return self.handle.get_tensor(name)

        def get_slice(self, name):
            events.append(name)
            return self.handle.get_slice(name)

    monkeypatch.setattr(checkpoints.require_package("safetensors"), "safe_open", lambda *a, **k: Spy(real_open(*a, **k)))
    layers = iter_qk_layers(tmp_path)
    assert events == []  # opening reads the header only
    for layer in layers:
        events.append(f"-- scored layer {layer.layer}")
    expected = []
    for i in range(N_LAYERS):
        expected += [f"layers.{i}.self_attn.q_proj.weight", f"layers.{i}.self_attn.k_proj.weight", f"-- scored layer {i}"]
    assert events == expected


def test_sharded_checkpoint_with_index(tmp_path):
    model = tiny_bert()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    weight_map = {}
    for fname, keys in shards.items():
        safetensors_torch.save_file({k: state[k] for k in keys}, str(tmp_path / fname))
        weight_map.update({k: fname for k in keys})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": N_HEADS, "model_type": "bert"}))
    torch.testing.assert_close(load_qk(tmp_path)[0], load_qk(model)[0])


def test_gpt2_file_reads_only_the_q_and_k_columns(tmp_path):
    model = tiny_gpt2()
    model.save_pretrained(tmp_path, safe_serialization=True)
    torch.testing.assert_close(load_qk(tmp_path)[1], load_qk(model)[1])


def write_gguf(path, model, *, quantize=None, arch="llama"):
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(N_LAYERS)
    writer.add_embedding_length(D)
    writer.add_head_count(N_HEADS)
    writer.add_head_count_kv(N_KV)
    for i, layer in enumerate(model.layers):
        for name, lin, heads in (("attn_q", layer.self_attn.q_proj, N_HEADS), ("attn_k", layer.self_attn.k_proj, N_KV)):
            w = llama_cpp_permute(lin.weight.detach().numpy().astype(np.float32), heads)
            if quantize is None:
                writer.add_tensor(f"blk.{i}.{name}.weight", w)
            else:
                q = gguf.quants.quantize(w, quantize)
                writer.add_tensor(f"blk.{i}.{name}.weight", q, raw_shape=q.shape, raw_dtype=quantize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_float32_file_gives_back_the_hugging_face_weights(tmp_path):
    model = tiny_llama()
    write_gguf(tmp_path / "tiny.gguf", model)
    layers = iter_qk_layers(tmp_path / "tiny.gguf")
    assert (layers.architecture, layers.n_layers, layers.n_heads, layers.n_kv_heads) == ("llama", N_LAYERS, N_HEADS, N_KV)
    W_Q, W_K = load_qk(tmp_path / "tiny.gguf")
    ref_Q, ref_K = load_qk(model)
    torch.testing.assert_close(W_Q, ref_Q)
    torch.testing.assert_close(W_K, ref_K)


def test_gguf_quantized_file_is_dequantized(tmp_path):
    model = tiny_llama()
    write_gguf(tmp_path / "q8.gguf", model, quantize=gguf.GGMLQuantizationType.Q8_0)
    W_Q, W_K = load_qk(tmp_path / "q8.gguf")
    ref_Q, ref_K = load_qk(model)
    assert not torch.equal(W_Q, ref_Q)  # quantization changed the numbers...
    torch.testing.assert_close(W_Q, ref_Q, rtol=0, atol=0.02 * float(ref_Q.abs().max()))  # ...a little
    torch.testing.assert_close(symmetry_score(W_Q, W_K), symmetry_score(ref_Q, ref_K), rtol=0, atol=0.02)


def test_gguf_of_another_architecture_is_refused(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "other.gguf"), "mamba")
    writer.add_block_count(1)
    writer.add_tensor("blk.0.ssm_in.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="'mamba'.*Supported: bert"):
        iter_qk_layers(tmp_path / "other.gguf")


def test_unknown_architecture_lists_the_supported_ones(tmp_path):
    state = {"encoder.blocks.0.mixer.weight": torch.zeros(4, 4)}
    with pytest.raises(ValueError, match=r"Supported: bert: .*gpt2: .*llama: "):
        iter_qk_layers(state, n_heads=1)
    with pytest.raises(ValueError, match="Supported"):
        iter_qk_layers(tiny_bert(), architecture="t5")
    safetensors_torch.save_file(state, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="encoder.blocks.0.mixer.weight.*Supported|Supported"):
        iter_qk_layers(tmp_path / "x.safetensors", n_heads=1)


def test_bad_sources_and_shapes():
    with pytest.raises(TypeError, match="Cannot read query/key weights from a int"):
        iter_qk_layers(3)
    with pytest.raises(FileNotFoundError, match="No such checkpoint"):
        iter_qk_layers("./missing/model.safetensors")
    with pytest.raises(ValueError, match="not a multiple of n_heads=5"):
        load_qk(tiny_bert(), n_heads=5)


def test_missing_optional_dependency_names_the_extra(monkeypatch, tmp_path):
    import importlib

    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name == "gguf":
            raise ImportError("No module named 'gguf'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(checkpoints.importlib, "import_module", fake)
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(ImportError, match=r"`gguf`.*toyattn\[models\]"):
        iter_qk_layers(tmp_path / "m.gguf")


@pytest.mark.pretrained
def test_minilm_scores_and_matches_transformers():
    path = pretrained(minilm_path)
    layers = iter_qk_layers(path)
    assert (layers.architecture, layers.n_layers, layers.n_heads) == ("bert", 6, 12)
    # Cross-check the streaming reader against transformers' own loading of the same folder (offline).
    model = transformers.BertModel.from_pretrained(str(path.parent), local_files_only=True)
    ref_Q, ref_K = load_qk(model)
    W_Q, W_K = load_qk(path)
    assert W_Q.shape == (6, 12, 384, 32)
    torch.testing.assert_close(W_Q, ref_Q)
    torch.testing.assert_close(W_K, ref_K)


@pytest.fixture
def bert_folder(tmp_path):
    tiny_bert().save_pretrained(tmp_path, safe_serialization=True)
    return tmp_path


def test_invalid_config_json_names_the_file(bert_folder):
    (bert_folder / "config.json").write_text("{ not json")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        iter_qk_layers(bert_folder)


@pytest.mark.parametrize("value", [0, -2, "4", None])
def test_bad_head_count_in_config(bert_folder, value):
    cfg = json.loads((bert_folder / "config.json").read_text())
    cfg["num_attention_heads"] = value
    if value is None:
        cfg.pop("num_attention_heads")
        cfg["n_head"] = 0
    (bert_folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"num_attention_heads is .*positive whole number"):
        iter_qk_layers(bert_folder)


def test_missing_key_tensor_names_it(bert_folder):
    state = safetensors_torch.load_file(str(bert_folder / "model.safetensors"))
    del state["encoder.layer.1.attention.self.key.weight"]
    safetensors_torch.save_file(state, str(bert_folder / "model.safetensors"))
    layers = iter_qk_layers(bert_folder)
    assert layers[0].W_K.shape == (N_HEADS, D, D // N_HEADS)
    with pytest.raises(ValueError, match=r"tensor encoder\.layer\.1\.attention\.self\.key\.weight is missing"):
        layers[1]  # noqa: B018 (reading the layer is the test)


def test_index_without_weight_map(bert_folder):
    (bert_folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match=r"index\.json: has no \"weight_map\""):
        iter_qk_layers(bert_folder)


def test_missing_key_in_a_state_dict():
    state = tiny_bert().state_dict()
    del state["encoder.layer.0.attention.self.key.weight"]
    layers = iter_qk_layers(state, config={"num_attention_heads": N_HEADS})
    with pytest.raises(ValueError, match=r"state dict: tensor encoder\.layer\.0\.attention\.self\.key\.weight"):
        layers[0]  # noqa: B018
