"""The packaged real checkpoints in tests: found, or a skip that names `make pretrained` (a failure in CI)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from toyattn.weights.pretrained import PretrainedNotInstalled


def pretrained(locate: Callable[[], Path]) -> Path:
    """The packaged file, or a skip naming `make pretrained` (a failure when TOYATTN_REQUIRE_PRETRAINED=1)."""
    try:
        return locate()
    except PretrainedNotInstalled as err:
        if os.environ.get("TOYATTN_REQUIRE_PRETRAINED") == "1":
            pytest.fail(f"TOYATTN_REQUIRE_PRETRAINED=1 but: {err}")
        pytest.skip(f"{err} (set TOYATTN_REQUIRE_PRETRAINED=1 to make this a failure)")
