"""One attention layer of a BERT-family checkpoint as PyTorch's ``nn.MultiheadAttention`` (lesson 2).

Taught in lesson 2 (``notebooks/02_head_permutation``, section 9), where a pretrained encoder's layer
is the fused-QKV weight whose heads the student shuffles and recovers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from toyattn.weights.checkpoints import require_package


def bert_attention_as_mha(path: str | Path, layer: int, *, n_heads: int) -> nn.MultiheadAttention:
    """One self-attention layer of a BERT-family ``model.safetensors`` as ``nn.MultiheadAttention`` (lesson 2).

    BERT keeps query, key and value as three ``nn.Linear`` weights ``[d_model, d_model]`` (``out_in``);
    stacked they are exactly the fused ``in_proj_weight`` ``[3*d_model, d_model]`` of
    ``nn.MultiheadAttention``, and ``attention.output.dense`` is its ``out_proj`` (BERT's dropout and
    the layer norm after it are not part of the module). Only these 8 tensors are read from disk.
    Returns a module with ``batch_first=True`` in eval mode.
    """
    safe_open = require_package("safetensors").safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass the path of a BERT-family model.safetensors.")
    with safe_open(str(path), framework="pt") as f:
        names = list(f.keys())
        stem = f"layer.{layer}.attention."
        matches = [n for n in names if n.endswith(stem + "self.query.weight")]
        if not matches:
            n_layers = len({n.split("layer.")[1].split(".")[0] for n in names if ".layer." in n or n.startswith("layer.")})
            raise ValueError(
                f"{path.name} has no '{stem}self.query.weight': not a BERT-family checkpoint, or layer {layer} is "
                f"out of range (it seems to have {n_layers} layers)."
            )
        prefix = matches[0][: -len("self.query.weight")]

        def get(name: str) -> torch.Tensor:
            return f.get_tensor(prefix + name)

        q, k, v = get("self.query.weight"), get("self.key.weight"), get("self.value.weight")
        d_model = q.shape[1]
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}: check n_heads in the model's config.json.")
        mha = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([q, k, v]))
            mha.in_proj_bias.copy_(torch.cat([get("self.query.bias"), get("self.key.bias"), get("self.value.bias")]))
            mha.out_proj.weight.copy_(get("output.dense.weight"))
            mha.out_proj.bias.copy_(get("output.dense.bias"))
    return mha.eval()
