"""toyattn.heads.figures: lesson 2's figures have labels and discrete colours, and refuse layers they cannot draw."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from plot_helpers import _close_figures  # noqa: F401 (a fixture)

from toyattn.heads.figures import cost_heatmap, head_blocks_figure, qkv_column_labels, qkv_heatmap
from toyattn.heads.weights import HeadWeights
from toyattn.plotting import discrete_colorscale  # noqa: E402


def test_plots_have_labels_and_discrete_colours():
    scale = discrete_colorscale(3)
    assert len(scale) == 6 and scale[0][1] == scale[1][1] and scale[1][1] != scale[2][1]
    assert qkv_column_labels(2, 2)[:3] == ["Q h0.0", "Q h0.1", "Q h1.0"]
    w = torch.arange(3 * 2 * 2, dtype=torch.float32).repeat(4, 1) % 4
    fig = qkv_heatmap(w, 2, layout="in_out", title="fused")
    assert fig.layout.title.text == "fused"
    assert list(fig.data[0].x)[-1].startswith("V h1.1")
    fig_out_in = qkv_heatmap(w.T, 2, layout="out_in", title="same")  # drawn the same way whatever the layout
    np.testing.assert_array_equal(np.asarray(fig_out_in.data[0].z), np.asarray(fig.data[0].z))
    heads = HeadWeights.from_fused(w, 2, layout="in_out")
    grid = head_blocks_figure(heads, title="blocks")
    assert len(grid.data) == 6
    cost = torch.rand(3, 3)
    fig_cost = cost_heatmap(cost, title="cost", matched=torch.tensor([2, 0, 1]))
    assert len(fig_cost.layout.shapes) == 3


matplotlib.use("Agg")


def test_head_blocks_figure_refuses_layers_without_their_own_qkv_per_head():
    from toyattn.heads.figures import head_blocks_figure
    from toyattn.heads.weights import HeadWeights

    g = torch.Generator().manual_seed(0)
    full = HeadWeights(*(torch.randn(2, 4, 3, generator=g) for _ in range(3)))
    assert len(head_blocks_figure(full, title="t").data) == 6  # 2 heads x Q, K, V
    qk_only = HeadWeights(full.W_Q, full.W_K, None)
    with pytest.raises(ValueError, match="no W_V \\(queries and keys only\\)"):
        head_blocks_figure(qk_only, title="t")
    grouped = HeadWeights(full.W_Q, full.W_K[:1], full.W_V[:1])
    with pytest.raises(ValueError, match="1 key/value heads shared by 2 query heads"):
        head_blocks_figure(grouped, title="t")
