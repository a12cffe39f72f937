"""Heatmaps with token labels: matplotlib for the page, plotly for hovering.

Taught in lesson 1 (``notebooks/01_attention_toy``) and used by every lesson that shows an
attention pattern, a prediction table or a weight matrix.

* :func:`heatmap` - an annotated matplotlib heatmap (numbers readable on every cell);
* :func:`heatmap_plotly` - the interactive twin, with hover text naming row, column and value;
* :func:`heatmap_grid` - several heatmaps side by side (heads, sentences, experiments).

Lesson 2 (``notebooks/02_head_permutation``) draws heads inside fused weights with discrete colours:
:func:`qkv_heatmap` (a fused QKV weight, columns labelled by block and head, see
:func:`qkv_column_labels`), :func:`head_blocks_figure` (one panel per head and Q/K/V block) and
:func:`cost_heatmap` (a matching's cost matrix, the chosen cells boxed), all with
:func:`discrete_colorscale`.

Every function accepts a tensor on any device (also one that requires grad) or an array.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from toyattn.arrays import as_matrix
from toyattn.heads.fused_qkv import QKV_NAMES, Layout, merge_qkv, split_qkv
from toyattn.heads.weights import HeadWeights

#: ``annotate=None`` writes the numbers when the matrix has at most this many cells.
ANNOTATE_MAX_CELLS = 400
#: Plotly heatmaps grow with the matrix up to this size (px): wider overflows JupyterLab's column.
MAX_PLOTLY_WIDTH = 860
MAX_PLOTLY_HEIGHT = 860


def _as_matrix(matrix: Any, what: str = "matrix") -> np.ndarray:
    """A float 2-D NumPy array to draw; NaN and -inf (masked scores) are allowed."""
    hint = " Select one matrix first, e.g. pattern[0, 0] for batch 0, head 0."
    return as_matrix(matrix, what, finite=False, hint=hint, purpose="heatmaps")


def _check_labels(labels: Sequence[Any] | None, n: int, which: str) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(lab) for lab in labels]
    if len(labels) != n:
        raise ValueError(f"{which} has {len(labels)} labels but the matrix has {n} {which.split('_')[0]}s.")
    return labels


def _should_annotate(annotate: bool | None, arr: np.ndarray) -> bool:
    return arr.size <= ANNOTATE_MAX_CELLS if annotate is None else bool(annotate)


def _format(fmt: str, value: float) -> str:
    if np.isnan(value):
        return ""
    if np.isinf(value):
        return "-inf" if value < 0 else "inf"
    return fmt.format(value)


def heatmap(
    matrix: Any,
    row_labels: Sequence[Any] | None = None,
    col_labels: Sequence[Any] | None = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    annotate: bool | None = None,
    fmt: str = "{:.2f}",
    cmap: str = "viridis",
    colorbar: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    center: float | None = None,
) -> Axes:
    """Draw ``matrix`` ``[rows, cols]`` as an annotated heatmap with token labels (lesson 1).

    Args:
        matrix: tensor (any device, may require grad) or array ``[rows, cols]``. ``-inf`` cells
            (masked attention scores) are drawn blank and labelled ``-inf``.
        row_labels, col_labels: one label per row/column, e.g. ``["0 <ST>", "1 man", ...]``.
        ax: draw into this axes (default: a new figure sized to the matrix).
        annotate: write each cell's value; ``None`` means "when rows*cols <= 400".
        fmt: ``str.format`` pattern for the numbers.
        cmap: colour map; with ``center`` set, a diverging map (``"RdBu_r"``) is used unless given.
        colorbar: add a colour bar.
        vmin, vmax: colour range (default: the finite data range).
        center: value drawn as the middle colour (``center=0`` for signed weights).

    Returns:
        The matplotlib ``Axes``. The text on each cell is dark on light colours and light on dark.
    """
    arr = _as_matrix(matrix)
    n_rows, n_cols = arr.shape
    rows = _check_labels(row_labels, n_rows, "row_labels")
    cols = _check_labels(col_labels, n_cols, "col_labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.75 * n_cols + 1.8), max(2.5, 0.5 * n_rows + 1.2)))

    finite = arr[np.isfinite(arr)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if center is not None:
        if cmap == "viridis":
            cmap = "RdBu_r"
        half = max(abs(hi - center), abs(center - lo), 1e-12)
        norm: Normalize = TwoSlopeNorm(vcenter=center, vmin=center - half, vmax=center + half)
    else:
        if hi <= lo:
            hi = lo + 1e-12
        norm = Normalize(vmin=lo, vmax=hi)

    shown = np.ma.masked_invalid(arr)  # -inf / nan cells are left blank (masked attention)
    image = ax.imshow(shown, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(n_cols), labels=cols if cols is not None else np.arange(n_cols))
    ax.set_yticks(np.arange(n_rows), labels=rows if rows is not None else np.arange(n_rows))
    if cols is not None and max((len(c) for c in cols), default=0) > 3:
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)

    if _should_annotate(annotate, arr):
        colormap = image.get_cmap()
        for i in range(n_rows):
            for j in range(n_cols):
                value = arr[i, j]
                if np.isfinite(value):
                    r, g, b, _ = colormap(norm(value))
                    # Perceived brightness (ITU-R BT.601): dark text on light cells, light on dark.
                    colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                else:
                    colour = "black"
                ax.text(j, i, _format(fmt, value), ha="center", va="center", color=colour, fontsize=9)
    return ax


def heatmap_plotly(
    matrix: Any,
    row_labels: Sequence[Any] | None = None,
    col_labels: Sequence[Any] | None = None,
    *,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    annotate: bool | None = None,
    fmt: str = ".2f",
    colorscale: str = "Viridis",
    zmin: float | None = None,
    zmax: float | None = None,
    hovertemplate: str | None = None,
):
    """Interactive twin of :func:`heatmap` (lesson 1): hover a cell to read row, column and value.

    Rows run top to bottom like the matplotlib version (row 0 at the top). ``fmt`` is a d3 format
    (``".2f"``). Returns a ``plotly.graph_objects.Figure``; call ``.show()`` in a notebook.
    """
    import plotly.graph_objects as go

    arr = _as_matrix(matrix)
    n_rows, n_cols = arr.shape
    rows = _check_labels(row_labels, n_rows, "row_labels") or [str(i) for i in range(n_rows)]
    cols = _check_labels(col_labels, n_cols, "col_labels") or [str(j) for j in range(n_cols)]
    # Plotly merges identical category labels into one; keep them apart with invisible suffixes.
    rows = _unique(rows)
    cols = _unique(cols)
    z = np.where(np.isfinite(arr), arr, np.nan)  # JSON has no -inf; masked cells show as gaps
    trace_kwargs: dict[str, Any] = dict(
        z=z,
        x=cols,
        y=rows,
        colorscale=colorscale,
        zmin=zmin,
        zmax=zmax,
        hovertemplate=hovertemplate
        or f"row: %{{y}}<br>column: %{{x}}<br>value: %{{z:{fmt}}}<extra></extra>",
    )
    if _should_annotate(annotate, arr):
        trace_kwargs["texttemplate"] = f"%{{z:{fmt}}}"
    fig = go.Figure(go.Heatmap(**trace_kwargs))
    fig.update_layout(
        title=title,
        xaxis_title=xlabel,
        yaxis_title=ylabel,
        yaxis=dict(autorange="reversed", type="category"),
        xaxis=dict(type="category"),
        # Grow with the matrix, but stay inside JupyterLab's notebook column (about 900 px).
        width=min(MAX_PLOTLY_WIDTH, max(380, 70 * n_cols + 200)),
        height=min(MAX_PLOTLY_HEIGHT, max(300, 45 * n_rows + 160)),
    )
    return fig


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        k = seen.get(lab, 0)
        out.append(lab + "\u200b" * k)
        seen[lab] = k + 1
    return out


def heatmap_grid(
    matrices: Sequence[Any],
    titles: Sequence[str],
    *,
    row_labels: Sequence[Any] | Sequence[Sequence[Any]] | None = None,
    col_labels: Sequence[Any] | Sequence[Sequence[Any]] | None = None,
    ncols: int | None = None,
    suptitle: str | None = None,
    figsize: tuple[float, float] | None = None,
    **heatmap_kwargs: Any,
) -> Figure:
    """Several :func:`heatmap` panels in one figure (lesson 1: one per sentence or experiment).

    Args:
        matrices: a list of ``[rows, cols]`` tensors/arrays (or a ``[n, rows, cols]`` tensor).
        titles: one title per matrix.
        row_labels, col_labels: one list for all panels, or one list per panel.
        ncols: panels per row (default: all in one row, at most 4).
        heatmap_kwargs: passed to :func:`heatmap` (``fmt``, ``cmap``, ``vmin``, ``center``, ...).

    Returns:
        The matplotlib ``Figure``; unused panels are hidden.
    """
    mats = [_as_matrix(m, f"matrices[{i}]") for i, m in enumerate(matrices)]
    titles = list(titles)
    if not mats:
        raise ValueError("heatmap_grid needs at least one matrix.")
    if len(titles) != len(mats):
        raise ValueError(f"heatmap_grid got {len(mats)} matrices but {len(titles)} titles; give one title each.")
    n = len(mats)
    if ncols is None:
        ncols = min(n, 4)
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}.")
    nrows = -(-n // ncols)
    if figsize is None:
        r, c = mats[0].shape
        figsize = (ncols * max(3.0, 0.7 * c + 1.6), nrows * max(2.5, 0.5 * r + 1.3))
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)

    def labels_for(labels: Any, i: int) -> Any:
        if labels is None or len(labels) == 0:
            return None
        first = labels[0]
        if isinstance(first, (list, tuple)):
            if len(labels) != n:
                raise ValueError(f"Per-panel labels: got {len(labels)} lists for {n} matrices.")
            return labels[i]
        return labels

    for i, (mat, title) in enumerate(zip(mats, titles, strict=True)):
        heatmap(
            mat,
            labels_for(row_labels, i),
            labels_for(col_labels, i),
            ax=axes[i // ncols][i % ncols],
            title=title,
            **heatmap_kwargs,
        )
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Lesson 2: heads inside fused weights (plotly, discrete colours)
# ---------------------------------------------------------------------------------------------


def discrete_colorscale(levels: int, name: str = "Viridis") -> list[list]:
    """A plotly colour scale with ``levels`` flat bands instead of a smooth gradient (lesson 2).

    With few distinct values (0, 1, 2, ...) each value gets its own clearly different colour.
    """
    import plotly.express as px

    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}.")
    colours = px.colors.sample_colorscale(name, list(np.linspace(0, 1, levels)))
    scale: list[list] = []
    for i, c in enumerate(colours):
        scale.append([i / levels, c])
        scale.append([(i + 1) / levels, c])
    return scale


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
