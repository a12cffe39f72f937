"""toyattn.symmetry.report: a whole model scored (the course transformer, the packaged checkpoints), and its summary."""

from __future__ import annotations

import pytest
import torch
from pretrained_helpers import pretrained

from toyattn.models.transformer import Transformer, TransformerConfig
from toyattn.symmetry.report import SymmetryReport, score_model
from toyattn.symmetry.scores import (
    median,
)
from toyattn.weights.pretrained import (
    gemma3_gguf_path,
    minilm_path,
    smollm2_gguf_path,
)

transformers = pytest.importorskip("transformers")


safetensors_torch = pytest.importorskip("safetensors.torch")


gguf = pytest.importorskip("gguf")


@pytest.mark.pretrained
def test_encoder_scores_higher_than_decoder():
    minilm = score_model(pretrained(minilm_path), device="cpu")
    smol = score_model(pretrained(smollm2_gguf_path), device="cpu")
    assert smol.head_scores.shape == (30, 9) and smol.n_kv_heads == 3
    for report in (minilm, smol):
        assert torch.isfinite(report.head_scores).all()
        assert (report.head_scores > 0).all() and (report.head_scores < 1).all()
    # The published finding, per layer in the s = 2r - 1 convention (ordinary medians): encoders more symmetric.
    s_enc = 2 * median(minilm.layer_scores) - 1
    s_dec = 2 * median(smol.layer_scores) - 1
    assert s_enc > s_dec + 0.1, (s_enc, s_dec)
    assert minilm.head_scores.mean() > smol.head_scores.mean()
    # Lesson 3, section 5: each lies inside its family's published range (Saponati et al., results table:
    # BERT-family encoders +0.44 to +0.77, decoders 0.00 to +0.15), and directionality is negative for
    # both, more so for the decoder.
    assert 0.44 <= s_enc <= 0.77 and 0.0 <= s_dec <= 0.15, (s_enc, s_dec)
    d_enc, d_dec = median(minilm.directionality), median(smol.directionality)
    assert d_dec < d_enc < 0, (d_enc, d_dec)


def test_score_model_on_the_course_transformer():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=11, max_len=8, d_model=16, n_layers=3, n_heads=2))
    with torch.no_grad():
        model.blocks[1].attn.W_K.copy_(model.blocks[1].attn.W_Q)  # layer 1: symmetric heads
    report = score_model(model, device="cpu")
    assert report.head_scores.shape == (3, 2)
    assert torch.allclose(report.head_scores[1], torch.ones(2, dtype=torch.float64))
    assert float(report.layer_scores[1]) == pytest.approx(1.0)
    assert report.directionality.shape == (3,)
    text = report.summary()
    assert "s = 2r-1" in text and "3 layers x 2 heads" in text


def test_summary_reports_ordinary_medians():
    layers = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2], dtype=torch.float64)  # r; middle pair 0.3, 0.5
    report = SymmetryReport("toy", "toyattn", head_scores=layers[:, None].repeat(1, 2), layer_scores=layers,
                            directionality=torch.tensor([-0.4, -0.2, 0.0, 0.2, 0.4, 0.6]))
    text = report.summary()
    assert "median s = -0.200 (r = 0.400)" in text  # s = 2 * 0.4 - 1
    assert "median r = 0.400" in text and "directionality: median +0.100" in text


def s(r: float) -> float:
    return 2 * r - 1


@pytest.mark.pretrained
def test_gemma_scores_like_a_decoder_once_its_qk_norms_are_folded():
    path = pretrained(gemma3_gguf_path)
    folded = score_model(path, device="cpu")
    raw = score_model(path, device="cpu", fold_qk_norm=False)
    minilm = score_model(pretrained(minilm_path), device="cpu")
    assert folded.head_scores.shape == (18, 4) and folded.n_kv_heads == 1
    # Section 5's table: inside the published decoder range (Saponati et al.: 0.00 to +0.15 per layer, s),
    # far below the encoder, per layer and per head.
    for report in (folded, raw):
        assert 0.0 <= s(median(report.layer_scores)) <= 0.15
        assert s(median(report.layer_scores)) < s(median(minilm.layer_scores)) - 0.2
        assert median(report.head_scores) < median(minilm.head_scores)
    # What the lesson asks students to compare in the table: raw looks closer to random (lower per-layer s,
    # directionality near 0); folded, its directionality is clearly negative, like SmolLM2's.
    assert s(median(raw.layer_scores)) < s(median(folded.layer_scores)) - 0.03
    assert abs(median(raw.directionality)) < 0.1
    assert median(folded.directionality) < -0.15
    # Per head, every median is closer to 0.5 than per layer: all three models (section 5 prints it).
    smollm2 = score_model(pretrained(smollm2_gguf_path), device="cpu")
    for report in (folded, raw, minilm, smollm2):
        assert abs(median(report.head_scores) - 0.5) < abs(median(report.layer_scores) - 0.5)
    # Directionality (section 5 prints the comparison): the decoders' medians (SmolLM2, Gemma folded) are
    # more negative than the encoder's; Gemma's raw projections are not.
    for report in (smollm2, folded):
        assert median(report.directionality) < median(minilm.directionality) - 0.1
    assert median(raw.directionality) > median(minilm.directionality)
