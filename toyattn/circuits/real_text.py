"""Offline English text to read a real model on: passages of Python's reference manual, and a passage repeated. Taught in lesson 6.

Lesson 6 (``notebooks/06_real_model_induction``) reads SmolLM2-135M-Instruct on real text without a
network. The text is Python's own reference manual: the ``pydoc_data.topics`` module of the standard
library holds the manual's sections that ``help("for")`` prints (plain English with code, one passage
per topic); where a Python build leaves it out, the docstrings of this package stand in. The tokenizer
comes from the model's GGUF file (:func:`toyattn.weights.llama.load_tokenizer`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

__all__ = ["TEXT_SOURCE", "passages", "repeat_passage"]

#: Where :func:`passages` takes its text from, for a lesson to print.
TEXT_SOURCE = "Python's reference manual as shipped in the standard library (pydoc_data.topics, what help('for') prints)"


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
