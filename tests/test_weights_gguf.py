"""toyattn.weights.gguf reads what gguf.GGUFReader reads (for every field the course uses), llama.cpp's row
order is undone, and damaged files get errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import llama_cpp_permute
from pretrained_helpers import pretrained

from toyattn.symmetry.report import score_model
from toyattn.symmetry.scores import symmetry_score
from toyattn.weights.checkpoints import iter_qk_layers
from toyattn.weights.gguf import GGUFError, GGUFFile, unpermute_llama_cpp_rows
from toyattn.weights.pretrained import (
    gemma3_gguf_path,
    smollm2_gguf_path,
)

gguf = pytest.importorskip("gguf")


D, N_HEADS, N_KV = 32, 4, 2


def test_unpermute_inverts_llama_cpp_and_scores_do_not_care():
    g = torch.Generator().manual_seed(0)
    wq = torch.randn(N_HEADS * 8, D, generator=g).numpy()
    wk = torch.randn(N_KV * 8, D, generator=g).numpy()
    np.testing.assert_array_equal(unpermute_llama_cpp_rows(llama_cpp_permute(wq, N_HEADS), N_HEADS), wq)
    # The same within-head reordering on Q and K leaves every W_q[h] W_k[g]^T, so every score, unchanged.
    def heads(w, n):
        return torch.from_numpy(w).reshape(n, 8, D).transpose(1, 2)

    plain = symmetry_score(heads(wq, N_HEADS), heads(wk, N_KV))
    permuted = symmetry_score(heads(llama_cpp_permute(wq, N_HEADS), N_HEADS), heads(llama_cpp_permute(wk, N_KV), N_KV))
    torch.testing.assert_close(plain, permuted)


gguf = pytest.importorskip("gguf")


def write_small_gguf(path, *, tensors, arch="llama", extra=None):
    """A GGUF file with a tokenizer-like string array, numeric arrays and scalars, and ``tensors``."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_name("tiny test model")
    writer.add_token_list([f"tok{i}" * (i % 5 + 1) for i in range(3000)])  # skipped, like a vocabulary
    writer.add_token_scores([float(i) for i in range(3000)])  # a long numeric array: skipped
    writer.add_array("test.short_ints", [3, 1, 4, 1, 5])  # a short numeric array: kept
    writer.add_float32("test.float", 0.25)
    writer.add_bool("test.flag", True)
    for key, value in (extra or {}).items():
        writer.add_uint32(key, value)
    for name, (array, qtype) in tensors.items():
        if qtype is None:
            writer.add_tensor(name, array)
        else:
            q = gguf.quants.quantize(array, qtype)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def mixed_tensors():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 64)).astype(np.float32)
    return {
        "f32": (w, None),
        "f16": (w.astype(np.float16), None),
        "q8": (w, gguf.GGMLQuantizationType.Q8_0),
        "q4": (w, gguf.GGMLQuantizationType.Q4_0),
        "vec": (rng.standard_normal(7).astype(np.float32), None),
    }


def assert_same_as_gguf_reader(path):
    ours, theirs = GGUFFile(path), gguf.GGUFReader(str(path))
    assert ours.data_offset == theirs.data_offset
    for key, field in theirs.fields.items():
        if key.startswith("GGUF."):
            continue
        value = ours.metadata[key]
        if value is None:  # stepped over: only arrays may be
            assert field.types[0] == gguf.GGUFValueType.ARRAY, key
        else:
            assert value == pytest.approx(field.contents()), key
    assert list(ours.tensors) == [t.name for t in theirs.tensors]
    for t in theirs.tensors:
        info = ours.tensors[t.name]
        assert info.shape == tuple(int(n) for n in t.shape)
        assert info.ggml_type == int(t.tensor_type)
        assert (info.offset, info.n_bytes) == (t.data_offset, t.n_bytes)
        raw = ours.raw(t.name)
        assert raw.dtype == t.data.dtype and raw.shape == t.data.shape
        np.testing.assert_array_equal(raw, t.data)
        expected = gguf.quants.dequantize(t.data, t.tensor_type).reshape(info.numpy_shape)
        np.testing.assert_array_equal(ours.dequantize(t.name), expected)
    return ours


def test_small_file_matches_gguf_reader(tmp_path):
    ours = assert_same_as_gguf_reader(write_small_gguf(tmp_path / "m.gguf", tensors=mixed_tensors()))
    assert ours.metadata["tokenizer.ggml.tokens"] is None  # the string array was stepped over
    assert ours.metadata["test.short_ints"] == [3, 1, 4, 1, 5]
    assert ours.metadata["general.name"] == "tiny test model"
    assert ours.metadata["test.flag"] is True


def test_custom_alignment_matches_gguf_reader(tmp_path):
    path = tmp_path / "aligned.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_custom_alignment(64)
    writer.add_tensor("a", np.arange(10, dtype=np.float32))
    writer.add_tensor("b", np.arange(3, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ours = assert_same_as_gguf_reader(path)
    assert ours.data_offset % 64 == 0


@pytest.mark.parametrize("keep", [3, 12, 30, 2000, -20])
def test_truncated_file_names_the_file(tmp_path, keep):
    path = write_small_gguf(tmp_path / "m.gguf", tensors=mixed_tensors())
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep])
    with pytest.raises(GGUFError, match=r"cut\.gguf.*(truncated|not a GGUF)"):
        GGUFFile(cut)


def test_not_a_gguf_file_and_empty_file(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(GGUFError, match=r"x\.gguf: not a GGUF file"):
        GGUFFile(tmp_path / "x.gguf")
    (tmp_path / "e.gguf").write_bytes(b"")
    with pytest.raises(GGUFError, match=r"e\.gguf: the file is empty"):
        GGUFFile(tmp_path / "e.gguf")


def test_head_count_that_does_not_divide_the_rows(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {f"blk.{i}.attn_{x}.weight": (rng.standard_normal((rows, 16)).astype(np.float32), None)
               for i in range(2) for x, rows in (("q", 16), ("k", 8))}
    path = write_small_gguf(tmp_path / "m.gguf", tensors=tensors)  # 4 heads of 4 rows; 2 key heads of 4
    layers = iter_qk_layers(path)
    assert layers[0].W_Q.shape == (4, 16, 4)
    with pytest.raises(ValueError, match=r"m\.gguf: blk\.0\.attn_q\.weight has shape \[16, 16\].*5 heads"):
        iter_qk_layers(path, n_heads=5)[0]  # noqa: B018 (reading the layer is the test)


def test_missing_tensor_names_it(tmp_path):
    path = write_small_gguf(tmp_path / "m.gguf", tensors={"blk.0.attn_q.weight": (np.ones((8, 4), np.float32), None)})
    with pytest.raises(GGUFError, match=r"m\.gguf: tensor blk\.0\.attn_k\.weight is missing"):
        iter_qk_layers(path)[0]


@pytest.mark.pretrained
def test_packaged_smollm2_matches_gguf_reader():
    path = pretrained(smollm2_gguf_path)
    ours = assert_same_as_gguf_reader(path)
    assert ours.metadata["llama.attention.head_count"] == 9
    assert ours.metadata["tokenizer.ggml.tokens"] is None


def test_gemma3_file_is_read_without_unpermuting_and_with_norm_gains_folded(tmp_path):
    rng = np.random.default_rng(2)
    d, d_head, n_heads, n_kv = 12, 4, 2, 1
    wq = rng.standard_normal((n_heads * d_head, d)).astype(np.float32)
    wk = rng.standard_normal((n_kv * d_head, d)).astype(np.float32)
    gq = rng.uniform(0.5, 2.0, d_head).astype(np.float32)
    gk = rng.uniform(0.5, 2.0, d_head).astype(np.float32)
    path = tmp_path / "g.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_block_count(1)
    writer.add_head_count(n_heads)
    writer.add_head_count_kv(n_kv)
    writer.add_tensor("blk.0.attn_q.weight", wq)
    writer.add_tensor("blk.0.attn_k.weight", wk)
    writer.add_tensor("blk.0.attn_q_norm.weight", gq)
    writer.add_tensor("blk.0.attn_k_norm.weight", gk)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    raw = iter_qk_layers(path, fold_qk_norm=False)
    assert (raw.architecture, raw.n_heads, raw.n_kv_heads) == ("gemma3", n_heads, n_kv)
    expected_q = torch.from_numpy(wq).reshape(n_heads, d_head, d).transpose(1, 2)  # rows as stored
    torch.testing.assert_close(raw[0].W_Q, expected_q)
    folded = iter_qk_layers(path)[0]
    torch.testing.assert_close(folded.W_Q, expected_q * torch.from_numpy(gq))
    torch.testing.assert_close(folded.W_K, torch.from_numpy(wk).reshape(n_kv, d_head, d).transpose(1, 2) * torch.from_numpy(gk))


@pytest.mark.pretrained
def test_packaged_gemma3_reads_and_scores():
    from toyattn.weights.pretrained import GEMMA_NOTICE

    path = pretrained(gemma3_gguf_path)
    assert "Gemma Terms of Use" in GEMMA_NOTICE
    layers = iter_qk_layers(path)
    assert (layers.architecture, layers.n_layers, layers.n_heads, layers.n_kv_heads) == ("gemma3", 18, 4, 1)
    assert layers[0].W_Q.shape == (4, 640, 256) and layers[0].W_K.shape == (1, 640, 256)
    report = score_model(path, device="cpu", layer_scores=False, progress=False)
    assert report.head_scores.shape == (18, 4)
    assert ((report.head_scores > 0) & (report.head_scores < 1)).all()
