"""The course as students meet it: each notebook opened in JupyterLab in headless Chromium, run top to bottom.

For every lecture notebook (``notebooks/*.ipynb``, globbed, so new lessons are picked up) and the
warm-up solution: open it, Run All Cells, wait until the kernel is idle with every cell executed,
then assert that no cell has an error output, that every plotly figure rendered in the page (a
``.js-plotly-plot`` element holding data, drawn by the bundled jupyterlab-plotly renderer with no
CDN), that every matplotlib image loaded, and that the page threw no JavaScript error. A screenshot
per notebook goes to ``artifacts/browser/``, with the times in ``artifacts/browser/timings.json``.

Run: ``make browser-test`` or ``pytest tests/browser -m browser`` (``-k 00_start_here`` for one).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser

NOTEBOOK_TIMEOUT_S = float(os.environ.get("TOYATTN_BROWSER_TIMEOUT", "1200"))
NOTEBOOKS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb")) + [
    "solutions/00_warmup.ipynb"
]

# The state of the notebook in the current tab, read from JupyterLab's own models.
_STATE_JS = """
() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  if (!w || !w.content || !w.sessionContext || !w.context || !w.context.isReady) return null;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  let pending = 0, code = 0, plotly = 0, images = 0;
  const errors = [];
  w.content.widgets.forEach((cell, i) => {
    const m = cell.model;
    if (m.type !== 'code') return;
    code += 1;
    if (m.sharedModel.getSource().trim() && m.executionCount === null) pending += 1;
    for (const o of m.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push({cell: i + 1, ename: o.ename, evalue: o.evalue});
      const data = o.data || {};
      if (data['application/vnd.plotly.v1+json']) plotly += 1;
      else if (data['image/png']) images += 1;
    }
  });
  return {path: w.context.path, kernel: kernel ? kernel.status : 'none', pending, code, errors, plotly, images};
}
"""

# What the page really drew: plotly graph divs with data, and loaded images in output areas.
_RENDERED_JS = """
() => {
  const panel = window.jupyterapp.shell.currentWidget.node;
  // jupyterlab-plotly makes the output node itself the plotly graph div.
  const plots = [...panel.querySelectorAll('.jp-OutputArea-output.js-plotly-plot, .jp-OutputArea-output .js-plotly-plot')];
  const imgs = [...panel.querySelectorAll('.jp-OutputArea .jp-RenderedImage img')];
  return {
    plots: plots.map(p => { const svg = p.querySelector('.main-svg');
                            return {traces: (p.data || []).length, svg: !!svg, width: p.getBoundingClientRect().width,
                                    drawn_width: svg ? svg.getBoundingClientRect().width : 0}; }),
    images: imgs.map(i => ({complete: i.complete, width: i.naturalWidth})),
  };
}
"""


def _open(page, lab_server, path: str, workspace: str) -> None:
    page.goto(f"http://127.0.0.1:{lab_server.port}/lab/workspaces/{workspace}/tree/{path}?token={lab_server.token}")
    page.wait_for_function(
        """(path) => { const a = window.jupyterapp; const w = a && a.shell.currentWidget;
                       return !!(w && w.context && w.context.isReady && w.context.path === path
                                 && w.sessionContext && w.sessionContext.session
                                 && w.sessionContext.session.kernel
                                 && w.sessionContext.session.kernel.status === 'idle'); }""",
        arg=path,
        timeout=120_000,
    )


def _run_all_and_wait(page, timeout_s: float) -> dict:
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        state = page.evaluate(_STATE_JS)
        if state is None:
            continue
        if state["errors"]:
            return state  # Run All stops at the first error: no point waiting for the rest
        if state["pending"] == 0 and state["kernel"] == "idle":
            page.wait_for_timeout(1500)  # let the last outputs render (plotly draws asynchronously)
            return page.evaluate(_STATE_JS)
    pytest.fail(f"not finished after {timeout_s:.0f} s (TOYATTN_BROWSER_TIMEOUT); last state: {state}")


def _check_rendering(page, state: dict) -> dict:
    # plotly draws asynchronously after the output arrives: give it time, then judge what is there.
    deadline = time.monotonic() + 60
    while True:
        rendered = page.evaluate(_RENDERED_JS)
        drawn = [p for p in rendered["plots"] if p["traces"] > 0 and p["svg"]]
        if len(drawn) >= state["plotly"] or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    assert len(rendered["plots"]) >= state["plotly"], (
        f"{state['plotly']} plotly output(s) in the notebook, {len(rendered['plots'])} drawn: {rendered}"
    )
    for plot in rendered["plots"]:
        assert plot["traces"] > 0 and plot["svg"] and plot["width"] > 50, f"a plotly figure did not draw: {plot}"
    broken = [img for img in rendered["images"] if not (img["complete"] and img["width"] > 0)]
    assert not broken, f"{len(broken)} image output(s) did not load: {broken}"
    assert len(rendered["images"]) >= state["images"], rendered
    return rendered


def _screenshot(page, artifacts_dir: Path, stem: str) -> None:
    # The notebook scrolls inside its panel: show the first plotly figure if there is one, else the end.
    page.evaluate(
        """() => { const n = window.jupyterapp.shell.currentWidget.node;
                   const el = n.querySelector('.js-plotly-plot') || [...n.querySelectorAll('.jp-Cell')].pop();
                   if (el) el.scrollIntoView({block: 'center'}); }"""
    )
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts_dir / f"{stem}.png"))
    plot = page.locator(".jp-NotebookPanel .js-plotly-plot").first
    if plot.count():
        plot.screenshot(path=str(artifacts_dir / f"{stem}_plotly.png"))


def _shutdown(page) -> None:
    try:
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    except Exception:  # noqa: BLE001 - best effort: the server is stopped at the end anyway
        pass


def _exercise_notebook(page, lab_server, artifacts_dir: Path, path: str, workspace: str, timings: dict) -> dict:
    external: list[str] = []
    page_errors: list[str] = []

    def route(r):
        host = urlparse(r.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda err: page_errors.append(str(err)))
    start = time.monotonic()
    _open(page, lab_server, path, workspace)
    opened = time.monotonic()
    state = _run_all_and_wait(page, NOTEBOOK_TIMEOUT_S)
    ran = time.monotonic()
    stem = path.replace("/", "__").removesuffix(".ipynb")
    problems = []
    try:
        if state["errors"]:
            problems.append(f"error output(s): {state['errors']}")
        try:
            rendered = _check_rendering(page, state)
        except AssertionError as err:
            problems.append(str(err))
    finally:
        _screenshot(page, artifacts_dir, stem)
        _shutdown(page)
    if external:
        problems.append(f"the page tried to load from outside (a CDN?): {external[:5]}")
    if page_errors:
        problems.append(f"JavaScript errors in the page: {page_errors[:3]}")
    if problems:
        pytest.fail(f"{path} (screenshot: {artifacts_dir / stem}.png):\n  " + "\n  ".join(problems), pytrace=False)
    timings[path] = {
        "open_s": round(opened - start, 1),
        "run_all_s": round(ran - opened, 1),
        "code_cells": state["code"],
        "plotly_figures": len(rendered["plots"]),
        # Wider than the notebook column at this window size: the student must scroll sideways (not a failure).
        "plotly_wider_than_column": sum(p["drawn_width"] > p["width"] + 1 for p in rendered["plots"]),
        "images": len(rendered["images"]),
    }
    (artifacts_dir / "timings.json").write_text(json.dumps(timings, indent=1))
    return state


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_notebook_runs_and_renders_in_jupyterlab(path, browser_context, lab_server, artifacts_dir, browser_timings):
    page = browser_context.new_page()
    try:
        state = _exercise_notebook(page, lab_server, artifacts_dir, path, f"ws{NOTEBOOKS.index(path)}", browser_timings)
    finally:
        page.close()
    assert state["code"] > 0 and state["pending"] == 0


def test_plotly_renders_offline_in_jupyterlab(browser_context, lab_server, artifacts_dir, browser_timings):
    """Independent of the lessons: a course heatmap (plotly) and a matplotlib figure must draw with no network."""
    import nbformat

    probe = lab_server.root / "browser_probe" / "plotly_probe.ipynb"
    probe.parent.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import torch\nfrom toyattn.plotting import heatmap, heatmap_plotly\n"
            "m = torch.arange(12.0).reshape(3, 4)\n"
            "heatmap_plotly(m, ['a', 'b', 'c'], ['w', 'x', 'y', 'z'], title='probe').show()"
        ),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nheatmap(m, ['a', 'b', 'c'], ['w', 'x', 'y', 'z'])\nplt.show()"),
    ]
    nbformat.write(nb, probe)
    page = browser_context.new_page()
    try:
        state = _exercise_notebook(page, lab_server, artifacts_dir, "browser_probe/plotly_probe.ipynb", "probe",
                                   browser_timings)
    finally:
        page.close()
    assert state["plotly"] == 1 and state["images"] == 1
    assert browser_timings["browser_probe/plotly_probe.ipynb"]["plotly_figures"] >= 1


def test_the_checks_catch_errors_and_cdn_plots(browser_context, lab_server, artifacts_dir, browser_timings):
    """The test has teeth: a plotly figure that needs the CDN, and a cell that raises, both fail it."""
    import nbformat

    bad = lab_server.root / "browser_probe" / "broken_probe.ipynb"
    bad.parent.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [
        # Only the CDN-backed HTML renderer: plotly.js would have to come from cdn.plot.ly.
        nbformat.v4.new_code_cell(
            "import plotly.graph_objects as go\n"
            "go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])).show(renderer='notebook_connected')"
        ),
        nbformat.v4.new_code_cell("raise ValueError('a broken cell')"),
    ]
    nbformat.write(nb, bad)
    page = browser_context.new_page()
    try:
        with pytest.raises(pytest.fail.Exception) as failure:
            _exercise_notebook(page, lab_server, artifacts_dir, "browser_probe/broken_probe.ipynb", "broken",
                               browser_timings)
    finally:
        page.close()
    message = str(failure.value)
    assert "ValueError" in message and "a broken cell" in message
    assert "cdn.plot.ly" in message


def test_serving_a_copy_left_the_checkout_untouched(browser_context, lab_server):
    # Runs after the notebooks (file order): the served copy got outputs or not, the checkout must not.
    for path in NOTEBOOKS:
        nb = json.loads((ROOT / path).read_text(encoding="utf-8"))
        assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), path
