"""Figures of the analysis (matplotlib, Agg backend, PNG): projections coloured by an
attribute, the bias-matrix heat-map, and grids of projections side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from facecore.analysis.bias import BiasMatrix

__all__ = ["heatmap", "scatter", "scatter_grid"]


def _plt():
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ImportError("plots need matplotlib: pip install facecore[analysis]") from e
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _draw(ax, coords: np.ndarray, values: np.ndarray, names: list[str] | None, *, legend: bool,
          size: float, ordinal: bool = False) -> Any:
    """Scatter ``coords`` (2 or 3 columns) coloured by ``values``: categorical (named or
    integer with few values) with a legend (``ordinal``: colours in order along viridis),
    else continuous with a colour map."""
    plt = _plt()
    v = np.asarray(values)
    uniq = np.unique(v)
    categorical = names is not None or (np.issubdtype(v.dtype, np.integer) and len(uniq) <= 20)
    xyz = [coords[:, i] for i in range(coords.shape[1])]
    if not categorical:
        sc = ax.scatter(*xyz, c=v, s=size, cmap="viridis", linewidths=0)
        return sc
    cmap = plt.get_cmap("tab10" if len(uniq) <= 10 else "tab20")
    for i, u in enumerate(uniq):
        m = v == u
        label = names[int(u)] if names is not None and 0 <= int(u) < len(names) else str(u)
        colour = plt.get_cmap("viridis")(i / max(1, len(uniq) - 1)) if ordinal else cmap(i % cmap.N)
        ax.scatter(*[c[m] for c in xyz], s=size, color=colour, label=f"{label} ({int(m.sum())})",
                   linewidths=0, alpha=0.85)
    if legend:
        ax.legend(fontsize=7, markerscale=1.5, loc="best", framealpha=0.7)
    return None


def scatter(coords: np.ndarray, values: np.ndarray, path: Path, *, names: list[str] | None = None,
            title: str = "", note: str = "", ordinal: bool = False) -> Path:
    """One projection (2-D or 3-D) coloured by one attribute, written to ``path``
    (``ordinal``: ordered classes, e.g. age groups, coloured along a sequential map)."""
    plt = _plt()
    three = coords.shape[1] == 3
    fig = plt.figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot(111, projection="3d" if three else None)
    sc = _draw(ax, coords, values, names, legend=True, size=10 if three else 14, ordinal=ordinal)
    if sc is not None:
        fig.colorbar(sc, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=10)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="0.35")
    if not three:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scatter_grid(panels: list[list[dict[str, Any]]], path: Path, *, title: str = "",
                 note: str = "") -> Path:
    """Rows x columns of 2-D projections; each panel ``{"coords", "values", "names",
    "title"}`` (``None`` leaves a panel empty)."""
    plt = _plt()
    nr, nc = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(nr, nc, figsize=(3.4 * nc, 3.2 * nr), squeeze=False)
    for i, row in enumerate(panels):
        for j in range(nc):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            p = row[j] if j < len(row) else None
            if p is None:
                ax.axis("off")
                continue
            _draw(ax, p["coords"], p["values"], p.get("names"), legend=(i == 0 and j == 0), size=6)
            ax.set_title(p.get("title", ""), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="0.35")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def heatmap(m: BiasMatrix, path: Path, title: str | None = None) -> Path:
    """The bias matrix as a heat-map: value and 95% interval in each cell, the diagonal
    (own group) outlined."""
    plt = _plt()
    v = m.values()
    nr, nc = v.shape
    fig, ax = plt.subplots(figsize=(1.5 + 1.45 * nc, 1.2 + 0.75 * nr))
    cmap = "viridis" if m.higher_is_better else "viridis_r"
    im = ax.imshow(v, cmap=cmap, aspect="auto")
    fig.colorbar(im, ax=ax, shrink=0.85, label=m.metric)
    finite = v[np.isfinite(v)]
    mid = float(np.mean([finite.min(), finite.max()])) if finite.size else 0.0
    for r in range(nr):
        for c in range(nc):
            e = m.cells[r][c]
            dark = (v[r, c] < mid) == m.higher_is_better
            txt = "n/a" if not np.isfinite(e.value) else f"{e.value:.3f}\n[{e.low:.2f}, {e.high:.2f}]"
            ax.text(c, r, txt, ha="center", va="center", fontsize=7.5,
                    color="white" if dark else "black")
            if m.rows[r] == m.cols[c]:
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, lw=2, ec="red"))
    ax.set_xticks(range(nc), m.cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(nr), m.rows, fontsize=8)
    ax.set_xlabel(f"evaluated on ({m.group})")
    ax.set_ylabel(f"trained on ({m.group})")
    ax.set_title(title or f"{m.target}: {m.metric} by {m.group} (95% CI)", fontsize=9)
    if "baseline" in m.extra:
        what = "majority class" if m.task == "classification" else "training median"
        vals = ", ".join(f"{e.value:.3f}" for e in m.extra["baseline"][0])
        fig.text(0.01, 0.01, f"{what}: {vals}", fontsize=7, color="0.35")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
