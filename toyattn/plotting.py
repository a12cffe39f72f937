"""Heatmaps with token labels: matplotlib for the page, plotly for hovering.

Taught in lesson 1 (``notebooks/01_attention_toy``) and used by every lesson that shows an
attention pattern, a prediction table or a weight matrix.

* :func:`heatmap` - an annotated matplotlib heatmap (numbers readable on every cell);
* :func:`heatmap_plotly` - the interactive twin, with hover text naming row, column and value;
* :func:`heatmap_grid` - several heatmaps side by side (heads, sentences, experiments).

* :func:`discrete_colorscale` - a few colour levels, for weights whose values come in groups.

Lesson 2's figures of heads inside fused weights are built on these in :mod:`toyattn.heads.figures`.

Every function accepts a tensor on any device (also one that requires grad) or an array.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from toyattn.arrays import as_matrix

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
