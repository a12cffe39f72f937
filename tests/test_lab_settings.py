"""The course's JupyterLab settings (lab-settings/): no news prompt, no update check, read where `make lab` puts them.

JupyterLab asks "Would you like to get notified about official Jupyter news?" on first launch
unless ``fetchNews`` is decided. ``make lab`` copies ``lab-settings/overrides.d/toyattn.json`` into
the venv's JupyterLab settings folder, where it becomes the default. These tests read it through
JupyterLab's own settings code and schemas, so a renamed plugin or setting fails them. The browser
test ``tests/browser/test_lab_news_prompt.py`` checks the prompt itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


OVERRIDES = ROOT / "lab-settings" / "overrides.d" / "toyattn.json"


PLUGIN = "@jupyterlab/apputils-extension:notification"


pytest.importorskip("jupyterlab_server", reason="JupyterLab is not installed (the lab extra)")


def _defaults(app_settings_dir: Path, tmp_path: Path) -> dict:
    from jupyterlab_server.settings_utils import get_settings

    schemas = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"
    if not (schemas / "@jupyterlab" / "apputils-extension" / "notification.json").exists():
        pytest.skip(f"no JupyterLab schemas under {schemas}")
    result, warnings = get_settings(str(app_settings_dir), str(schemas), str(tmp_path / "user-settings"),
                                    schema_name=PLUGIN)
    assert not any(warnings), warnings
    return {name: prop["default"] for name, prop in result["schema"]["properties"].items()}


def test_course_settings_turn_off_the_news_prompt_and_update_check(tmp_path):
    settings = tmp_path / "settings"
    (settings / "overrides.d").mkdir(parents=True)
    shutil.copy(OVERRIDES, settings / "overrides.d" / OVERRIDES.name)
    defaults = _defaults(settings, tmp_path)
    assert defaults["fetchNews"] == "false"  # "Never": no prompt, no request to jupyter.org
    assert defaults["checkForUpdates"] is False


def test_without_them_jupyterlab_would_ask(tmp_path):
    # The control: JupyterLab's own default is "none", which is what shows the prompt.
    (tmp_path / "settings").mkdir()
    assert _defaults(tmp_path / "settings", tmp_path)["fetchNews"] == "none"


def test_the_overrides_use_only_settings_the_schema_knows():
    from jsonschema import validate

    schema_file = Path(sys.prefix) / "share/jupyter/lab/schemas/@jupyterlab/apputils-extension/notification.json"
    if not schema_file.exists():
        pytest.skip(f"no JupyterLab schema at {schema_file}")
    overrides = json.loads(OVERRIDES.read_text(encoding="utf-8"))
    assert set(overrides) == {PLUGIN}
    schema = json.loads(schema_file.read_text(encoding="utf-8"))  # additionalProperties: false
    validate(overrides[PLUGIN], {k: v for k, v in schema.items() if not k.startswith("jupyter.lab")})


def test_make_lab_copies_them_where_jupyterlab_reads_app_settings(tmp_path):
    from jupyterlab.commands import get_app_dir

    if shutil.which("make") is None:
        pytest.skip("no make")
    # Dry run (-n): the commands `make lab` would run, with this interpreter's prefix as the venv.
    venv = Path(sys.prefix)
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "lab", f"VENV={venv}"], capture_output=True, text=True,
                         check=True).stdout
    copied = re.search(r"cp lab-settings/overrides\.d/toyattn\.json (\S+)", out)
    assert copied, f"`make lab` does not copy the course's JupyterLab settings:\n{out[-2000:]}"
    assert Path(copied.group(1)).parent.resolve() == (Path(get_app_dir()) / "settings" / "overrides.d").resolve()
