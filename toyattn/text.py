"""Offline text and SmolLM2's tokenizer and reference model, read from files that ship with Python and the course. Taught in lesson 6.

Lesson 6 (``notebooks/06_real_model_induction``) reads SmolLM2-135M-Instruct on real English text
without a network:

* the text is Python's own reference manual: the ``pydoc_data.topics`` module of the standard library
  holds the manual's sections that ``help("for")`` prints (plain English with code, one passage per
  topic); where a Python build leaves it out, the docstrings of this package stand in;
* the tokenizer is the one stored inside the shipped GGUF file, rebuilt by ``transformers``
  (``AutoTokenizer.from_pretrained(folder, gguf_file=name)``), with no hub access;
* :func:`load_transformers_llama` builds ``transformers``' ``LlamaForCausalLM`` from the same GGUF
  file (``transformers`` needs ``accelerate`` for that), the reference the lesson's logits are held to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

__all__ = ["TEXT_SOURCE", "load_tokenizer", "load_transformers_llama", "passages", "repeat_passage"]

#: Where :func:`passages` takes its text from, for a lesson to print.
TEXT_SOURCE = "Python's reference manual as shipped in the standard library (pydoc_data.topics, what help('for') prints)"


def _gguf(path: str | Path | None) -> Path:
    from toyattn.pretrained import smollm2_gguf_path

    path = Path(path) if path is not None else smollm2_gguf_path()
    if not path.is_file():
        raise FileNotFoundError(f"No GGUF file at {path}; run `make pretrained` for the course's SmolLM2.")
    return path


def _offline() -> None:
    # The course runs without a network: never let transformers try the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_tokenizer(path: str | Path | None = None):
    """The tokenizer stored in the GGUF file (default: the course's SmolLM2), built by ``transformers`` offline."""
    _offline()
    from transformers import AutoTokenizer

    path = _gguf(path)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)


def load_transformers_llama(path: str | Path | None = None):
    """``transformers``' ``LlamaForCausalLM`` built from the GGUF file, float32, in eval mode (about 10 s on a CPU).

    ``transformers`` dequantizes the file itself and undoes llama.cpp's q/k row order, independently of
    the course's loader: the reference that lesson 6 holds its logits to. Needs ``accelerate``.
    """
    _offline()
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    path = _gguf(path)
    # Its progress bars (one of them from a plain tqdm inside the GGUF reader) would fill a notebook's output.
    hf_logging.disable_progress_bar()
    reader = _gguf_reader_module()
    bar = getattr(reader, "tqdm", None) if reader is not None else None
    if bar is not None:
        reader.tqdm = lambda items, *args, **kwargs: items
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                     local_files_only=True)
    except ValueError as err:
        if "accelerate" in str(err):
            raise ImportError("transformers needs `accelerate` to read a GGUF file: "
                              "pip install -e '.[models]' (or `make install`).") from None
        raise
    finally:
        hf_logging.enable_progress_bar()
        if bar is not None:
            reader.tqdm = bar
    return model.eval()


def _gguf_reader_module():
    """``transformers``' GGUF reading module, or None where a version keeps it elsewhere (then its bar shows)."""
    try:
        from transformers import modeling_gguf_pytorch_utils
    except ImportError:
        return None
    return modeling_gguf_pytorch_utils


def _package_docstrings() -> list[str]:
    import pkgutil

    import toyattn

    texts = []
    for info in pkgutil.iter_modules(toyattn.__path__):
        source = Path(toyattn.__path__[0]) / f"{info.name}.py"
        if source.is_file():
            found = re.search(r'^"""(.*?)"""', source.read_text(encoding="utf-8"), flags=re.S)
            if found:
                texts.append(found.group(1))
    return texts


def passages(min_chars: int = 2000, n: int | None = None) -> list[str]:
    """Passages of English prose at least ``min_chars`` long, in a fixed order (the manual's topics by name).

    Taken from :data:`TEXT_SOURCE`; a Python without ``pydoc_data`` gets this package's docstrings instead.
    Runs of blank lines and indentation are squeezed, so a passage is mostly words.
    """
    try:
        from pydoc_data.topics import topics

        texts = [topics[name] for name in sorted(topics)]
    except ImportError:
        texts = _package_docstrings()
    cleaned = [re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n+", "\n\n", t)).strip() for t in texts]
    long_enough = [t for t in cleaned if len(t) >= min_chars]
    if not long_enough:
        raise ValueError(f"No passage of {min_chars} characters or more; ask for shorter ones (min_chars).")
    return long_enough[:n] if n is not None else long_enough


def repeat_passage(tokenizer, text: str, length: int) -> torch.Tensor:
    """``[1 + 2 * length]`` token ids: the BOS token, then the first ``length`` tokens of ``text``, twice."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < length:
        raise ValueError(f"The text has {len(ids)} tokens, fewer than length={length}: pass a longer text.")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else ids[0]
    return torch.tensor([bos, *ids[:length], *ids[:length]])
