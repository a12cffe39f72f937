"""Lesson 2's figures: a fused QKV weight as a heatmap with its head blocks labelled, heads side by side, and a matching's cost matrix.

Taught in lesson 2 (``notebooks/02_head_permutation``). Built on :mod:`toyattn.plotting`'s heatmaps.
"""

from __future__ import annotations

import numpy as np
import torch

from toyattn.heads.fused_qkv import QKV_NAMES, Layout, merge_qkv, split_qkv
from toyattn.heads.weights import HeadWeights
from toyattn.plotting import discrete_colorscale, heatmap_plotly


def qkv_column_labels(n_heads: int, d_head: int) -> list[str]:
    """Labels for the ``3*n_heads*d_head`` columns of a fused QKV weight: ``"Q h0.0"``, ``"Q h0.1"``, ... (lesson 2)."""
    return [f"{name} h{h}.{d}" for name in QKV_NAMES for h in range(n_heads) for d in range(d_head)]


def _value_range(values: np.ndarray) -> tuple[float, float, int]:
    uniq = np.unique(values)
    lo, hi = float(uniq.min()), float(uniq.max())
    if len(uniq) <= 12 and np.allclose(uniq, np.round(uniq)):
        # One band per integer: centre each value in its band.
        return lo - 0.5, hi + 0.5, int(round(hi - lo)) + 1
    return lo, hi, 8


def qkv_heatmap(weight: torch.Tensor, n_heads: int, *, layout: Layout, title: str, levels: int | None = None):
    """Interactive heatmap of a fused QKV weight, drawn as ``[d_in, 3*n_heads*d_head]`` whatever its
    layout, columns labelled ``Q h0.0 .. V h{H-1}.{d_head-1}`` (lesson 2). Returns a plotly Figure."""
    heads = split_qkv(weight, n_heads, layout=layout)  # validates
    w = merge_qkv(heads, layout="in_out").detach().cpu().double().numpy()
    lo, hi, auto_levels = _value_range(w)
    fig = heatmap_plotly(
        w,
        [f"in {i}" for i in range(w.shape[0])],
        qkv_column_labels(n_heads, heads.shape[-1]),
        title=title,
        xlabel="column of the fused weight (block, head.dim)",
        ylabel="input dimension",
        colorscale=discrete_colorscale(levels or auto_levels),  # type: ignore[arg-type]
        zmin=lo,
        zmax=hi,
        fmt=".0f" if auto_levels < 13 and levels is None else ".2f",
    )
    # Lines between the Q, K and V blocks and between heads make the structure visible at a glance.
    n_cols = w.shape[1]
    block = n_cols // 3
    dh = heads.shape[-1]
    for c in range(dh, n_cols, dh):
        fig.add_vline(x=c - 0.5, line_width=3 if c % block == 0 else 1, line_color="white")
    return fig


def _check_full_heads(heads: HeadWeights) -> None:
    """Refuse a layer without its own Q, K and V per head (read from a checkpoint, or grouped-query)."""
    if heads.W_V is None or heads.n_kv_heads != heads.n_heads:
        missing = "no W_V (queries and keys only)" if heads.W_V is None else f"{heads.n_kv_heads} key/value heads shared by {heads.n_heads} query heads"
        raise ValueError(
            f"head_blocks_figure draws each head's own Q, K and V blocks, but this layer has {missing}; "
            "draw its W_Q and W_K with toyattn.plotting.heatmap instead."
        )


def head_blocks_figure(heads: HeadWeights, *, title: str, levels: int | None = None):
    """A grid of heatmaps, one row per head and one column per Q / K / V block ``[d_in, d_head]``,
    with one shared discrete colour scale (lesson 2). Returns a plotly Figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _check_full_heads(heads)
    blocks = [[heads.W_Q[h], heads.W_K[h], heads.W_V[h]] for h in range(heads.n_heads)]
    all_values = torch.stack([heads.W_Q, heads.W_K, heads.W_V]).detach().cpu().double().numpy()
    lo, hi, auto_levels = _value_range(all_values)
    scale = discrete_colorscale(levels or auto_levels)
    fig = make_subplots(
        rows=heads.n_heads,
        cols=3,
        subplot_titles=[f"head {h}: {n}" for h in range(heads.n_heads) for n in QKV_NAMES],
        horizontal_spacing=0.06,
        vertical_spacing=0.12 / max(1, heads.n_heads - 1) if heads.n_heads > 1 else 0.1,
    )
    for h, row in enumerate(blocks):
        for c, m in enumerate(row):
            arr = m.detach().cpu().double().numpy()
            fig.add_trace(
                go.Heatmap(
                    z=arr,
                    x=[f"d{j}" for j in range(arr.shape[1])],
                    y=[f"in {i}" for i in range(arr.shape[0])],
                    zmin=lo,
                    zmax=hi,
                    colorscale=scale,
                    showscale=(h == 0 and c == 0),
                    texttemplate="%{z:.0f}" if arr.size <= 64 else None,
                    hovertemplate=f"head {h} {QKV_NAMES[c]}<br>%{{y}}, %{{x}}: %{{z:.2f}}<extra></extra>",
                ),
                row=h + 1,
                col=c + 1,
            )
            fig.update_yaxes(autorange="reversed", row=h + 1, col=c + 1)
    fig.update_layout(title=title, height=190 * heads.n_heads + 120, width=720)
    return fig


def cost_heatmap(cost: torch.Tensor, *, title: str, matched: torch.Tensor | None = None):
    """The cost matrix as an annotated plotly heatmap, rows = client heads, columns = reference heads;
    ``matched`` (a matching ``[n_heads]``) is marked with a box on each chosen cell (lesson 2)."""
    n = cost.shape[0]
    fig = heatmap_plotly(
        cost,
        [f"client {i}" for i in range(n)],
        [f"ref {j}" for j in range(n)],
        title=title,
        xlabel="reference head",
        ylabel="client head",
        colorscale="Plasma",
        annotate=n * n <= 144,
        fmt=".2f",
    )
    if matched is not None:
        for i, j in enumerate(matched.tolist()):
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line=dict(color="cyan", width=3))
    return fig
