# %% [markdown]
# # Lesson 6 problems: build SmolLM2 from its weights, then attribute its predictions to heads
#
# *This is the solved version of the problem set; students get the exercise version in `exercises/`.*
#
# **Learning goals.** After these problems you can
# 1. write each piece of a Llama-family forward pass (RMSNorm, rotary positions, grouped-query causal
#    attention, the SwiGLU MLP) against a check, assemble them with the residual stream and the tied
#    unembedding, and hold the logits to `transformers` and to the course's model within a tolerance you state;
# 2. generate greedily from a prompt with the tokenizer stored in the model's file;
# 3. attribute the logit of the right next token to each head directly, with the final norm's scale
#    frozen, and decide which heads write it on a repeated passage;
# 4. patch one head from a clean into a corrupted run, choose the heads, the position and the metric
#    yourself, and judge the result against random heads.
#
# Read `notebooks/06_real_model_induction` first; "section N" below means the lesson's section N.
#
# **Conventions.** The weights come as in the file, in PyTorch's `nn.Linear` layout `[out, in]`: a
# layer computes `x @ W.T`. The exercises' functions take row-vector matrices (`[in, out]`) where they
# say so. Each exercise says what to compute; how is up to you. A **Hint** cell follows some of them:
# skip it unless you are stuck. Every check draws fresh inputs and names the mistake a wrong answer
# looks like; checks refuse answers that call the modules holding the course's own solutions:
# `toyattn.models.llama` (Exercises 1-4), `toyattn.models.transformer` (Exercise 2, its `apply_rotary`),
# `toyattn.models.attention` (Exercise 3, its `attend`) and `toyattn.circuits.attribution` (Exercises 5-6). Where a cell asks you to **decide**, write your answer in the cell
# below it; in `solutions/` that cell holds a model answer that prints its reasoning from its own run.

# %%
import numpy as np
import torch

from toyattn import checks, get_device, seed_everything
from toyattn.circuits.real_text import passages, repeat_passage
from toyattn.weights.gguf import GGUFFile, unpermute_llama_cpp_rows
from toyattn.weights.llama import load_tokenizer
from toyattn.weights.pretrained import smollm2_gguf_path

seed_everything(0)
torch.set_num_threads(1)  # as in lesson 5: on a shared machine, one thread is the robust choice
device = get_device()

# %% [markdown]
# The weights of SmolLM2-135M-Instruct, dequantized from the course's GGUF file by the `gguf` package,
# with the query and key rows put back in the "rotate half" order (section 1), and the tokenizer
# stored in the same file. `W["3.q"]` is layer 3's query matrix `[n_heads * d_head, d_model]`.

# %%
gg = GGUFFile(smollm2_gguf_path())
meta = lambda key: gg.metadata[f"llama.{key}"]  # noqa: E731
N_LAYERS, D_MODEL = int(meta("block_count")), int(meta("embedding_length"))
N_HEADS, N_KV = int(meta("attention.head_count")), int(meta("attention.head_count_kv"))
EPS, BASE, D_HEAD = float(meta("attention.layer_norm_rms_epsilon")), float(meta("rope.freq_base")), D_MODEL // N_HEADS
tensor = lambda name: torch.from_numpy(np.ascontiguousarray(gg.dequantize(name))).float().to(device)  # noqa: E731
W = {"embed": tensor("token_embd.weight"), "final_norm": tensor("output_norm.weight")}
for i in range(N_LAYERS):
    for short, name in (("ln1", "attn_norm"), ("ln2", "ffn_norm"), ("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v"),
                        ("o", "attn_output"), ("gate", "ffn_gate"), ("up", "ffn_up"), ("down", "ffn_down")):
        W[f"{i}.{short}"] = tensor(f"blk.{i}.{name}.weight")
    W[f"{i}.q"] = unpermute_llama_cpp_rows(W[f"{i}.q"], N_HEADS)
    W[f"{i}.k"] = unpermute_llama_cpp_rows(W[f"{i}.k"], N_KV)
tokenizer = load_tokenizer()
print(f"{N_LAYERS} layers, d_model {D_MODEL}, {N_HEADS} query heads and {N_KV} key/value heads of {D_HEAD}, "
      f"eps {EPS:g}, rotary base {BASE:g}")

# %% [markdown]
# ## Exercise 1: RMSNorm
#
# Write `rms_norm(x, weight, eps)`: each vector along the last axis divided by its root mean square,
# then multiplied by the gain `weight` (Zhang & Sennrich). Decide where `eps` goes; the check uses a
# large `eps` in some cases, so the place matters.

# %%
def rms_norm(x, weight, eps):
    """x [..., d], weight [d] -> [..., d]."""
    ### BEGIN SOLUTION
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
    ### END SOLUTION


checks.check_rms_norm(rms_norm)

# %% [markdown]
# ## Exercise 2: rotary positions
#
# Write `rotary(x, positions, base)` for queries or keys `x [batch, pos, heads, d_head]`: pair $i$
# (coordinates $i$ and $i + d_{head}/2$, the "rotate half" layout of `transformers`' Llama) turns by the
# angle `positions * base ** (-2 i / d_head)`. The check compares your answer with the course's
# `apply_rotary` and with `transformers`' convention, and recognises the interleaved layout.

# %% [markdown]
# <details><summary><b>Hint</b> (optional)</summary>
#
# Split `x` into its two halves `x1, x2`; a rotation by angle $\theta$ of the pair $(a, b)$ gives
# $(a\cos\theta - b\sin\theta,\; a\sin\theta + b\cos\theta)$. The angles are `[pos, d_head/2]`:
# broadcast them over the batch and head axes.
# </details>

# %%
def rotary(x, positions, base):
    """x [batch, pos, heads, d_head], positions [pos] -> same shape."""
    ### BEGIN SOLUTION
    half = x.shape[-1] // 2
    angle = positions.float()[:, None] * base ** (-torch.arange(half, device=x.device).float() * 2 / x.shape[-1])
    cos, sin = angle.cos()[None, :, None], angle.sin()[None, :, None]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    ### END SOLUTION


checks.check_rotary(rotary)

# %% [markdown]
# ## Exercise 3: grouped-query causal attention
#
# Write `gqa_attention(q, k, v)`: `q [batch, pos, n_heads, d_head]`, `k, v [batch, pos, n_kv_heads,
# d_head]` (already rotated), returning `z [batch, pos, n_heads, d_head]`, the attention-weighted values
# of each query head. Scores are divided by $\sqrt{d_{head}}$; a position attends to itself and to
# earlier positions only. In SmolLM2, 9 query heads share 3 key/value heads: decide which query heads
# read which key/value head (the check tells you if you got the grouping backwards).

# %%
def gqa_attention(q, k, v):
    """-> z [batch, pos, n_heads, d_head]."""
    ### BEGIN SOLUTION
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)  # heads 0-2 read kv 0, ...
    n = q.shape[1]
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v)
    ### END SOLUTION


checks.check_gqa_attention(gqa_attention)

# %% [markdown]
# ## Exercise 4: the SwiGLU MLP
#
# Write `swiglu(x, W_gate, W_up, W_down)` with row-vector matrices (`W_gate, W_up [d_model, d_mlp]`,
# `W_down [d_mlp, d_model]`): Shazeer's SwiGLU, a silu-gated product of two projections, projected back.

# %%
def swiglu(x, W_gate, W_up, W_down):
    """x [..., d_model] -> [..., d_model]."""
    ### BEGIN SOLUTION
    return (torch.nn.functional.silu(x @ W_gate) * (x @ W_up)) @ W_down
    ### END SOLUTION


checks.check_swiglu(swiglu)

# %% [markdown]
# **Assemble the model.** Write `my_forward(tokens)`: `tokens [batch, pos]` to logits `[batch, pos,
# vocab]`, from your four pieces, the residual stream (each block adds its attention's and MLP's
# output, each reading an RMSNorm of the stream: `ln1` before attention, `ln2` before the MLP), the
# final norm and the tied unembedding (section 2). Then **decide** a tolerance, and compare your logits
# with `transformers`' `LlamaForCausalLM` built from the same GGUF file and with the course's
# `toyattn.models.llama`, on two prompts of your choice: print the largest absolute difference and
# your tolerance.

# %%
### BEGIN SOLUTION
@torch.no_grad()
def my_forward(tokens):
    b, n = tokens.shape
    positions = torch.arange(n, device=tokens.device)
    x = W["embed"][tokens]
    for i in range(N_LAYERS):
        h = rms_norm(x, W[f"{i}.ln1"], EPS)
        q = rotary((h @ W[f"{i}.q"].T).view(b, n, N_HEADS, D_HEAD), positions, BASE)
        k = rotary((h @ W[f"{i}.k"].T).view(b, n, N_KV, D_HEAD), positions, BASE)
        v = (h @ W[f"{i}.v"].T).view(b, n, N_KV, D_HEAD)
        x = x + gqa_attention(q, k, v).reshape(b, n, D_MODEL) @ W[f"{i}.o"].T
        h = rms_norm(x, W[f"{i}.ln2"], EPS)
        x = x + swiglu(h, W[f"{i}.gate"].T, W[f"{i}.up"].T, W[f"{i}.down"].T)
    return rms_norm(x, W["final_norm"], EPS) @ W["embed"].T
### END SOLUTION

# %%
from toyattn.weights.llama import (
    load_llama_gguf,  # noqa: E402
    load_transformers_llama,  # noqa: E402
)

llm = load_llama_gguf().to(device)
hf_model = load_transformers_llama().to(device)

# %%
### BEGIN SOLUTION
TOL = 1e-3  # float32: different summation orders over 30 layers; compare it with the largest |logit| printed
for text in ("Lists are mutable sequences, typically used to store collections of homogeneous items.",
             "def fibonacci(n):\n    if n < 2:\n        return n"):
    ids = torch.tensor([tokenizer(text)["input_ids"]], device=device)
    with torch.no_grad():
        mine, theirs, course = my_forward(ids), hf_model(ids).logits, llm(ids)
    d_hf, d_course = float((mine - theirs).abs().max()), float((mine - course).abs().max())
    print(f"{text[:30]!r}: max |mine - transformers| {d_hf:.1e}, max |mine - toyattn| {d_course:.1e} "
          f"(tolerance {TOL:g}; largest |logit| {float(theirs.abs().max()):.1f})")
    assert max(d_hf, d_course) < TOL
### END SOLUTION

# %% [markdown]
# **Generate.** Continue a prompt of your choice greedily for 8 tokens with `my_forward`, and print
# the text. Does `transformers`' `generate(..., do_sample=False)` give the same tokens?

# %%
### BEGIN SOLUTION
ids = torch.tensor([tokenizer("A list comprehension in Python")["input_ids"]], device=device)
mine = ids
for _ in range(8):
    mine = torch.cat([mine, my_forward(mine)[:, -1].argmax(-1, keepdim=True)], dim=1)
with torch.no_grad():
    theirs = hf_model.generate(ids, max_new_tokens=8, do_sample=False, attention_mask=torch.ones_like(ids),
                               pad_token_id=tokenizer.eos_token_id)
print(repr(tokenizer.decode(mine[0])))
print("same tokens as transformers' generate:", torch.equal(mine, theirs))
### END SOLUTION
del hf_model

# %% [markdown]
# ## Exercise 5: direct logit attribution
#
# Write `logit_attribution(head_out, final_resid, gain, eps, W_U, targets)`: for one sequence,
# `head_out [pos, heads, d_model]` is what each head of one layer adds to the residual stream,
# `final_resid [pos, d_model]` the residual stream before the final RMSNorm (`gain [d_model]`, `eps`),
# `W_U [d_model, vocab]`; return `[pos, heads]`, each head's direct contribution to the logit of
# `targets[p]` at position `p`. Freeze the norm's scale as section 7 does (TransformerLens's
# `apply_ln_to_stack`): decide what one number per position the norm divides by, and take it from
# `final_resid`.

# %%
def logit_attribution(head_out, final_resid, gain, eps, W_U, targets):
    """-> [pos, heads]."""
    ### BEGIN SOLUTION
    scale = torch.rsqrt(final_resid.pow(2).mean(-1, keepdim=True) + eps)  # [pos, 1]
    directions = (gain[:, None] * W_U)[:, targets].T  # [pos, d_model]
    return torch.einsum("phd,pd->ph", head_out, directions) * scale
    ### END SOLUTION


checks.check_logit_attribution(logit_attribution)

# %% [markdown]
# Now use it on SmolLM2 (`llm`, the course's hooked model: `hook_z` gives each head's `z`, and head
# `h`'s output is `z[..., h, :] @ llm.blocks[layer].attn.W_O[h]`). Take a passage of Python's manual
# repeated (`repeat_passage(tokenizer, text, 60)`: BOS, 60 tokens, the same 60 again). **Decide** which
# positions to score, then find the heads that add most to the right next token's logit there, and
# print them with how their attribution compares with a typical head's.

# %%
text = passages()[5]
rep = repeat_passage(tokenizer, text, 60)[None].to(device)
names = [f"blocks.{i}.attn.hook_z" for i in range(N_LAYERS)] + [f"blocks.{N_LAYERS - 1}.hook_resid_post"]
_, cache = llm.run_with_cache(rep, names_filter=names)

# %%
### BEGIN SOLUTION
second = torch.arange(61, 120)  # second-copy positions whose next token is in the passage
targets = rep[0, second + 1]
final = cache[f"blocks.{N_LAYERS - 1}.hook_resid_post"][0, second]
dla = np.zeros((N_LAYERS, N_HEADS))
for i in range(N_LAYERS):
    out = torch.einsum("phe,hed->phd", cache[f"blocks.{i}.attn.hook_z"][0, second], llm.blocks[i].attn.W_O)
    dla[i] = logit_attribution(out, final, llm.ln_final.weight, EPS, llm.W_U, targets).mean(0).detach().cpu().numpy()
best = np.argsort(dla, axis=None)[::-1][:5]
print(f"second-copy positions 61-119 of the passage; a typical head's mean attribution: median {np.median(dla):+.3f}, "
      f"middle 90% from {np.quantile(dla, 0.05):+.3f} to {np.quantile(dla, 0.95):+.3f}")
for k in best:
    a, b = divmod(int(k), N_HEADS)
    print(f"L{a}H{b}: {dla[a, b]:+.2f} nats of logit on average")
### END SOLUTION

# %% [markdown]
# ## Exercise 6: patch one head
#
# Write `patch_head(model, corrupted, clean, layer, head, position)`: the logits of a run on `corrupted`
# in which head `head` of layer `layer` outputs, at `position` only, what it output on `clean`. Leave no
# hook attached.

# %%
def patch_head(model, corrupted, clean, layer, head, position):
    """-> logits [batch, pos, vocab]."""
    ### BEGIN SOLUTION
    name = f"blocks.{layer}.attn.hook_z"
    _, clean_cache = model.run_with_cache(clean, names_filter=name)

    def restore(z, hook):
        z = z.clone()
        z[:, position, head] = clean_cache[name][:, position, head]
        return z

    with torch.no_grad():
        return model.run_with_hooks(corrupted, fwd_hooks=[(name, restore)])
    ### END SOLUTION


checks.check_patch_head_at(patch_head)

# %% [markdown]
# Now the experiment is yours (section 8 did one version). Build a clean prompt in which SmolLM2 can
# predict a token only by induction, and a corrupted one that changes what induction would predict and
# nothing else. **Decide:** which heads to patch (at most 12, from any score you like:
# `toyattn.circuits.detection.head_scores`, your attribution above, ...), at which position, with which
# metric, and what control tells you that a head's effect is more than what any head would do. Print
# the clean and corrupted metric, each head's share recovered, and the control.

# %%
### BEGIN SOLUTION
from toyattn.circuits.detection import (
    head_scores,  # noqa: E402
    top_heads,  # noqa: E402
)

ids = tokenizer(text, add_special_tokens=False)["input_ids"][:40]
j = 30
x = next(t for t in ids[j + 1:] if t not in ids[:j + 1])  # a token of the passage that has not appeared yet
clean = torch.tensor([[tokenizer.bos_token_id, *ids, *ids[:j]]], device=device)
corrupted = clean.clone()
corrupted[0, 1 + j] = x  # token j of the first copy: induction would now predict x
answer, wrong = ids[j], x


def logit_diff(logits):
    """The metric: at the last position (the one that predicts token j), logit(answer) - logit(x)."""
    return float(logits[0, -1, answer] - logits[0, -1, wrong])


with torch.no_grad():
    clean_d, corrupt_d = logit_diff(llm(clean)), logit_diff(llm(corrupted))
candidates = [(a, b) for a, b, _ in top_heads(head_scores(llm, rep, 60)["induction"], 5)]
rng = np.random.default_rng(0)
pool = [(a, b) for a in range(N_LAYERS) for b in range(N_HEADS) if (a, b) not in candidates]
controls = [pool[i] for i in rng.choice(len(pool), 30, replace=False)]  # 30 other heads, none drawn twice
print(f"logit difference: clean {clean_d:.2f}, corrupted {corrupt_d:.2f}")
share = {}
for a, b in candidates + controls:
    share[(a, b)] = (logit_diff(patch_head(llm, corrupted, clean, a, b, -1)) - corrupt_d) / (clean_d - corrupt_d)
print("top prefix-matching heads, share recovered:", {f"L{a}H{b}": round(share[(a, b)], 3) for a, b in candidates})
control = np.array([share[c] for c in controls])
print(f"{len(controls)} random heads (control, none of the candidates), share recovered: median {np.median(control):.3f}, "
      f"largest {control.max():.3f}")
above = [f"L{a}H{b}" for a, b in candidates if share[(a, b)] > control.max()]
print(f"{len(above)} of the {len(candidates)} candidate heads recover more than every random head: {above}")
### END SOLUTION

# %% [markdown]
# ## What next
#
# * Patch your candidate heads **together** (one hook per head): does the share recovered add up, or do
#   the heads overlap?
# * Repeat the patching with your own `my_forward` instead of `llm`: add a `patch` argument that swaps
#   one head's `z` in `gqa_attention`'s output, and compare the numbers.
# * Compute the direct logit attribution of the MLPs too (`hook_resid_post - hook_resid_pre -
#   hook_attn_out` is an MLP's output), and check that embedding, heads and MLPs add up to the logit.
