"""Fixtures for the real-browser test: a JupyterLab server on loopback and a headless Chromium driven by Playwright.

These tests are slow (they run every lesson again, in a browser), so they run only when asked:
``make browser-test``, ``pytest -m browser``, or ``TOYATTN_BROWSER=1``. They skip cleanly when
Playwright or Chromium is missing, unless ``TOYATTN_REQUIRE_BROWSER=1`` (then they fail, so CI
cannot pass them by skipping).

* Chromium: Debian's ``chromium`` package (``/usr/bin/chromium``) or ``TOYATTN_CHROMIUM=/path``.
  Playwright's own browser download is not used (``playwright install`` needs a network).
* JupyterLab serves a *copy* of the course in a temporary folder, so running the notebooks in the
  browser (and JupyterLab's autosave) can never write outputs into the checkout.
* The browser may only talk to the local server: every other request is blocked and recorded, so
  a plot that needs a CDN fails the test.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lab_process import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Copied into the served folder; the rest of the checkout (the venv, git, outputs) is not needed.
COURSE_DIRS = ("notebooks", "solutions", "exercises")
# JupyterLab settings for an unattended run: no news prompt, no autosave, every cell kept in the DOM.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


_TIMINGS: dict[str, dict] = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium (make browser-test)")


def pytest_terminal_summary(terminalreporter):
    if not _TIMINGS:
        return
    terminalreporter.write_sep("-", "JupyterLab in Chromium: seconds per notebook (open, run all cells)")
    for path, t in _TIMINGS.items():
        terminalreporter.write_line(
            f"{t['open_s']:6.1f} s open {t['run_all_s']:7.1f} s run  {path}  "
            f"({t['code_cells']} code cells, {t['plotly_figures']} plotly, {t['images']} images"
            + (f"; {t['plotly_wider_than_column']} plotly wider than the column" if t.get("plotly_wider_than_column") else "")
            + ")"
        )


@pytest.fixture(scope="session")
def browser_timings() -> dict:
    return _TIMINGS


def _required() -> bool:
    return os.environ.get("TOYATTN_REQUIRE_BROWSER") == "1"


def _asked(config) -> bool:
    return _required() or os.environ.get("TOYATTN_BROWSER") == "1" or "browser" in (config.option.markexpr or "")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    if _asked(config):
        return
    skip = pytest.mark.skip(reason="real-browser test: run it with `make browser-test` or `pytest -m browser`")
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(skip)


def _unavailable(reason: str):
    if _required():
        pytest.fail(f"TOYATTN_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("TOYATTN_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class LabServer:
    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.root, self.port, self.token, self.proc, self.log = root, port, token, proc, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{path}?token={self.token}"


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        _unavailable(f"no `jupyter` next to {sys.executable}; install the lab extra")
    base = tmp_path_factory.mktemp("lab")
    course = base / "course"
    for name in COURSE_DIRS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, course / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for rel, settings in LAB_SETTINGS.items():
        path = base / "settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "TOYATTN_PROGRESS", "JUPYTER_TOKEN")}
    env.update(JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               IPYTHONDIR=str(base / "ipython"))
    cmd = [
        str(jupyter), "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course}",
        f"--LabApp.user_settings_dir={base / 'settings'}", f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run-all and kernel state, as the menu does
    ]
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    log = base / "jupyterlab.log"
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=course)
    wait_until_up(proc, port, token, log)
    yield LabServer(course, port, token, proc, log)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (`pip install playwright`, or `make browser-test`)")
    chromium = chromium_path()
    if chromium is None:
        _unavailable("no Chromium found (`apt-get install chromium`, or set TOYATTN_CHROMIUM)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        # A persistent context is how Playwright takes a fresh --user-data-dir.
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
