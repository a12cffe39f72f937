"""Tests for toyattn.plotting: labels, annotations, readable text colours, plotly hover, grids."""

from __future__ import annotations

import matplotlib
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from plot_helpers import _close_figures  # noqa: F401 (a fixture)

from toyattn.plotting import heatmap, heatmap_grid, heatmap_plotly  # noqa: E402

matplotlib.use("Agg")


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_heatmap_labels_title_and_numbers():
    m = torch.tensor([[0.1, 0.9], [0.25, 0.75], [1.0, 0.0]], requires_grad=True)
    ax = heatmap(m, ["0 <ST>", "1 man", "2 ordered"], ["a", "b"], title="T", xlabel="key", ylabel="query")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0 <ST>", "1 man", "2 ordered"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert ax.get_title() == "T" and ax.get_xlabel() == "key" and ax.get_ylabel() == "query"
    assert _texts(ax) == ["0.10", "0.90", "0.25", "0.75", "1.00", "0.00"]


def test_heatmap_text_colour_contrasts_with_cell():
    # viridis: low values are dark purple, high values light yellow.
    ax = heatmap(np.array([[0.0, 1.0]]), cmap="viridis")
    low, high = ax.texts
    assert low.get_color() == "white"
    assert high.get_color() == "black"
    ax2 = heatmap(np.array([[0.0, 1.0]]), cmap="Greys")  # Greys: 0 is white, 1 is black
    assert [t.get_color() for t in ax2.texts] == ["black", "white"]


def test_heatmap_annotate_default_threshold_and_fmt():
    assert len(heatmap(np.zeros((20, 20))).texts) == 400
    assert len(heatmap(np.zeros((20, 21))).texts) == 0
    assert len(heatmap(np.zeros((20, 21)), annotate=True).texts) == 420
    assert len(heatmap(np.ones((2, 2)), annotate=False).texts) == 0
    assert _texts(heatmap(np.array([[1 / 3]]), fmt="{:.3f}")) == ["0.333"]


def test_heatmap_masked_cells_and_colorbar():
    m = torch.tensor([[0.5, float("-inf")], [0.2, 0.3]])
    ax = heatmap(m, colorbar=True)
    assert _texts(ax)[1] == "-inf"
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar


def test_heatmap_center_is_symmetric():
    ax = heatmap(np.array([[-1.0, 3.0]]), center=0)
    norm = ax.images[0].norm
    assert norm.vmin == pytest.approx(-3.0) and norm.vmax == pytest.approx(3.0)
    assert norm(0.0) == pytest.approx(0.5)


def test_heatmap_bad_input_errors():
    with pytest.raises(ValueError, match="2-D"):
        heatmap(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="row_labels has 2 labels"):
        heatmap(np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(TypeError, match="numbers"):
        heatmap(np.array([["a", "b"]]))


def test_heatmap_plotly_hover_and_text():
    fig = heatmap_plotly(torch.tensor([[0.1, 0.2], [0.3, float("-inf")]]), ["r0", "r1"], ["c0", "c1"], title="P")
    trace = fig.data[0]
    assert list(trace.x) == ["c0", "c1"] and list(trace.y) == ["r0", "r1"]
    assert "%{y}" in trace.hovertemplate and "%{x}" in trace.hovertemplate and "%{z" in trace.hovertemplate
    assert trace.texttemplate == "%{z:.2f}"
    assert np.isnan(np.asarray(trace.z, dtype=float)[1, 1])  # -inf becomes a gap, JSON-safe
    assert fig.layout.title.text == "P"
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 on top, like the matplotlib version


def test_heatmap_plotly_keeps_repeated_labels_apart():
    fig = heatmap_plotly(np.eye(3), ["the", "the", "man"], ["the", "the", "man"])
    assert len(set(fig.data[0].y)) == 3


def test_heatmap_grid_panels_and_per_panel_labels():
    mats = [np.eye(2), np.ones((2, 2)), np.zeros((2, 2))]
    fig = heatmap_grid(mats, ["A", "B", "C"], row_labels=[["a", "b"], ["c", "d"], ["e", "f"]],
                       col_labels=["x", "y"], ncols=2, suptitle="S")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["A", "B", "C"]
    assert [t.get_text() for t in visible[1].get_yticklabels()] == ["c", "d"]
    assert len(fig.axes) == 4 and not fig.axes[3].get_visible()
    with pytest.raises(ValueError, match="titles"):
        heatmap_grid(mats, ["A"])


def test_plotly_heatmap_of_a_large_matrix_stays_inside_the_notebook_column():
    from toyattn.plotting import MAX_PLOTLY_HEIGHT, MAX_PLOTLY_WIDTH, heatmap_plotly

    small = heatmap_plotly(np.zeros((3, 3)), title="small")
    big = heatmap_plotly(np.zeros((40, 40)), title="big")
    assert big.layout.width == MAX_PLOTLY_WIDTH and big.layout.height == MAX_PLOTLY_HEIGHT
    assert small.layout.width < MAX_PLOTLY_WIDTH and small.layout.height < MAX_PLOTLY_HEIGHT
