"""The website's JupyterHub launch buttons follow the build settings (HUB_URL, REPO_URL, REPO_BRANCH).

Small builds of the site's own configuration (site/_config.yml and site/_ext/course_site.py) with
two pages and no execution: with the settings, each notebook page links to the hub's nbgitpuller
(``/hub/user-redirect/git-pull``) with the repository, the branch and the page's ``.ipynb`` twin;
without them there is no launch link at all. Bad settings stop the build with a message naming
the setting. These tests need the ``site`` extra, which ``make site`` installs, so they run with
the site's browser test (``make browser-test`` / ``make site-test``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser
yaml = pytest.importorskip("yaml")
pytest.importorskip("jupyter_book", reason="the site extra is not installed (`make site` installs it)")

PAGES = ["notebooks/00_start_here", "exercises/00_warmup"]


def _course_site():
    sys.path.insert(0, str(ROOT / "site" / "_ext"))
    try:
        import course_site
    finally:
        sys.path.pop(0)
    return course_site


def _build(tmp_path: Path, settings: dict) -> subprocess.CompletedProcess:
    config = yaml.safe_load((ROOT / "site" / "_config.yml").read_text(encoding="utf-8"))
    config["execute"]["execute_notebooks"] = "off"
    config["sphinx"]["local_extensions"] = {"course_site": str(ROOT / "site" / "_ext")}
    config["html"]["favicon"] = str(ROOT / config["html"]["favicon"])
    toc = {"format": "jb-book", "root": "README", "chapters": [{"file": p} for p in PAGES]}
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(toc), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOYATTN_") or k in ("TOYATTN_PROGRESS",)}
    env.update(settings)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--config", str(tmp_path / "_config.yml"),
         "--toc", str(tmp_path / "_toc.yml"), "--path-output", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=600,
    )


def _launch_links(html: str) -> list[str]:
    return [m.replace("&amp;", "&") for m in re.findall(r'href="([^"]*git-pull[^"]*)"', html)]


def test_launch_buttons_open_each_notebook_on_the_hub(tmp_path):
    result = _build(tmp_path, {"TOYATTN_HUB_URL": "https://hub.example.edu/",
                               "TOYATTN_REPO_URL": "https://github.com/example-org/toyattn.git",
                               "TOYATTN_REPO_BRANCH": "spring"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html_dir = tmp_path / "out" / "_build" / "html"
    for page in PAGES:
        links = _launch_links((html_dir / f"{page}.html").read_text(encoding="utf-8"))
        assert len(links) == 1, f"{page}: launch links {links}"
        url = urlparse(links[0])
        assert f"{url.scheme}://{url.netloc}{url.path}" == "https://hub.example.edu/hub/user-redirect/git-pull"
        query = parse_qs(url.query)
        assert query == {"repo": ["https://github.com/example-org/toyattn"], "branch": ["spring"],
                         "urlpath": [f"lab/tree/toyattn/{page}.ipynb"]}, query
        assert (ROOT / f"{page}.ipynb").exists()  # the notebook the hub opens is in the repository
    assert not _launch_links((html_dir / "README.html").read_text(encoding="utf-8"))  # not a notebook


def test_no_launch_button_without_a_hub(tmp_path):
    result = _build(tmp_path, {"TOYATTN_REPO_URL": "https://github.com/example-org/toyattn"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for page in PAGES:
        html = (tmp_path / "out" / "_build" / "html" / f"{page}.html").read_text(encoding="utf-8")
        assert not _launch_links(html) and "dropdown-launch-buttons" not in html, page


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"TOYATTN_HUB_URL": "https://hub.example.edu"}, "TOYATTN_REPO_URL is not"),
        ({"TOYATTN_HUB_URL": "hub.example.edu", "TOYATTN_REPO_URL": "https://github.com/o/r"}, "not an http(s) URL"),
        ({"TOYATTN_HUB_URL": "https://hub.example.edu", "TOYATTN_REPO_URL": "git@github.com:o/r.git"},
         "TOYATTN_REPO_URL='git@github.com:o/r.git' is not an http(s) URL"),
    ],
)
def test_bad_launch_settings_name_the_setting(settings, message):
    from sphinx.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        _course_site().launch_settings(settings)


def test_self_hosted_git_gets_a_provider_and_the_default_branch():
    settings = _course_site().launch_settings({"TOYATTN_HUB_URL": "https://hub.uni.example",
                                               "TOYATTN_REPO_URL": "https://git.uni.example/course/toyattn"})
    assert settings == {"launch_buttons": {"jupyterhub_url": "https://hub.uni.example"},
                        "repository_url": "https://git.uni.example/course/toyattn",
                        "repository_branch": "main", "repository_provider": "gitlab"}
