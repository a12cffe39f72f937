"""IPython start-up file for the website build: plotly figures become HTML drawn by the site's single plotly.js.

``make site`` runs the lessons in kernels whose IPYTHONDIR holds this file (copied there by
``site/_ext/course_site.py``). A figure's output is its HTML div and the ``Plotly.newPlot`` call,
with no copy of plotly.js and no CDN script: the site loads plotly.js once, from ``_static``.
Plotly's own HTML renderers either embed the whole library in every notebook or point at a CDN,
and they add a MathJax CDN script, which an offline site must not request.
"""

import plotly.io as pio
from plotly.io.base_renderers import MimetypeRenderer


class SiteHtmlRenderer(MimetypeRenderer):
    """A figure as an HTML fragment that expects ``window.Plotly`` to be loaded by the page."""

    def to_mimebundle(self, fig_dict):
        html = pio.to_html(
            fig_dict,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=525,
            validate=False,
        )
        return {"text/html": html}


pio.renderers["toyattn_site"] = SiteHtmlRenderer()
pio.renderers.default = "toyattn_site"
