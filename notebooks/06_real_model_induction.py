# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 6: build a real language model from its weights, then find its induction circuit on real text
#
# Lesson 5 found previous-token and induction heads in SmolLM2-135M-Instruct on repeated *random*
# tokens, with a model the course had written for you. This lesson **builds the model** from the
# numbers in its file, holds its logits to `transformers`' own implementation, has it read and write
# real English, and then asks of each head, on **real text**: does it attend like an induction head,
# does it write the right next token into the logits, and does the prediction come back when only this
# head's output is restored?
#
# **Naming.** As in lesson 5: layers and heads count from 0, `L18H6` is head 6 of `blocks.18`.
#
# **Learning goals.** After this lesson you can
# 1. read a Llama-family model's weights out of a GGUF file and state its forward pass: RMSNorm,
#    rotary positions, grouped-query causal attention, the SwiGLU MLP, the residual stream and the
#    tied unembedding (the problem set has you write each piece), load the weights into the course's
#    blocks, and hold the logits to a reference implementation within a stated tolerance;
# 2. tokenize text with the tokenizer stored in the same file and generate greedily;
# 3. score every head of a real model for prefix matching and copying, and see induction stripes in
#    its attention on a repeated passage of real text;
# 4. attribute a prediction to heads by direct logit attribution (with the final norm's scale frozen),
#    and by per-head activation patching with a logit-difference metric against a random-head control;
# 5. measure Olsson et al.'s in-context learning score, and read Q-, K- and V-composition and lesson
#    5's QK-OV bridge at the real query-key distance, each against random head pairs.
#
# Sources (details in `../docs/references.md`): Zhang & Sennrich, *Root Mean Square Layer
# Normalization* (2019); Su et al., *RoFormer* (2021); Shazeer, *GLU Variants Improve Transformer*
# (2020); Ainslie et al., *GQA* (2023); Elhage et al., *A Mathematical Framework for Transformer
# Circuits* (2021); Olsson et al., *In-context Learning and Induction Heads* (2022); ARENA 3.0,
# chapters 1.1, 1.2 and 1.4.1; TransformerLens (`apply_ln_to_stack`).
#
# **What runs here.** Everything is offline: the model is the course's GGUF file, the tokenizer is
# the one stored inside it, and the text is Python's own reference manual as the standard library
# ships it (`pydoc_data.topics`, what `help("for")` prints). Dequantizing the file is quick (the time is
# printed in section 1), so nothing is cached; building `transformers`' model from the same file is the
# slow step (its time is printed in section 3). The exercises are in `exercises/06_real_model_induction.ipynb`.

# %%
import os

# One thread each for NumPy's BLAS and for PyTorch: the circuit matrices here are small, and on a busy
# shared machine several threads spin against each other (lesson 5 found the same, and does the same).
# The variable must precede numpy's import; `limit_blas_threads(1)` and `torch.set_num_threads(1)` after
# the imports hold the same limit for BLAS and for PyTorch.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import collections  # noqa: E402
import time  # noqa: E402

import gguf  # noqa: E402
import matplotlib.pyplot as plt
import numpy as np
import torch

from toyattn import get_device, seed_everything
from toyattn.circuits import attribution, composition, detection, head_circuits
from toyattn.circuits.detection import repeated_random_tokens, top_heads
from toyattn.circuits.real_text import TEXT_SOURCE, passages, repeat_passage
from toyattn.device import limit_blas_threads
from toyattn.heads.weights import linear_to_heads
from toyattn.models.llama import Llama, LlamaConfig
from toyattn.models.transformer import apply_rotary
from toyattn.plotting import heatmap, heatmap_plotly
from toyattn.weights.gguf import GGUFFile, unpermute_llama_cpp_rows
from toyattn.weights.llama import load_llama_gguf, load_tokenizer, load_transformers_llama
from toyattn.weights.pretrained import smollm2_gguf_path

seed_everything(0)
device = get_device()
torch.set_num_threads(1)  # as in lesson 5: on a shared machine, one thread is the robust choice
limit_blas_threads(1)
started = time.perf_counter()
print(f"running on {device}")

# %% [markdown]
# ## 1. The weights, out of the GGUF file
#
# A GGUF file holds a header of metadata (the shape of the model, its tokenizer) and the tensors,
# many of them **quantized**: in llama.cpp's `Q4_1` format, for example, blocks of 32 numbers share a
# scale and a minimum, and each number keeps 4 bits (the printout counts the formats in this file).
# The `gguf` package turns each block back into float32 (`GGUFFile.dequantize` calls it). One detail
# of the format: llama.cpp's converter reorders the rows of each query and key head so that rotary
# pairs are interleaved, coordinates $(2i, 2i+1)$; `toyattn.weights.gguf.unpermute_llama_cpp_rows`
# undoes that reordering, putting the rows back in the "rotate half" order, pairs $(i, i + d_{head}/2)$,
# that `transformers` uses (section 2 says what the two orders mean).

# %%
gg = GGUFFile(smollm2_gguf_path())
meta = lambda key: gg.metadata[f"llama.{key}"]  # noqa: E731
cfg = dict(n_layers=int(meta("block_count")), d_model=int(meta("embedding_length")), n_heads=int(meta("attention.head_count")),
           n_kv_heads=int(meta("attention.head_count_kv")), d_mlp=int(meta("feed_forward_length")),
           eps=float(meta("attention.layer_norm_rms_epsilon")), rope_base=float(meta("rope.freq_base")))
cfg["d_head"] = cfg["d_model"] // cfg["n_heads"]
print(cfg)
t0 = time.perf_counter()
tensor = lambda name: torch.from_numpy(np.ascontiguousarray(gg.dequantize(name))).float()  # noqa: E731
W = {"embed": tensor("token_embd.weight"), "final_norm": tensor("output_norm.weight")}
for i in range(cfg["n_layers"]):
    for short, name in (("ln1", "attn_norm"), ("ln2", "ffn_norm"), ("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v"),
                        ("o", "attn_output"), ("gate", "ffn_gate"), ("up", "ffn_up"), ("down", "ffn_down")):
        W[f"{i}.{short}"] = tensor(f"blk.{i}.{name}.weight")
    W[f"{i}.q"] = unpermute_llama_cpp_rows(W[f"{i}.q"], cfg["n_heads"])
    W[f"{i}.k"] = unpermute_llama_cpp_rows(W[f"{i}.k"], cfg["n_kv_heads"])
W = {k: v.to(device) for k, v in W.items()}
n_params = sum(v.numel() for v in W.values())
formats = collections.Counter(gguf.GGMLQuantizationType(info.ggml_type).name for info in gg.tensors.values())
print(f"storage formats in the file: {dict(formats)}")
print(f"{len(W)} tensors, {n_params / 1e6:.1f} M numbers, dequantized in {time.perf_counter() - t0:.1f} s; "
      f"no separate output matrix in the file: {'output.weight' not in gg.tensors} (the unembedding is the embedding, tied)")
print("shapes (PyTorch's nn.Linear layout, [out, in]):", {k: tuple(W[k].shape) for k in ("embed", "0.q", "0.k", "0.o", "0.gate", "0.down")})

# %% [markdown]
# ## 2. The forward pass, piece by piece
#
# The pieces as formulas. The problem set has you write each one against a check, so the lecture runs
# the course's own tested implementation of them (`toyattn.models.llama`, lesson 5) with section 1's
# weights. Row vectors, as in the course: a layer computes $x W$.
#
# * **RMSNorm** (Zhang & Sennrich): $\mathrm{RMSNorm}(x) = \dfrac{x}{\sqrt{\frac{1}{d}\sum_i x_i^2 + \epsilon}} \odot g$:
#   no centring and no bias, unlike LayerNorm; $\epsilon$ sits *inside* the square root.
# * **Rotary positions** (Su et al.): each query and key is rotated, pair of coordinates by pair, by an
#   angle proportional to its position: pair $i$ at position $p$ turns by $p\,\theta_i$, with
#   $\theta_i = \text{base}^{-2i/d_{head}}$, $(a, b) \mapsto (a\cos p\theta_i - b\sin p\theta_i,\; a\sin p\theta_i + b\cos p\theta_i)$.
#   So the score of a query at $p$ and a key at $s$ depends on $p - s$ only (lesson 4). Llama in
#   `transformers` pairs coordinate $i$ with $i + d_{head}/2$ ("rotate half"); the original paper and
#   llama.cpp pair $2i$ with $2i+1$. Both are rotary embeddings; they differ by a fixed permutation of
#   the coordinates, which is why the file's rows were reordered in section 1.
# * **Grouped-query attention** (Ainslie et al.): $z_h = \mathrm{softmax}\big(\mathrm{mask}(q_h k_{g(h)}^\top / \sqrt{d_{head}})\big)\, v_{g(h)}$,
#   with a causal mask (a position sees itself and earlier ones). SmolLM2 has 9 query heads and 3
#   key/value heads, so each key/value head $g(h)$ serves three query heads; *which* three is a decision
#   the problem set asks you to make (Exercise 3).
# * **SwiGLU MLP** (Shazeer): $(\mathrm{silu}(x W_{gate}) \odot x W_{up})\, W_{down}$, with $\mathrm{silu}(u) = u\,\sigma(u)$.
# * **Residual stream and tied unembedding**: each block adds its attention's and its MLP's output to
#   the stream ($x + \mathrm{attn}(\mathrm{norm}(x))$, then $x + \mathrm{mlp}(\mathrm{norm}(x))$); a final
#   RMSNorm, then the logits are dot products with the **embedding** matrix itself.
#
# First the rotation: the course's `apply_rotary` (lesson 4) and `transformers`' own
# `apply_rotary_pos_emb` should agree on the same input, and a query-key score should not change when
# both positions move by the same amount.

# %%
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb  # noqa: E402

x_test, pos_test = torch.randn(2, 7, 3, cfg["d_head"], device=device), torch.arange(7, device=device)
angle = pos_test.float()[:, None] * cfg["rope_base"] ** (-torch.arange(0, cfg["d_head"], 2, device=device).float() / cfg["d_head"])
emb = torch.cat([angle, angle], dim=-1)  # transformers repeats the angles over both halves
hf_rot, _ = apply_rotary_pos_emb(x_test.transpose(1, 2), x_test.transpose(1, 2), emb.cos()[None], emb.sin()[None])
rot = apply_rotary(x_test, pos_test, cfg["rope_base"])
print(f"toyattn's apply_rotary vs transformers' apply_rotary_pos_emb: max |difference| "
      f"{float((rot - hf_rot.transpose(1, 2)).abs().max()):.1e}")


def score(p, s, q=x_test[0, 0, 0], k=x_test[0, 1, 0]):
    """One query vector rotated to position p, dotted with one key vector rotated to position s."""
    r = apply_rotary(torch.stack([q, k])[None, :, None], torch.tensor([p, s]), cfg["rope_base"])  # [1, 2, 1, d_head]
    return float(r[0, 0, 0] @ r[0, 1, 0])


print(f"score of the same query and key at positions (5, 2): {score(5, 2):.4f}; at (105, 102): {score(105, 102):.4f}; "
      f"at (5, 4): {score(5, 4):.4f}")

# %% [markdown]
# Now the whole model: section 1's weights go into the course's blocks, per head in the course's
# row-vector layout (`W_Q [heads, d_model, d_head]`: `linear_to_heads` turns an `nn.Linear` weight
# `[heads * d_head, d_model]` into it). The printout lists one block's pieces, and checks the course's
# RMSNorm against PyTorch's own `rms_norm` on a few embeddings.

# %%
ours = Llama(LlamaConfig(vocab_size=W["embed"].shape[0], **{k: cfg[k] for k in (
    "d_model", "n_layers", "n_heads", "n_kv_heads", "d_mlp", "rope_base", "eps")}))
with torch.no_grad():
    ours.W_E.copy_(W["embed"])
    ours.W_U.copy_(W["embed"].T)  # tied unembedding: the embedding matrix, transposed
    ours.ln_final.weight.copy_(W["final_norm"])
    for i, block in enumerate(ours.blocks):
        block.ln1.weight.copy_(W[f"{i}.ln1"])
        block.ln2.weight.copy_(W[f"{i}.ln2"])
        block.attn.W_Q.copy_(linear_to_heads(W[f"{i}.q"], cfg["n_heads"]))
        block.attn.W_K.copy_(linear_to_heads(W[f"{i}.k"], cfg["n_kv_heads"]))
        block.attn.W_V.copy_(linear_to_heads(W[f"{i}.v"], cfg["n_kv_heads"]))
        block.attn.W_O.copy_(W[f"{i}.o"].T.reshape(cfg["n_heads"], cfg["d_head"], cfg["d_model"]))
        for name in ("gate", "up", "down"):
            getattr(block.mlp, name).weight.copy_(W[f"{i}.{name}"])
ours = ours.to(device).eval()
del W  # the model holds its own copy
print(ours.blocks[0])
x_emb = ours.W_E[:5].detach()
with torch.no_grad():
    diff = (ours.blocks[0].ln1(x_emb) - torch.nn.functional.rms_norm(x_emb, (cfg["d_model"],), ours.blocks[0].ln1.weight, cfg["eps"])).abs().max()
print(f"the course's RMSNorm vs torch.nn.functional.rms_norm on 5 embeddings: max |difference| {float(diff):.1e}")


# %% [markdown]
# ## 3. Does it match? `transformers`, and the course's model
#
# The reference is `transformers`' `LlamaForCausalLM`, built by `transformers` itself from the same GGUF
# file (it dequantizes and reorders the rows on its own; `toyattn.weights.llama.load_transformers_llama`):
# an implementation independent of the course's. The course's loader
# `toyattn.weights.llama.load_llama_gguf` (lesson 5) reads the same file into the same blocks by its own
# route (Hugging Face's tensor names): a check on section 1's bookkeeping, not a second implementation.
# The tokens come from the tokenizer stored in the GGUF file.
#
# **Predict first:** in float32, both sides summing the same products in a different order, how large
# will the largest logit difference be, next to logits in the tens: 0, about 1e-5, about 1e-3, or
# about 0.1?

# %%
TOLERANCE = 1e-4  # relative: max |difference| / max |logit|; float32 sums of 576 to 1536 products, 30 layers deep
tokenizer = load_tokenizer()
t0 = time.perf_counter()
hf_model = load_transformers_llama().to(device)
print(f"transformers built its model from the GGUF file in {time.perf_counter() - t0:.1f} s")
llm = load_llama_gguf().to(device)
prompts = ["The for statement is used to iterate over the elements of a sequence",
           "Attention heads that copy what came after an earlier copy of the current token are called"]
match = {}
for text in prompts:
    ids = torch.tensor([tokenizer(text)["input_ids"]], device=device)
    with torch.no_grad():
        mine, theirs, course = ours(ids), hf_model(ids).logits, llm(ids)
    match[text] = (float((mine - theirs).abs().max()), float((mine - course).abs().max()), float(theirs.abs().max()))

# %% [markdown]
# **Reveal.** The printed differences, as a fraction of the largest logit, against the tolerance that the test holds them to
# (`tests/test_real_model.py` checks the course's model against `transformers` on these two prompts
# and on others).

# %%
for text, (vs_hf, vs_course, size) in match.items():
    relative = max(vs_hf, vs_course) / size
    print(f"{text[:40]!r}...: max |our logits - transformers'| = {vs_hf:.2e}, - load_llama_gguf's = {vs_course:.2e}; "
          f"largest |logit| {size:.1f}, so {relative:.1e} of it (tolerance {TOLERANCE:g}) -> "
          f"{'MATCH' if relative < TOLERANCE else 'NO MATCH'}")
assert all(max(a, b) / size < TOLERANCE for a, b, size in match.values()), "the logits do not match: find the piece that differs"

# %% [markdown]
# ## 4. Reading and writing text
#
# The tokenizer splits text into pieces of the model's 49,152-token vocabulary. Below, a prompt is
# tokenized and our model continues it greedily: at each step it appends the most likely next
# token. `transformers`' `generate` does the same with its model (`do_sample=False`); the two should
# produce the same tokens if the logits match as closely as section 3 printed.

# %%
prompt = "Python is a programming language that"
ids = torch.tensor([tokenizer(prompt)["input_ids"]], device=device)
print("tokens:", [tokenizer.decode([t]) for t in ids[0].tolist()])
generated = ids
with torch.no_grad():
    for _ in range(8):
        generated = torch.cat([generated, ours(generated)[:, -1].argmax(-1, keepdim=True)], dim=1)
    theirs = hf_model.generate(ids, max_new_tokens=8, do_sample=False, attention_mask=torch.ones_like(ids),
                               pad_token_id=tokenizer.eos_token_id)
print("ours:        ", repr(tokenizer.decode(generated[0])))
print("transformers:", repr(tokenizer.decode(theirs[0])))
print(f"the 8 generated tokens are {'identical' if torch.equal(generated, theirs) else 'NOT identical'}")
del hf_model, ours  # from here on, the course's loaded model (it matches, section 3) does the reading

# %% [markdown]
# ## 5. Prefix matching and copying for every head, on real text
#
# Now real text instead of lesson 5's random tokens: the first 60 tokens of a passage of Python's
# reference manual, then the same 60 tokens again, after the BOS token. Two scores for every head:
#
# * **prefix matching** (Olsson et al.): the attention from each token of the second copy to the token
#   right *after* its earlier occurrence, 59 positions back (lesson 5's `toyattn.circuits.detection.head_scores`).
#   Real text repeats words within a passage too, so a perfect induction head can spread its attention
#   over several earlier matches and score below 1;
# * **copying** (Elhage et al.): read from the weights, not the text: the eigenvalues of the head's full
#   OV circuit $W_E W_{OV} W_U$, summed up as $\sum\lambda / \sum|\lambda|$ (near 1: attending to a
#   token raises that token's logit; `toyattn.circuits.detection.copying_scores`).
#
# **Predict first:** will the heads with high prefix matching on real text be the ones lesson 5, section
# 11 found on random tokens? Will they all copy?

# %%
texts = passages()
print(f"text: {TEXT_SOURCE}; {len(texts)} passages of 2,000 characters or more; the first begins:\n"
      f"{texts[0][:160]!r}")
L = 60
rep = torch.stack([repeat_passage(tokenizer, t, L) for t in texts[:4]]).to(device)  # BOS, 60 tokens, the same 60 tokens
per_passage = detection.head_scores(llm, rep, L, per_sequence=True)  # [passage, layer, head]
scores = {key: value.mean(0) for key, value in per_passage.items()}
copying = detection.copying_scores(llm)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
for ax, M, name, lims in ((axes[0], scores["induction"], "prefix matching (induction) score", (0, 1)),
                          (axes[1], scores["previous_token"], "previous-token score", (0, 1)),
                          (axes[2], copying, "copying score (eigenvalues)", (-1, 1))):
    im = ax.imshow(M, aspect="auto", cmap="magma" if lims[0] == 0 else "RdBu_r", vmin=lims[0], vmax=lims[1])
    ax.set(title=name, xlabel="head", ylabel="layer")
    plt.colorbar(im, ax=ax)
plt.tight_layout()
plt.show()
heatmap_plotly(scores["induction"], [f"L{i}" for i in range(llm.cfg.n_layers)], [f"H{h}" for h in range(llm.cfg.n_heads)],
               title="SmolLM2 on real text: prefix matching score (hover a head)", xlabel="head", ylabel="layer",
               colorscale="Magma", zmin=0, zmax=1, annotate=False)

# %% [markdown]
# Each map is layer (rows, 0 at the top) by head (columns); the last one repeats the left map so that
# hovering a cell names its head and score. Look for the few bright cells of the left map, whether the
# middle map's bright cells sit in earlier layers, and what colour the same cells have in the right map
# (red is positive).
#
# **Reveal.** Below, the top heads by each score, their copying scores, and lesson 5's top induction
# heads recomputed here exactly as lesson 5, section 11 found them (4 sequences of 40 random tokens
# repeated, after one random prefix token), with the overlap. Elhage et al. read a copying score near 1
# (positive eigenvalues) as a head that raises the logit of the token it attends to; a negative score
# is the opposite summary: over the whole OV circuit, negative eigenvalues outweigh positive ones. It
# is a summary of the weights over every token of the vocabulary, not a measurement on these passages:
# it does not say what the head writes for the particular tokens here, which section 7 measures
# directly (there, look at the rank of the heads with a negative copying score).

# %%
top_ind, top_prev = top_heads(scores["induction"], 5), top_heads(scores["previous_token"], 5)
print("top prefix-matching heads:", [(f"L{a}H{b}", round(s, 2)) for a, b, s in top_ind],
      f"(median over all {scores['induction'].size} heads {np.median(scores['induction']):.3f})")
print("their copying scores:    ", [round(float(copying[a, b]), 2) for a, b, _ in top_ind],
      f"(median over all heads {np.median(copying):.2f}; {np.mean(copying > 0):.0%} of all heads above 0)")
print("top previous-token heads:", [(f"L{a}H{b}", round(s, 2)) for a, b, s in top_prev],
      f"; {sum(a < top_ind[0][0] for a, _, _ in top_prev)} of them sit below L{top_ind[0][0]}")
negative_copy = [(a, b) for a, b, _ in top_ind if copying[a, b] < 0]
print(f"{len(top_ind) - len(negative_copy)} of the top {len(top_ind)} prefix-matching heads have a positive copying score; "
      f"negative: {[f'L{a}H{b} ({copying[a, b]:+.2f})' for a, b in negative_copy]}")
random_rep = repeated_random_tokens(4, 40, (1000, 20000), torch.Generator().manual_seed(0), prefix=1).to(device)
top_ind_random = top_heads(detection.head_scores(llm, random_rep, 40)["induction"], 5)  # lesson 5, section 11
shared = {(a, b) for a, b, _ in top_ind_random} & {(a, b) for a, b, _ in top_ind}
print("lesson 5's top induction heads on random tokens:", [(f"L{a}H{b}", round(s, 2)) for a, b, s in top_ind_random],
      f"; {len(shared)} of them are among this section's top 5 on real text: {[f'L{a}H{b}' for a, b in sorted(shared)]}")

# %% [markdown]
# ## 6. Induction stripes in the attention
#
# The attention pattern of one head on one repeated passage: rows are queries, columns keys. An
# induction head, from each token of the second copy, looks at the token after the same token's
# earlier occurrence: the bright cells form a **stripe parallel to the diagonal, 59 positions below
# it** (offset $L - 1$), in the lower-left block. A previous-token head draws the line just below the
# diagonal. Next to the top three heads by prefix matching is, for contrast, a random head among those
# whose prefix-matching score is below the median.

# %%
_, cache = llm.run_with_cache(rep[:1], names_filter=lambda n: n.endswith("hook_pattern"))
rng = np.random.default_rng(0)
low = [(a, b) for a in range(cfg["n_layers"]) for b in range(cfg["n_heads"])
       if scores["induction"][a, b] < np.median(scores["induction"])]  # the contrast: a head that scores low
shown = [(a, b) for a, b, _ in top_ind[:3]] + [low[int(rng.integers(len(low)))]]
fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
for ax, (a, b) in zip(axes, shown, strict=True):
    ax.imshow(cache[f"blocks.{a}.attn.hook_pattern"][0, b].cpu(), cmap="viridis", vmin=0, vmax=1)
    ax.set(title=f"L{a}H{b}" + (" (random low-scoring head)" if (a, b) == shown[-1] else ""), xlabel="key", ylabel="query")
plt.tight_layout()
plt.show()
q = torch.arange(L + 1, 2 * L + 1)
for a, b in shown:
    p = cache[f"blocks.{a}.attn.hook_pattern"][0, b]
    print(f"L{a}H{b}: attention on the induction stripe {float(p[q, q - L + 1].mean()):.2f}, on the previous token "
          f"{float(p[q, q - 1].mean()):.2f}, on the BOS token {float(p[q, 0].mean()):.2f} (second-copy queries)")

# %% [markdown]
# ## 7. Direct logit attribution: which heads write the right next token?
#
# The logit of token $t$ is a dot product with the final residual stream after the last RMSNorm. That
# residual is a **sum**: the embedding, plus every head's output $z_h W_O^h$, plus every MLP's output.
# RMSNorm divides the whole sum by one number per position, $\mathrm{rms}(x)$, before its gain $g$.
# As TransformerLens's `ActivationCache.apply_ln_to_stack` does (used in ARENA 3.0, chapter 1.4.1), we
# **freeze that number** at its value in this run; then the logit is exactly the sum of one term per component,
# $\text{head's output} \cdot (g \odot W_U[:, t]) / \mathrm{rms}(x)$. That term is the head's
# **direct** effect; what the head does through later layers is not in it.
#
# **Predict first:** on the second copy, which heads add the most to the logit of the correct next
# token: the prefix-matching heads, the last layers, or both?

# %%
targets = torch.cat([rep[:, 1:], rep[:, :1]], dim=1)  # the next token at every position (the last one unused)
dla = attribution.logit_attribution(llm, rep, targets)
parts_sum = dla["heads"].sum((0, 1)) + dla["mlps"].sum(0) + dla["embed"]
second = slice(L + 1, 2 * L)  # second-copy positions whose next token is known
head_dla = dla["heads"][:, :, :, second].mean((2, 3)).cpu().numpy()  # [layer, head]
top_dla = top_heads(head_dla, 6)
fig, axes = plt.subplots(1, 2, figsize=(15, 4.5), gridspec_kw={"width_ratios": [1, 2]})
im = axes[0].imshow(head_dla, aspect="auto", cmap="RdBu_r", vmin=-abs(head_dla).max(), vmax=abs(head_dla).max())
axes[0].set(title="direct logit attribution to the correct next token\n(second copy, mean over 4 passages)",
            xlabel="head", ylabel="layer")
plt.colorbar(im, ax=axes[0])
rows = np.stack([dla["heads"][a, b, 0, second].cpu().numpy() for a, b, _ in top_dla])
heatmap(rows, [f"L{a}H{b}" for a, b, _ in top_dla], None, ax=axes[1], cmap="RdBu_r", center=0, annotate=False,
        title="position by position, first passage (second copy)", xlabel="position in the second copy", colorbar=True)
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reveal.** Left, red cells add to the right token's logit, blue ones take from it; right, the top
# heads position by position (a head that writes the right token at most positions draws a mostly red
# row). The printout says how the two rankings, attention and direct effect, overlap.

# %%
print(f"the parts add up to the model's logit: max |sum of parts - logit| = {float((parts_sum - dla['logit']).abs().max()):.1e}")
print("top heads by direct logit attribution (nats of logit):", [(f"L{a}H{b}", round(s, 2)) for a, b, s in top_dla])
overlap = {(a, b) for a, b, _ in top_dla} & {(a, b) for a, b, _ in top_ind}
print(f"{len(overlap)} of the top 6 by direct effect are among the top 5 by prefix matching: {sorted(overlap)}; "
      f"their share of the positions with a positive attribution: "
      + ", ".join(f"L{a}H{b} {float((dla['heads'][a, b, :, second] > 0).double().mean()):.0%}" for a, b in sorted(overlap)))
dla_rank = {divmod(int(k), cfg["n_heads"]): r + 1 for r, k in enumerate(np.argsort(head_dla, axis=None)[::-1])}
print("top prefix-matching heads with a negative copying score (section 5), rank by direct logit attribution: "
      + (", ".join(f"L{a}H{b} (copying {copying[a, b]:+.2f}): {dla_rank[(a, b)]} of {head_dla.size}, {head_dla[a, b]:+.2f} nats"
                   for a, b in negative_copy) or "none"))

# %% [markdown]
# ## 8. Per-head activation patching
#
# Direct attribution misses indirect effects, and a head can write the right token for reasons other
# than induction. Patching asks a causal question. Each prompt is a passage's first 60 tokens followed
# by its first $j$ tokens again: at the last position, the model should predict the passage's token
# $j$, and can find it by induction. The **corrupted** prompt replaces token $j$ of the *first* copy by
# another token of the passage, $x$; an induction head would now predict $x$. The metric is the
# **logit difference** $\mathrm{logit}(\text{token } j) - \mathrm{logit}(x)$ at the last position.
# We patch one head's output at the last position from the clean run into the corrupted one, for every
# head (`toyattn.circuits.attribution.patch_each_head`), and report the share of the logit difference that
# comes back: 0 = corrupted, 1 = clean.
#
# The control: section 5's top five heads by prefix matching, chosen from their attention before any
# patching, set against 30 random heads of the model (drawn without replacement from all heads but
# those five). The top heads *by patching* are no test against the random heads: picked as the largest
# of 270, they beat 30 random ones by construction.
#
# **Predict first:** how much of the logit difference can *one* head give back? Will the prefix-matching
# heads give back more than every random head? Will the heads that give most back be among them?

# %%
def patching_prompts(text_list, j, length=L):
    """Clean and corrupted prompts (BOS, passage, passage[:j]), the answer token j and the corrupting token x."""
    clean, corrupted, answer, wrong = [], [], [], []
    for text in text_list:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:length]
        x = next(t for t in ids[j + 1:] if t not in ids[:j + 1])  # a token of the passage not seen up to j
        first = list(ids)
        first[j] = x
        clean.append([tokenizer.bos_token_id, *ids, *ids[:j]])
        corrupted.append([tokenizer.bos_token_id, *first, *ids[:j]])
        answer.append(ids[j])
        wrong.append(x)
    return [torch.tensor(v, device=device) for v in (clean, corrupted, answer, wrong)]


J = 30
clean, corrupted, answer, wrong = patching_prompts(texts[:4], J)
patch = attribution.patch_each_head(llm, corrupted, clean, answer, wrong)
recovered = ((patch["patched"] - patch["corrupted"]) / (patch["clean"] - patch["corrupted"])).cpu().numpy()  # [L, H, prompt]
mean_rec = recovered.mean(-1)
top5 = {(a, b) for a, b, _ in top_ind}  # the control leaves out section 5's top prefix-matching heads
pool = [(a, b) for a in range(cfg["n_layers"]) for b in range(cfg["n_heads"]) if (a, b) not in top5]
random_heads = [pool[i] for i in rng.choice(len(pool), 30, replace=False)]
random_rec = np.array([mean_rec[a, b] for a, b in random_heads])
fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
im = axes[0].imshow(mean_rec, aspect="auto", cmap="RdBu_r", vmin=-abs(mean_rec).max(), vmax=abs(mean_rec).max())
axes[0].set(title=f"share of the logit difference recovered\n(one head patched at the last position, mean of {len(clean)} prompts)",
            xlabel="head", ylabel="layer")
plt.colorbar(im, ax=axes[0])
top_patch = top_heads(mean_rec, 5)
ind_rec = np.array([mean_rec[a, b] for a, b, _ in top_ind])  # chosen by prefix matching, not by patching
axes[1].hist(random_rec, bins=20, color="gray", label="30 random heads")
for v in ind_rec:
    axes[1].axvline(v, color="C3")
axes[1].plot([], [], color="C3", label="top 5 heads by prefix matching")
axes[1].set(xlabel="share recovered", ylabel="heads", title="against random heads")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reveal.** The red cells of the left map (heads whose patch gives back part of the logit difference;
# blue: heads whose patch moves it further away), the red lines (section 5's prefix-matching heads)
# against the gray histogram of random heads, and the numbers below. If no single head gives back everything (the printed shares), one reason can be
# that several heads carry the same information, so restoring one leaves the others corrupted;
# patching several heads at once would test that.

# %%
print(f"logit difference: clean {patch['clean'].cpu().numpy().round(1)}, corrupted {patch['corrupted'].cpu().numpy().round(1)}")
print("top 5 heads by prefix matching (section 5), share recovered:",
      [(f"L{a}H{b}", round(float(v), 3)) for (a, b, _), v in zip(top_ind, ind_rec, strict=True)])
print(f"30 random heads (not among those 5): median {np.median(random_rec):.3f}, largest {random_rec.max():.3f}; "
      f"{int((ind_rec > random_rec.max()).sum())} of the 5 prefix-matching heads exceed the largest")
ind_set = {(a, b) for a, b, _ in top_ind}
print("top heads by patching (share recovered):", [(f"L{a}H{b}", round(s, 3)) for a, b, s in top_patch],
      f"; {len(ind_set & {(a, b) for a, b, _ in top_patch})} of them are among the top 5 by prefix matching")

# %% [markdown]
# ## 9. Attention and patching, prompt by prompt
#
# Do the heads that *attend* like induction heads also *do the work*, on each prompt separately and
# not only on average? For each of 8 prompts (4 passages, 2 positions: section 8's $j = 30$ and $j = 45$),
# the top 3 heads by prefix-matching score on that passage, and whether they are among the top 10 heads by patching on
# that prompt. (`tests/test_real_model.py` checks on other passages that the top heads by attention
# are mostly top by patching.)

# %%
attn_tops = [top_heads(per_passage["induction"][p], 3) for p in range(len(rep))]
agree = []
for j in (J, 45):
    if j == J:
        rec = patch
    else:
        c, k, a, w = patching_prompts(texts[:4], j)  # clean, corrupted, answer, wrong
        rec = attribution.patch_each_head(llm, k, c, a, w)
    share = ((rec["patched"] - rec["corrupted"]) / (rec["clean"] - rec["corrupted"])).cpu().numpy()
    for p, attn_top in enumerate(attn_tops):
        patch_top = {(a, b) for a, b, _ in top_heads(share[:, :, p], 10)}
        agree.append(sum((a, b) in patch_top for a, b, _ in attn_top))
print(f"of the top 3 heads by attention, how many are in the top 10 by patching, per prompt: {agree}; "
      f"at least 2 of 3 on {sum(a >= 2 for a in agree)} of {len(agree)} prompts")

# %% [markdown]
# ## 10. In-context learning: the loss by position
#
# Olsson et al. define an **in-context learning score**: the loss of the 500th token of a text minus the
# loss of the 50th, averaged over many texts. A model that uses its context predicts late tokens better:
# the score is negative. Here: 4 passages of the manual, 512 tokens each. With 4 passages, the score
# rests on 4 single-token losses at each end, so the printout also gives each passage's value and a
# windowed version (mean loss over tokens 450-510 minus mean loss over tokens 40-60), which averages
# over more tokens but is not Olsson et al.'s definition.
#
# **Predict first:** is SmolLM2's score negative, and by how many nats? Where does the loss curve fall
# fastest: the first 50 tokens, or later?

# %%
long = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
long = [ids[:511] for ids in long if len(ids) >= 511][:4]
book = torch.tensor([[tokenizer.bos_token_id, *ids] for ids in long], device=device)
losses = attribution.token_losses(llm, book).cpu()
icl = attribution.icl_score(losses, 50, 500)
curve = losses[:, 1:].mean(0).numpy()
smooth = np.convolve(curve, np.ones(9) / 9, mode="valid")
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.plot(np.arange(1, len(curve) + 1), curve, color="lightgray", label="mean over 4 passages")
ax.plot(np.arange(5, 5 + len(smooth)), smooth, color="C0", label="moving average (9 tokens)")
for t in (50, 500):
    ax.axvline(t, color="C3", ls="--")
ax.set(xscale="log", xlabel="token index in the passage", ylabel="loss (nats)", title="SmolLM2 on Python's reference manual")
ax.legend()
plt.show()

# %% [markdown]
# **Reveal.** The curve falls from left to right if the context helps; the dashed lines mark tokens 50 and 500.
# Below, Olsson et al.'s score first, then the numbers that show how much it rests on.

# %%
per_book = (losses[:, 500] - losses[:, 50]).numpy()  # column t is the loss of passage token t
windowed = losses[:, 450:511].mean(1) - losses[:, 40:61].mean(1)  # tokens 450-510 minus tokens 40-60
print(f"in-context learning score (Olsson et al.: loss at token 500 - loss at token 50, mean of {len(book)} passages): "
      f"{icl:+.2f} nats ({'negative: later tokens are predicted better' if icl < 0 else 'not negative'})")
print(f"per passage: {np.round(per_book, 2).tolist()}; windowed (mean loss over tokens 450-510 minus over 40-60), "
      f"per passage: {np.round(windowed.numpy(), 2).tolist()}, mean {float(windowed.mean()):+.2f} nats")
print(f"mean loss over tokens 1-10 {curve[:10].mean():.2f}, 40-60 {curve[39:60].mean():.2f}, "
      f"450-510 {curve[449:510].mean():.2f} nats")

# %% [markdown]
# ## 11. Q-, K- and V-composition of the top heads
#
# Which heads read what the others write? For the top 4 previous-token and top 4 prefix-matching heads,
# every pair whose writer sits in an earlier layer than its reader gets three composition scores
# (Elhage et al.; row convention, norm gains folded in, query-key distance 0): **Q** (the reader's
# queries read the writer's output), **K** (its keys do), **V** (its values do). Each is set against
# 200 random head pairs of the same model, as lesson 5 (section 13) did for K-composition alone.
#
# **Predict first:** the induction circuit predicts strong K-composition from previous-token heads into
# induction heads. Will those pairs stand out more under K than under Q or V?

# %%
chosen = sorted({(a, b) for a, b, _ in top_prev[:4]} | {(a, b) for a, b, _ in top_ind[:4]})
labels = [f"L{a}H{b}" for a, b in chosen]
comp = {kind: composition.composition_scores(llm, chosen, kind) for kind in composition.KINDS}
baseline = {kind: composition.random_pair_composition(llm, kind, n_pairs=200, seed=1) for kind in composition.KINDS}
fig, axes = plt.subplots(1, 3, figsize=(17, 5))
for ax, kind in zip(axes, composition.KINDS, strict=True):
    pct = np.vectorize(lambda v, k=kind: np.nan if np.isnan(v) else np.mean(baseline[k] < v))(comp[kind])
    heatmap(pct, labels, labels, ax=ax, vmin=0, vmax=1, fmt="{:.0%}", cmap="viridis", annotate=True,
            title=f"{kind}-composition: percentile among random pairs", xlabel="reader", ylabel="writer")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reveal.** Each cell is a pair's percentile among the random head pairs (blank: the writer is not
# earlier). Look at the rows of previous-token heads and the columns of prefix-matching heads in each panel.

# %%
prev_set = {(a, b) for a, b, _ in top_prev[:4]}
for kind in composition.KINDS:
    cells = [(w, r) for i, w in enumerate(chosen) for j, r in enumerate(chosen)
             if w in prev_set and r in ind_set and not np.isnan(comp[kind][i, j])]
    pct = [np.mean(baseline[kind] < comp[kind][chosen.index(w), chosen.index(r)]) for w, r in cells]
    print(f"{kind}-composition, previous-token -> prefix-matching pairs ({len(cells)}): median percentile "
          f"{np.median(pct):.0%} among 200 random pairs (random pairs: median {np.median(baseline[kind]):.3f})")

# %% [markdown]
# ## 12. The QK-OV bridge at SmolLM2's real induction distance
#
# Lesson 5 (section 6) showed that with rotary positions the QK circuit depends on the query-key
# distance: $W_{qk}(\delta) = W_Q R(\delta) W_K^\top$. Lesson 5's sections 12-13 matched a writer's OV output
# against a reader's key directions at distance 0. On this lesson's repeated passage, an induction head
# at a query in the second copy reads a key $L - 1 = 59$ positions back, so here the key directions
# come from $W_{qk}(59)$ (`toyattn.circuits.head_circuits.bridge_matching`, rank 10), for each previous-token ->
# prefix-matching pair, against 100 random head pairs at the same distance.
#
# **Predict first:** does the real distance make the top pairs stand out more, or less, than distance 0?

# %%
R_BRIDGE, DIST = 10, L - 1
pairs = [((a, b), (c, d)) for a, b, _ in top_prev for c, d, _ in top_ind if a < c]
rand_pairs = []
while len(rand_pairs) < 100:
    la, lb = sorted(int(x) for x in rng.choice(cfg["n_layers"], 2, replace=False))
    rand_pairs.append(((la, int(rng.integers(cfg["n_heads"]))), (lb, int(rng.integers(cfg["n_heads"])))))
bridge = {dist: (head_circuits.bridge_matching(llm, pairs, R_BRIDGE, dist), head_circuits.bridge_matching(llm, rand_pairs, R_BRIDGE, dist))
          for dist in (0, DIST)}
fig, ax = plt.subplots(figsize=(8, 3.5))
for dist, color in ((0, "C0"), (DIST, "C3")):
    top_vals, rand_vals = bridge[dist]
    ax.hist(rand_vals, bins=20, alpha=0.4, color=color, label=f"random pairs, distance {dist}")
    for v in top_vals:
        ax.axvline(v, color=color, lw=1)
ax.set(xlabel=f"QK-OV matching, rank {R_BRIDGE}", ylabel="pairs", title="previous-token -> prefix-matching pairs (lines)")
ax.legend()
plt.show()

# %% [markdown]
# **Reveal.** Lines are the top pairs, histograms the random pairs, blue at distance 0 and red at 59.
# Look at whether the two colours differ. If they barely do, one reason can be where a head's weight
# sits among the rotary pairs: a pair that turns by only a few hundredths of a radian over 59 positions
# is almost unchanged by $R(59)$, so the part of a head's query and key weight in such slow pairs reads
# almost the same subspace at distance 59 as at 0. It is not the whole story: the key directions come
# from $W_Q R(\delta) W_K^\top$, so how $W_Q$ spreads its weight over its directions (its Gram matrix
# $W_Q^\top W_Q$) also decides how much the rotation of the fast pairs moves them; this lesson does not
# test that. The printout below gives the change for all the top pairs, and the slow pairs' share of
# the weight for **one** head only, the top prefix-matching head (named in the printout), not for every
# pair in the plot.

# %%
for dist in (0, DIST):
    top_vals, rand_vals = bridge[dist]
    pct = np.array([np.mean(rand_vals < v) for v in top_vals])
    print(f"distance {dist:>2}: {len(pairs)} top pairs, median matching {np.median(top_vals):.3f} (random pairs "
          f"{np.median(rand_vals):.3f}); median percentile among random pairs {np.median(pct):.0%}")
shift = np.abs(bridge[DIST][0] - bridge[0][0])
print(f"moving from distance 0 to {DIST} changes a top pair's matching by at most {shift.max():.3f} (median {np.median(shift):.3f})")
half = cfg["d_head"] // 2
turn = DIST * cfg["rope_base"] ** (-np.arange(half) * 2 / cfg["d_head"])  # radians each pair turns over DIST positions
slow = np.concatenate([turn < 0.05] * 2)  # pair i is coordinates i and i + d_head/2
a, b, _ = top_ind[0]
Wq, Wk = llm.blocks[a].attn.W_Q[b].detach().cpu(), llm.blocks[a].attn.W_K[llm.cfg.kv_head(b)].detach().cpu()
share_slow = float((Wq[:, slow].pow(2).sum() * Wk[:, slow].pow(2).sum()).sqrt() / (Wq.pow(2).sum() * Wk.pow(2).sum()).sqrt())
print(f"{int((turn < 0.05).sum())} of the {half} rotary pairs turn by less than 0.05 rad over {DIST} positions; for one head, "
      f"the top prefix-matching head L{a}H{b}, they hold {share_slow:.0%} of its query and key weight (geometric mean of "
      f"the two squared-norm shares; not measured for the other heads of the {len(pairs)} pairs)")
print(f"the lesson ran in {time.perf_counter() - started:.0f} s on {device}")

# %% [markdown]
# ## What you saw, and what to try next
#
# You loaded SmolLM2 from its file into the course's blocks and held its logits to `transformers`'
# independent implementation; on real text you compared, prompt by prompt, the heads that attend like
# induction heads with those whose output restores a corrupted prediction, and measured how the loss
# changes with position in the text. Where the printouts show the two sets of heads agreeing and a
# negative score, that is evidence *consistent with* an induction circuit doing in-context copying in
# this model, measured on a handful of passages.
#
# Next:
# * Patch a head's output at **every** position of the second copy, not only the last, and compare:
#   which heads matter only through later positions?
# * Repeat section 9 with **mean** ablation of the top 3 heads instead of patching, and measure the
#   ICL score with them ablated: how much of the fall in loss do they account for?
# * Score the heads on text that never repeats exactly (a passage and its paraphrase): do the same
#   heads still attend to the "next token after the match"?
# * The problem set (`exercises/06_real_model_induction`) has you write each piece of section 2 and
#   choose your own heads and metric for patching.
