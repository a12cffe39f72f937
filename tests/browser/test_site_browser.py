"""The course website (``make site``) in headless Chromium, offline: pages, math, figures, plotly hover, search.

The built site (``site/_build/html``) is served from ``127.0.0.1``; every request to any other host
is blocked and recorded, so a page that needs a CDN (MathJax, plotly.js, fonts) fails. For every
lesson (``notebooks/*.py``, globbed, so a new lesson must also appear on the site) the page must
have its title and section headings, math typeset by the site's own MathJax with no raw ``$...$``
left in the prose, every matplotlib figure of the executed notebook loaded, and at least one plotly
figure, every one drawn and showing a tooltip on hover. Search must find "symmetry". Problem-set pages carry the
stubs and none of the answers. No page may log a console error. Screenshots go to
``artifacts/site/``.

The expected figures come from the build's own run of each lesson (its execution cache, under
``site/_build/.jupyter_cache``), so the test follows the lessons as they change.

Run: ``make site-test`` (builds the site first), or ``pytest tests/browser/test_site_browser.py -m browser``
after ``make site``.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "site" / "_build" / "html"
BUILD = ROOT / "site" / "_build"
ARTIFACTS = ROOT / "artifacts" / "site"
LESSONS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
PROBLEM_SETS = sorted(p.stem for p in (ROOT / "exercises").glob("*.py"))
pytestmark = pytest.mark.browser

# Prose math that MathJax did not typeset: $...$ left in the text outside code and outputs.
RAW_MATH = re.compile(r"\$[^$\s][^$\n]*\$")

_PAGE_JS = """
() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const prose = article.cloneNode(true);
  prose.querySelectorAll('pre, code, .cell_output, mjx-container, script, style').forEach(n => n.remove());
  const plots = [...article.querySelectorAll('.plotly-graph-div')];
  const imgs = [...article.querySelectorAll('.cell_output img')];
  return {
    h1: [...article.querySelectorAll('h1')].map(h => h.textContent.replace(/#$/, '').trim()),
    h2: article.querySelectorAll('h2').length,
    math: article.querySelectorAll('mjx-container').length,
    prose: prose.textContent,
    plots: plots.map(p => ({traces: (p.data || []).length, svg: !!p.querySelector('.main-svg'),
                            width: p.getBoundingClientRect().width})),
    images: imgs.map(i => ({complete: i.complete, width: i.naturalWidth})),
  };
}
"""


def _required() -> bool:
    import os

    return os.environ.get("TOYATTN_REQUIRE_BROWSER") == "1"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test reports what matters; no access log on stderr
        pass


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").exists():
        reason = f"no built site in {SITE.relative_to(ROOT)}: run `make site` (or `make site-test`)"
        if _required():
            pytest.fail(f"TOYATTN_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def site_artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class OfflinePage:
    """A page that may only reach the site's own server, recording blocked requests and console errors."""

    def __init__(self, context, site_url: str):
        self.page = context.new_page()
        self.origin = urlparse(site_url).netloc
        self.external: list[str] = []
        self.errors: list[str] = []
        self.page.route("**/*", self._route)
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _route(self, route):
        url = urlparse(route.request.url)
        if url.scheme in ("data", "blob") or url.netloc == self.origin:
            route.continue_()
        else:
            self.external.append(route.request.url)
            route.abort()

    def open(self, url: str) -> None:
        self.page.goto(url, wait_until="load")
        # MathJax 3 typesets after load (pages with math load it); its startup promise resolves when done.
        self.page.wait_for_function(
            "() => !document.querySelector('script[src*=\"mathjax\"]') "
            "|| (window.MathJax && MathJax.startup && MathJax.startup.promise)", timeout=30_000)
        self.page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")

    def problems(self) -> list[str]:
        found = []
        if self.external:
            found.append(f"requests outside the site (blocked): {sorted(set(self.external))[:5]}")
        if self.errors:
            found.append(f"console errors: {self.errors[:5]}")
        return found


@pytest.fixture
def offline_page(browser_context, site_url):
    page = OfflinePage(browser_context, site_url)
    yield page
    page.page.close()


def _executed(lesson: str) -> dict:
    """What the build's run of a lesson produced: matplotlib images, plotly figures, markdown with math.

    Read from the execution cache the last build used (site/_build/course_site.json names it): its
    latest run of the lesson, which is what the page shows.
    """
    from jupyter_cache import get_cache

    record = BUILD / "course_site.json"
    if not record.exists():
        pytest.fail(f"{record.relative_to(ROOT)} is missing: run `make site`", pytrace=False)
    cache = get_cache(json.loads(record.read_text(encoding="utf-8"))["execution_cache"])
    source = str(ROOT / "notebooks" / f"{lesson}.py")
    runs = [r for r in cache.list_cache_records() if r.uri == source]
    if not runs:
        pytest.fail(f"notebooks/{lesson}.py has no run in the site's execution cache: is it in site/_toc.yml?",
                    pytrace=False)
    nb = cache.get_cache_bundle(max(runs, key=lambda r: r.created).pk).nb
    images = plotly = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "plotly-graph-div" in "".join(data.get("text/html", "")):
                plotly += 1
            elif "image/png" in data:
                images += 1
    # The cache keeps code cells only; the prose comes from the lesson's source.
    sys.path.insert(0, str(ROOT / "site" / "_ext"))
    try:
        from course_site import read_py_percent
    finally:
        sys.path.pop(0)
    lesson_nb = read_py_percent((ROOT / "notebooks" / f"{lesson}.py").read_text(encoding="utf-8"))
    markdown = [c.source for c in lesson_nb.cells if c.cell_type == "markdown"]
    without_code = [re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", m, flags=re.S)) for m in markdown]
    title = next(line[2:].strip() for m in markdown for line in m.splitlines() if line.startswith("# "))
    return {"images": images, "plotly": plotly, "math": any(RAW_MATH.search(m) for m in without_code),
            "title": title}


def _plain_quotes(text: str) -> str:
    # Sphinx typesets "..." as curly quotes.
    return text.translate(str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"}))


def _hover_shows_tooltip(page, index: int) -> bool:
    plot = page.locator(".plotly-graph-div").nth(index)
    plot.scroll_into_view_if_needed()
    box = plot.locator(".nsewdrag").first.bounding_box()
    if box is None:
        return False
    # A few points inside the plotting area: a heatmap answers anywhere, a line plot near its data.
    for fx, fy in ((0.5, 0.5), (0.25, 0.25), (0.75, 0.75), (0.25, 0.75), (0.75, 0.25)):
        page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=4)
        try:
            page.wait_for_function(
                "(i) => document.querySelectorAll('.plotly-graph-div')[i].querySelector('.hoverlayer .hovertext')",
                arg=index, timeout=2_000)
            return True
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: try the next point
            continue
    return False




@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_page_renders_offline(lesson, offline_page, site_url, site_artifacts):
    expected = _executed(lesson)
    page = offline_page.page
    offline_page.open(f"{site_url}/notebooks/{lesson}.html")
    state = page.evaluate(_PAGE_JS)
    problems = offline_page.problems()

    if _plain_quotes(expected["title"]) not in [_plain_quotes(h) for h in state["h1"]]:
        problems.append(f"page title {state['h1']} is not the lesson's heading {expected['title']!r}")
    if state["h2"] < 1:
        problems.append("no section headings (h2)")
    raw = RAW_MATH.findall(state["prose"])
    if raw:
        problems.append(f"math left as raw TeX: {raw[:3]}")
    if expected["math"] and state["math"] == 0:
        problems.append("the lesson has math but none was typeset by MathJax")
    broken = [img for img in state["images"] if not (img["complete"] and img["width"] > 0)]
    if broken or len(state["images"]) != expected["images"]:
        problems.append(f"{expected['images']} matplotlib figure(s) in the executed lesson, "
                        f"{len(state['images'])} on the page, {len(broken)} not loaded")
    if not state["plots"]:
        problems.append("no interactive plotly figure on the page (each lesson shows at least one)")
    if len(state["plots"]) != expected["plotly"]:
        problems.append(f"{expected['plotly']} plotly figure(s) in the executed lesson, {len(state['plots'])} on the page")
    undrawn = [p for p in state["plots"] if not (p["traces"] and p["svg"] and p["width"] > 50)]
    if undrawn:
        problems.append(f"plotly figure(s) not drawn: {undrawn}")
    page.screenshot(path=str(site_artifacts / f"{lesson}.png"))
    if state["plots"]:
        for i in range(len(state["plots"])):
            if not _hover_shows_tooltip(page, i):
                problems.append(f"plotly figure {i + 1} shows no tooltip on hover")
        page.locator(".plotly-graph-div").first.scroll_into_view_if_needed()
        _hover_shows_tooltip(page, 0)
        page.screenshot(path=str(site_artifacts / f"{lesson}_plotly_hover.png"))
    if state["math"]:
        page.locator("article mjx-container").first.scroll_into_view_if_needed()
        page.screenshot(path=str(site_artifacts / f"{lesson}_math.png"))
    assert not problems, f"notebooks/{lesson} on the site:\n  " + "\n  ".join(problems)


def test_search_finds_symmetry(offline_page, site_url, site_artifacts):
    page = offline_page.page
    offline_page.open(f"{site_url}/search.html?q=symmetry")
    page.wait_for_selector("#search-results ul.search li", timeout=30_000)
    page.wait_for_function("() => !document.querySelector('#search-progress') || "
                           "!/Searching|Preparing/.test(document.querySelector('#search-progress').textContent)",
                           timeout=30_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.getAttribute('href'))")
    page.screenshot(path=str(site_artifacts / "search_symmetry.png"))
    assert any("03_symmetry_scores" in h for h in hits), f"search for 'symmetry' did not find lesson 3: {hits}"
    assert not offline_page.problems(), offline_page.problems()


def test_home_page_is_the_readme_and_links_every_page(offline_page, site_url, site_artifacts):
    page = offline_page.page
    offline_page.open(f"{site_url}/index.html")
    page.wait_for_url("**/README.html")
    readme_title = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
    assert page.locator("article h1").first.inner_text().rstrip("#").strip() == readme_title
    nav = page.eval_on_selector_all("nav.bd-docs-nav a", "as => as.map(a => a.getAttribute('href'))")
    wanted = [f"notebooks/{s}.html" for s in LESSONS] + [f"exercises/{s}.html" for s in PROBLEM_SETS] + [
        "docs/instructors.html", "docs/cluster.html", "docs/references.html"]
    missing = [w for w in wanted if not any(h.endswith(w) for h in nav)]
    assert not missing, f"not in the site's navigation: {missing}"
    page.screenshot(path=str(site_artifacts / "home.png"))
    assert not offline_page.problems(), offline_page.problems()


def _solution_lines(stem: str) -> list[str]:
    """The distinctive code lines between the solution markers of a problem set.

    A line that also stands outside every solution block (a set-up line such as a seeded generator, given
    to the student too) is not an answer, so it is left out.
    """
    text = (ROOT / "solutions" / f"{stem}.py").read_text(encoding="utf-8")
    pattern = r"### BEGIN SOLUTION\n(.*?)### END SOLUTION"
    given = {ln.strip() for ln in re.sub(pattern, "", text, flags=re.S).splitlines()}
    lines = []
    for block in re.findall(pattern, text, flags=re.S):
        lines += [ln.strip() for ln in block.splitlines()
                  if len(ln.strip()) >= 25 and not ln.strip().startswith("#") and ln.strip() not in given]
    return lines


@pytest.mark.parametrize("stem", PROBLEM_SETS)
def test_problem_set_page_has_the_stubs_and_no_answers(stem, offline_page, site_url, site_artifacts):
    page = offline_page.page
    offline_page.open(f"{site_url}/exercises/{stem}.html")
    code = "\n".join(page.eval_on_selector_all("article .cell_input pre", "ps => ps.map(p => p.textContent)"))
    assert "YOUR CODE HERE" in code and "raise NotImplementedError()" in code, f"exercises/{stem}: no stubs shown"
    leaked = [ln for ln in _solution_lines(stem) if ln in code]
    assert not leaked, f"exercises/{stem} on the site shows solution code: {leaked[:3]}"
    assert "BEGIN SOLUTION" not in code
    page.screenshot(path=str(site_artifacts / f"exercise_{stem}.png"))
    assert not offline_page.problems(), offline_page.problems()
