"""Reading a GGUF file's header and tensors without parsing the metadata the course never uses.

Lesson 3 reads two tensors per layer out of llama.cpp's GGUF files. ``gguf.GGUFReader`` first turns
every metadata value into NumPy arrays, including the tokenizer's vocabulary and merges (about a
hundred thousand strings in a small model), before a single weight can be read. This module walks
the same header with :mod:`struct`: it keeps scalar and string values, steps over arrays by their
lengths (reading only each string's length), reads the tensor infos, and memory-maps the tensor
data. The format's constants and the dequantisation come from the ``gguf`` package itself, and
``tests/test_weights_gguf.py`` compares every field the course uses with ``GGUFReader``'s.

Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (little-endian files only).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LLAMA_TENSOR_NAMES",
    "ROTARY_ROWS_INTERLEAVED",
    "GGUFError",
    "GGUFFile",
    "GGUFTensorInfo",
    "llama_state_dict",
    "metadata_count",
    "unpermute_llama_cpp_rows",
]

#: Arrays of numbers up to this length are kept (e.g. per-layer head counts); longer ones are skipped.
KEEP_ARRAY_MAX = 1024

# GGUF value types (gguf.GGUFValueType) -> struct format of one item; 8 = string, 9 = array.
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands, or it is damaged; the message names the file."""


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One tensor's entry in the header: ``shape`` in GGUF order (fastest-varying dimension first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # absolute, in bytes from the start of the file
    n_bytes: int

    @property
    def numpy_shape(self) -> tuple[int, ...]:
        """The shape as NumPy (and ``nn.Linear``) see it: ``[rows, columns]`` = reversed GGUF order."""
        return tuple(reversed(self.shape))


class _Cursor:
    """Reads little-endian values from the mapped file, naming the file and what it read when it runs out."""

    def __init__(self, buf: mmap.mmap, path: Path):
        self.buf, self.path, self.pos = buf, path, 0

    def take(self, fmt: str, what: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            self.truncated(what)
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            self.truncated(what)
        self.pos += n

    def skip_strings(self, count: int, key: str) -> None:
        """Step over ``count`` length-prefixed strings (the hot loop: a vocabulary has ~10^5 of them)."""
        length, buf, pos, end = _U64.unpack_from, self.buf, self.pos, len(self.buf)
        try:
            for _ in range(count):
                pos += 8 + length(buf, pos)[0]
        except struct.error:
            pos = end + 1
        if pos > end:
            self.truncated(f"the strings of {key}")
        self.pos = pos

    def string(self, what: str) -> str:
        n = self.take("Q", what)
        start = self.pos
        self.skip(n, what)
        try:
            return bytes(self.buf[start : start + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: {what} is not UTF-8 text (byte {start}); the file is damaged.") from None

    def truncated(self, what: str) -> None:
        raise GGUFError(
            f"{self.path}: the file ends (at {len(self.buf)} bytes) while reading {what}; it is truncated or "
            "not a GGUF file. Download or copy it again."
        )


def _value(cur: _Cursor, vtype: int, key: str) -> Any:
    """One metadata value; long arrays and arrays of strings are stepped over and returned as None."""
    if vtype in _SCALAR_FORMATS:
        return cur.take(_SCALAR_FORMATS[vtype], f"the value of {key}")
    if vtype == _STRING:
        return cur.string(f"the value of {key}")
    if vtype != _ARRAY:
        raise GGUFError(f"{cur.path}: metadata {key} has unknown value type {vtype}; the file is damaged.")
    item_type = cur.take("I", f"the item type of {key}")
    count = cur.take("Q", f"the length of {key}")
    if item_type in _SCALAR_FORMATS:
        size = struct.calcsize("<" + _SCALAR_FORMATS[item_type])
        if count <= KEEP_ARRAY_MAX:
            start = cur.pos
            cur.skip(size * count, f"the items of {key}")
            return list(struct.unpack_from(f"<{count}{_SCALAR_FORMATS[item_type]}", cur.buf, start))
        cur.skip(size * count, f"the items of {key}")
        return None
    if item_type == _STRING:  # e.g. the tokenizer's vocabulary: only each length is read
        cur.skip_strings(count, key)
        return None
    raise GGUFError(f"{cur.path}: metadata {key} is an array of type {item_type}, which GGUF does not define.")


class GGUFFile:
    """A GGUF file's metadata (``metadata``: key -> number, text or short list) and tensors, memory-mapped.

    Arrays that were stepped over (the tokenizer's) appear in ``metadata`` as None. ``dequantize(name)``
    gives a tensor as float32 in NumPy order, whatever its quantisation.
    """

    def __init__(self, path: str | Path):
        import gguf  # the format's constants and block sizes

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file.")
        with open(self.path, "rb") as f:
            try:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                raise GGUFError(f"{self.path}: the file is empty; it is not a GGUF file.") from None
        cur = _Cursor(self._map, self.path)
        if cur.take("I", "the magic number") != gguf.GGUF_MAGIC:
            raise GGUFError(f"{self.path}: not a GGUF file (its first four bytes are not 'GGUF').")
        self.version = cur.take("I", "the version")
        if self.version not in (2, 3):
            raise GGUFError(
                f"{self.path}: GGUF version {self.version} (or a big-endian file); this reader handles "
                "little-endian GGUF versions 2 and 3."
            )
        n_tensors = cur.take("Q", "the tensor count")
        n_kv = cur.take("Q", "the metadata count")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string("a metadata key")
            self.metadata[key] = _value(cur, cur.take("I", f"the value type of {key}"), key)
        infos = [self._tensor_info(cur) for _ in range(n_tensors)]
        alignment = self.metadata.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise GGUFError(f"{self.path}: general.alignment is {alignment!r}, not a power of two.")
        self.data_offset = -(-cur.pos // alignment) * alignment
        self.tensors: dict[str, GGUFTensorInfo] = {}
        for name, shape, ggml_type, rel in infos:
            if name in self.tensors:
                raise GGUFError(f"{self.path}: tensor {name} appears twice; the file is damaged.")
            self.tensors[name] = self._located(name, shape, ggml_type, rel, gguf)

    def _tensor_info(self, cur: _Cursor) -> tuple[str, tuple[int, ...], int, int]:
        name = cur.string("a tensor name")
        n_dims = cur.take("I", f"the rank of {name}")
        if n_dims > 8:
            raise GGUFError(f"{self.path}: tensor {name} claims {n_dims} dimensions; the file is damaged.")
        shape = tuple(cur.take("Q", f"the shape of {name}") for _ in range(n_dims))
        return name, shape, cur.take("I", f"the type of {name}"), cur.take("Q", f"the offset of {name}")

    def _located(self, name: str, shape: tuple[int, ...], ggml_type: int, rel: int, gguf: Any) -> GGUFTensorInfo:
        try:
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise GGUFError(f"{self.path}: tensor {name} has unknown type {ggml_type}.") from None
        n_elements = int(np.prod(shape, dtype=np.int64)) if shape else 1
        info = GGUFTensorInfo(name, shape, ggml_type, self.data_offset + rel, n_elements * type_size // block)
        if info.offset + info.n_bytes > len(self._map):
            raise GGUFError(
                f"{self.path}: tensor {name} lies past the end of the file ({info.offset + info.n_bytes} > "
                f"{len(self._map)} bytes); the file is truncated. Download or copy it again."
            )
        return info

    def raw(self, name: str) -> np.ndarray:
        """The tensor's stored data, as ``GGUFReader``'s ``tensor.data`` holds it (bytes for quantized types)."""
        import gguf

        info = self._info(name)
        qtype = gguf.GGMLQuantizationType(info.ggml_type)
        plain = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8,
                 "I16": np.int16, "I32": np.int32, "I64": np.int64}
        data = np.frombuffer(self._map, dtype=np.uint8, count=info.n_bytes, offset=info.offset)
        if qtype.name in plain:
            return data.view(plain[qtype.name]).reshape(info.numpy_shape)
        return data.reshape(gguf.quants.quant_shape_to_byte_shape(info.numpy_shape, qtype))

    def dequantize(self, name: str) -> np.ndarray:
        """The tensor as float32, shape :attr:`GGUFTensorInfo.numpy_shape` (``[out, in]`` for a weight)."""
        import gguf

        info = self._info(name)
        values = gguf.quants.dequantize(self.raw(name), gguf.GGMLQuantizationType(info.ggml_type))
        return np.array(values.reshape(info.numpy_shape), dtype=np.float32)  # owned and writable, not the map

    def _info(self, name: str) -> GGUFTensorInfo:
        if name not in self.tensors:
            raise GGUFError(f"{self.path}: tensor {name} is missing; is the file complete?")
        return self.tensors[name]

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, {len(self.tensors)} tensors, {len(self.metadata)} metadata keys)"

# ---------------------------------------------------------------------------------------------
# llama.cpp's conventions: the one place that knows them (the Q/K reader and the Llama loader use it)
# ---------------------------------------------------------------------------------------------

def unpermute_llama_cpp_rows(weight: Any, n_heads: int) -> Any:
    """Undo llama.cpp's row permutation of ``q_proj``/``k_proj`` in GGUF files, ``[n_heads * d_head, d_model]`` (NumPy or torch).

    llama.cpp's converter reorders the rows of each head from Hugging Face's "rotate half" layout
    (pairs ``(i, i + d_head/2)``) to interleaved pairs ``(2i, 2i + 1)``. It applies the *same*
    reordering ``P`` to every query head and every key head (all have the same ``d_head``), so
    ``W_q[h] P (W_k[g] P)^T = W_q[h] W_k[g]^T``: symmetry scores do not change either way. Undoing it
    anyway gives back exactly the Hugging Face weights, which makes the two sources comparable entry by
    entry. Lessons 3 and 5.
    """
    rows, cols = weight.shape
    d_head = rows // n_heads
    return weight.reshape(n_heads, d_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def metadata_count(gg: GGUFFile, key: str) -> int | None:
    """A positive whole number from the metadata (``llama.block_count``...), ``None`` when absent."""
    value = gg.metadata.get(key)
    if value is None:
        return None
    if isinstance(value, list):  # per-layer counts (some converters write one per block): all must agree
        value = value[0] if value and all(v == value[0] for v in value) else None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{gg.path}: GGUF metadata {key} is {value!r}, not a positive whole number.")
    return value


#: GGUF architectures the course reads, and whether llama.cpp's converter interleaved their q/k rows (Llama's did,
#: for its rotary layout; Gemma's use the halves layout and are stored as they are).
ROTARY_ROWS_INTERLEAVED = {"llama": True, "gemma": False, "gemma2": False, "gemma3": False}


#: llama.cpp's tensor names (``blk.{i}.<name>.weight``) -> Hugging Face's (``layers.{i}.<name>.weight``).
LLAMA_TENSOR_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def llama_state_dict(gg: GGUFFile) -> dict[str, np.ndarray]:
    """Every tensor of a Llama-family GGUF file, dequantized to float32, under Hugging Face's names.

    The ``q``/``k`` rows are put back from llama.cpp's interleaved rotary pairs into the "rotate half"
    layout (:func:`unpermute_llama_cpp_rows`) that ``transformers`` and the course's models use.
    """
    arch = gg.metadata.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{gg.path} holds a {arch!r} model; only Llama-family GGUF files are read this way.")
    n_heads, n_kv = metadata_count(gg, "llama.attention.head_count"), metadata_count(gg, "llama.attention.head_count_kv")
    n_layers = metadata_count(gg, "llama.block_count")
    if not n_heads or not n_layers:
        raise ValueError(f"{gg.path}: GGUF metadata lacks llama.attention.head_count or llama.block_count.")
    state = {"embed_tokens.weight": gg.dequantize("token_embd.weight"), "norm.weight": gg.dequantize("output_norm.weight")}
    if "output.weight" in gg.tensors:
        state["lm_head.weight"] = gg.dequantize("output.weight")
    for i in range(n_layers):
        for gguf_name, hf_name in LLAMA_TENSOR_NAMES.items():
            w = gg.dequantize(f"blk.{i}.{gguf_name}.weight")
            if gguf_name in ("attn_q", "attn_k"):
                w = unpermute_llama_cpp_rows(w, n_heads if gguf_name == "attn_q" else (n_kv or n_heads))
            state[f"layers.{i}.{hf_name}.weight"] = w
    return state
