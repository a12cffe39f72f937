"""`make lab`'s JupyterLab settings in a real browser: no "get notified about official Jupyter news?" prompt.

Two JupyterLab servers on loopback, with empty user settings (a first launch): one with the
course's ``lab-settings/overrides.d/toyattn.json`` in its app settings folder (where ``make lab``
copies it), one without. In headless Chromium the second shows JupyterLab's news prompt (the
control: the test can see it), the first never does, and neither page reaches outside the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from lab_process import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ROOT / "lab-settings" / "overrides.d" / "toyattn.json"
PROMPT = "official Jupyter news"
pytestmark = pytest.mark.browser


def _start_lab(base: Path, with_course_settings: bool) -> tuple[subprocess.Popen, str]:
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        pytest.skip(f"no `jupyter` next to {sys.executable}; install the lab extra")
    app_settings = base / "app-settings"
    (app_settings / "overrides.d").mkdir(parents=True)
    if with_course_settings:
        shutil.copy(OVERRIDES, app_settings / "overrides.d" / OVERRIDES.name)
    (base / "root").mkdir()
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    env.update(JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_RUNTIME_DIR=str(base / "runtime"))
    cmd = [str(jupyter), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={base / 'root'}",
           f"--LabApp.app_settings_dir={app_settings}", f"--LabApp.user_settings_dir={base / 'user-settings'}",
           f"--LabApp.workspaces_dir={base / 'workspaces'}", "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    log = base / "jupyterlab.log"
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    wait_until_up(proc, port, token, log)
    return proc, f"http://127.0.0.1:{port}/lab?token={token}"


def _prompt_shown(browser_context, url: str, wait_ms: int, screenshot: Path) -> tuple[bool, list[str]]:
    page = browser_context.new_page()
    external: list[str] = []

    def route(r):
        if urlparse(r.request.url).hostname in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    try:
        page.goto(url)
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=120_000)
        page.evaluate("() => window.jupyterapp.restored")
        try:
            page.get_by_text(PROMPT).first.wait_for(timeout=wait_ms)
            shown = True
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: the prompt did not appear
            shown = False
        page.screenshot(path=str(screenshot))
        return shown, external
    finally:
        page.close()


@pytest.mark.parametrize("with_course_settings", [False, True], ids=["jupyterlab_default", "course_settings"])
def test_news_prompt_only_without_the_course_settings(with_course_settings, browser_context, tmp_path,
                                                       artifacts_dir):
    proc, url = _start_lab(tmp_path, with_course_settings)
    try:
        name = "course_settings" if with_course_settings else "jupyterlab_default"
        shown, external = _prompt_shown(browser_context, url, wait_ms=10_000,
                                        screenshot=artifacts_dir / f"lab_news_prompt_{name}.png")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    if with_course_settings:
        assert not shown, "JupyterLab asked about Jupyter news although the course settings say Never"
        assert not external, f"JupyterLab reached outside the machine: {external[:3]}"
    else:
        assert shown, "control failed: JupyterLab's own default should ask about news (has the prompt changed?)"
