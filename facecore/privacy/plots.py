"""Plots of a privacy evaluation (matplotlib, the ``plot`` extra; Agg backend).

* :func:`plot_grid`: ``n`` faces (rows) x original / SM / NT / OP (columns).
* :func:`plot_roc`: verification ROC (log FPR) of one matcher, before / after.
* :func:`plot_p_female`: histograms of P(female) of one classifier, per variant, split by
  the true gender.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["plot_grid", "plot_p_female", "plot_roc"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_grid(
    columns: dict[str, torch.Tensor],
    path: str | Path,
    *,
    n: int = 8,
    indices: Sequence[int] | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Save an image grid: one row per face (``indices`` or the first ``n``), one column
    per entry of ``columns`` (name -> ``[N, 1 | 3, S, S]`` in [0, 1])."""
    plt = _plt()
    names = list(columns)
    first = columns[names[0]]
    idx = list(indices) if indices is not None else list(range(min(n, first.shape[0])))
    fig, axes = plt.subplots(len(idx), len(names), figsize=(1.5 * len(names), 1.5 * len(idx)),
                             squeeze=False)
    for r, i in enumerate(idx):
        for c, name in enumerate(names):
            img = columns[name][i].detach().float().clamp(0, 1).cpu()
            ax = axes[r][c]
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc(
    curves: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | Path, *, title: str = ""
) -> Path:
    """Save ROC curves (variant -> ``(fpr, tpr)``) with a log FPR axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (fpr, tpr) in curves.items():
        f = fpr.double().clamp(min=1e-4)
        ax.step(f.numpy(), tpr.double().numpy(), where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_p_female(
    p_female: dict[str, torch.Tensor], gender: torch.Tensor, path: str | Path, *, title: str = ""
) -> Path:
    """Save histograms of P(female) (variant -> ``[N]``), one panel per variant, true men
    and women in separate colours."""
    plt = _plt()
    names = list(p_female)
    g = torch.as_tensor(gender).reshape(-1)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.6), squeeze=False)
    bins = [i / 20 for i in range(21)]
    for ax, name in zip(axes[0], names):
        p = p_female[name].double()
        ax.hist(p[g == 0].numpy(), bins=bins, alpha=0.6, label="male", color="tab:blue")
        ax.hist(p[g == 1].numpy(), bins=bins, alpha=0.6, label="female", color="tab:red")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("P(female)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
