"""Sphinx extension for the course website: launch buttons from build settings, plotly offline, kernel set-up.

* Launch buttons: ``TOYATTN_HUB_URL`` (a JupyterHub with nbgitpuller) and ``TOYATTN_REPO_URL``
  (the git repository the hub pulls), optionally ``TOYATTN_REPO_BRANCH``; ``make site HUB_URL=...
  REPO_URL=...`` sets them. Without a hub URL there is no launch button.
* plotly.js: one copy, from the installed plotly package, in ``_static/`` and loaded by every page;
  the figures in the executed lessons only call ``Plotly.newPlot`` (see ``site/kernel/``).
* The lessons run with progress bars off (no widget output needing JavaScript from a CDN).
* Execution cache: jupyter-cache keys a lesson on its code cells only, so the cache lives in a
  folder named after the package's sources (``toyattn/``, ``pyproject.toml``, ``site/kernel/``):
  a change there re-runs every lesson instead of publishing outputs of the old code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

from sphinx.application import Sphinx
from sphinx.errors import ConfigError
from sphinx.util import logging

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KERNEL_STARTUP = HERE.parent / "kernel" / "plotly_site_renderer.py"
PLOTLY_JS = "plotly.min.js"
BUILD_RECORD = "course_site.json"
KNOWN_PROVIDERS = ("github", "gitlab", "bitbucket")
# The kernel every .ipynb twin names; the py:percent sources carry no header.
PYTHON_KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
logger = logging.getLogger(__name__)


def read_py_percent(text: str):
    """A py:percent source as a notebook, with the kernel its .ipynb twin names (nb_custom_formats reader).

    The kernel metadata makes the page a notebook for sphinx-book-theme (launch and download
    buttons) and gives unexecuted pages (the problem sets) Python syntax highlighting.
    """
    import jupytext

    notebook = jupytext.reads(text, fmt="py:percent")
    notebook.metadata.setdefault("kernelspec", dict(PYTHON_KERNEL))
    notebook.metadata.setdefault("language_info", {"name": "python", "pygments_lexer": "ipython3"})
    return notebook


def _http_url(value: str, setting: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"{setting}={value!r} is not an http(s) URL; give the full address, "
            f"e.g. {setting}=https://hub.example.edu"
        )
    return value.rstrip("/")


def _repository_name(repo_url: str) -> str:
    return repo_url.removesuffix(".git").rstrip("/").rsplit("/", 1)[-1]


def launch_settings(environ: os._Environ | dict) -> dict:
    """Theme options for the JupyterHub launch button from the environment; empty without a hub URL."""
    hub = environ.get("TOYATTN_HUB_URL", "").strip()
    repo = environ.get("TOYATTN_REPO_URL", "").strip()
    if not hub:
        if repo:
            logger.info("[course_site] TOYATTN_REPO_URL without TOYATTN_HUB_URL: no launch buttons")
        return {}
    hub = _http_url(hub, "TOYATTN_HUB_URL")
    if not repo:
        raise ConfigError(
            "TOYATTN_HUB_URL is set but TOYATTN_REPO_URL is not: nbgitpuller needs the repository the "
            "hub should pull, e.g. REPO_URL=https://github.com/your-org/toyattn"
        )
    repo = _http_url(repo, "TOYATTN_REPO_URL").removesuffix(".git")
    host = urlparse(repo).netloc.lower()
    provider = next((p for p in KNOWN_PROVIDERS if p in host), "gitlab")  # self-hosted: GitLab-style URLs
    return {
        "launch_buttons": {"jupyterhub_url": hub},
        "repository_url": repo,
        "repository_branch": environ.get("TOYATTN_REPO_BRANCH", "").strip() or "main",
        "repository_provider": provider,
    }


def code_fingerprint(repo: Path = REPO) -> str:
    """A short hash of everything besides a lesson's own cells that shapes its outputs."""
    digest = hashlib.sha256()
    files = sorted([*(repo / "toyattn").rglob("*.py"), repo / "pyproject.toml", *(repo / "site" / "kernel").glob("*.py")])
    for path in files:
        digest.update(path.relative_to(repo).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def execution_cache(build_dir: Path, repo: Path = REPO) -> Path:
    """The jupyter-cache folder for the current package sources, under ``<build_dir>/.jupyter_cache``."""
    return Path(build_dir) / ".jupyter_cache" / f"toyattn-{code_fingerprint(repo)}"


def _use_execution_cache(app: Sphinx, config) -> None:
    cache = execution_cache(Path(app.outdir).parent)
    for stale in cache.parent.glob("toyattn-*"):
        if stale != cache:
            shutil.rmtree(stale, ignore_errors=True)  # outputs of older package code: never shown again
    cache.mkdir(parents=True, exist_ok=True)
    config.nb_execution_cache_path = str(cache)
    # For the site's browser test: which cache holds the runs this build shows.
    (cache.parent.parent / BUILD_RECORD).write_text(json.dumps({"execution_cache": str(cache)}), encoding="utf-8")
    logger.info(f"[course_site] execution cache for this package code: {cache}")


def _configure(app: Sphinx, config) -> None:
    options = dict(config.html_theme_options or {})
    settings = launch_settings(os.environ)
    if settings:
        options["launch_buttons"] = {**options.get("launch_buttons", {}), **settings.pop("launch_buttons")}
        options.update(settings)
        logger.info(f"[course_site] launch buttons to {options['launch_buttons']['jupyterhub_url']} "
                    f"pulling {_repository_name(options['repository_url'])}")
    else:
        # sphinx-book-theme shows a launch button as soon as a provider URL is set: make sure none is.
        options["launch_buttons"] = {k: v for k, v in options.get("launch_buttons", {}).items()
                                     if not k.endswith("_url")}
    config.html_theme_options = options


def _prepare_kernels(app: Sphinx) -> None:
    # The executing kernels inherit this process's environment.
    ipython_dir = Path(app.outdir).parent / ".ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(KERNEL_STARTUP, startup / "00_plotly_site_renderer.py")
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    os.environ["TOYATTN_PROGRESS"] = "0"
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"


def _drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Leave sphinx-thebe's scripts out of pages unless thebe is switched on.

    Jupyter Book always loads sphinx-thebe, which runs code on Binder with thebe from unpkg.com;
    the course uses no thebe, and its inline config script is emitted twice per page by this
    version, which throws a JavaScript error ("THEBE_JS_URL has already been declared").
    """
    if app.config.html_theme_options.get("launch_buttons", {}).get("thebe"):
        return
    context["script_files"] = [
        js for js in context.get("script_files", [])
        if "thebe" not in str(js) and "THEBE_JS_URL" not in js.attributes.get("body", "")
    ]
    context["css_files"] = [css for css in context.get("css_files", []) if "thebe" not in str(css)]


def _copy_plotly_js(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None:
        return
    import plotly
    from plotly.offline import get_plotlyjs_version

    source = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    target = Path(app.outdir) / "_static" / PLOTLY_JS
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    logger.info(f"[course_site] plotly.js {get_plotlyjs_version()} copied to _static/{PLOTLY_JS}")


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _configure, priority=900)
    app.connect("config-inited", _use_execution_cache, priority=900)
    app.connect("builder-inited", _prepare_kernels)
    app.connect("build-finished", _copy_plotly_js)
    app.connect("html-page-context", _drop_thebe, priority=900)
    # Loaded in <head>, before the figures' inline scripts call Plotly.newPlot.
    app.add_js_file(PLOTLY_JS)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
