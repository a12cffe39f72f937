"""The classroom tests: a real JupyterHub, nbgitpuller, nbgrader and SLURM on this machine (``make classroom-test``).

They create Linux accounts and start daemons, so they run only as root and only when asked:
``make classroom-test``, ``pytest -m classroom``, or ``TOYATTN_CLASSROOM=1``. Where a piece is
missing they skip with the install step that brings it, unless ``TOYATTN_REQUIRE_CLASSROOM=1``
(CI), which turns each such skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from classroom_parts import ARTIFACTS, need_modules, required, unavailable

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pytest_configure(config):
    config.addinivalue_line("markers", "classroom: starts a real JupyterHub, SLURM or nbgrader as root (`make classroom-test`)")


def pytest_collection_modifyitems(config, items):
    if required() or os.environ.get("TOYATTN_CLASSROOM") == "1" or "classroom" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="classroom test: run it with `make classroom-test` or `pytest -m classroom`")
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (Debian's package, as the browser tests use) driven by Playwright."""
    need_modules("playwright", install="`make browser-deps` (pip install -e '.[browser]')")
    path = os.environ.get("TOYATTN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        unavailable("no Chromium found: `make browser-deps` (apt-get install chromium) or set TOYATTN_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
