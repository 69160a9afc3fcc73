"""Plots of a training run (PNG, matplotlib's Agg backend; matplotlib is optional).

* :func:`plot_learning_curves`: training loss and the validation metrics per epoch.
* :func:`plot_age_scatter`: predicted (expected) vs true age on the test split,
  with the identity line.
* :func:`plot_cumulative_probs`: :math:`P(y > k)` against the rank threshold
  :math:`k` for a few true ranks from the youngest to the oldest (the mean over the test
  images of each rank), with the labels' own :math:`P(y > k)` (the prior), as the CORAL
  paper's Figure S2 (a rank-consistent model gives non-increasing curves).
* :func:`plot_roc`: ROC curve (gender: P(class 1) vs label; embeddings:
  cosine similarity of image pairs vs same identity), with the AUC.

Each task picks its plots (:meth:`facecore.train.tasks.base.Task.plots`);
:func:`facecore.train.runner.plot_run` writes the learning curves and those. Without
matplotlib every function raises :class:`MissingMatplotlib` (an ``ImportError``) naming
the extra to install; ``plot_run`` then warns once and returns ``{}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = [
    "MissingMatplotlib",
    "plot_age_scatter",
    "plot_cumulative_probs",
    "plot_learning_curves",
    "plot_roc",
]


class MissingMatplotlib(ImportError):
    pass


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingMatplotlib(
            "plots need matplotlib: pip install 'facecore[plot]' (or pip install matplotlib)"
        ) from None
    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_learning_curves(
    history: list[dict[str, Any]], path: str | Path, keys: tuple[str, ...] | None = None
) -> Path:
    """Loss (left) and the ``keys`` metrics (default: every ``val_*`` metric except
    baselines) (right) per epoch."""
    plt = _plt()
    if not history:
        raise ValueError("history is empty: nothing to plot")
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(epochs, [h.get("train_loss") for h in history], "o-", label="train loss")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    if keys is None:
        keys = tuple(
            k
            for k in history[-1]
            if k.startswith("val_") and k not in ("val_eer_threshold", "val_rank_inconsistent_fraction")
        )
    for k in keys:
        b.plot(epochs, [h.get(k) for h in history], "o-", label=k[4:])
    b.set_xlabel("epoch")
    b.set_title("validation")
    b.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_age_scatter(
    true: torch.Tensor, predicted: torch.Tensor, path: str | Path, *, offset: float = 0.0,
    scale: float = 1.0,
) -> Path:
    """Predicted vs true age (``offset + scale * rank``); true ages jittered slightly."""
    plt = _plt()
    t = offset + scale * torch.as_tensor(true, dtype=torch.float64)
    p = offset + scale * torch.as_tensor(predicted, dtype=torch.float64)
    jitter = (torch.rand(len(t), generator=torch.Generator().manual_seed(0)) - 0.5) * 0.3 * scale
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.scatter(t + jitter, p, s=6, alpha=0.4)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    mae = float((t - p).abs().mean())
    ax.set_xlabel("true age")
    ax.set_ylabel("predicted age (expected)")
    ax.set_title(f"test: MAE {mae:.2f}")
    return _save(fig, Path(path))


def plot_cumulative_probs(
    cum_probs: torch.Tensor, labels: torch.Tensor, path: str | Path, *, num_images: int = 4
) -> Path:
    """:math:`P(y > k)` vs ``k`` for ``num_images`` true ranks spread from the youngest to
    the oldest present: each line is the mean over the test images of that rank (the band:
    their 25-75% quantiles; a rank with one image is that image), with the rank marked,
    and the dashed line is :math:`P(y > k)` of the labels themselves (the prior a model
    without information predicts). A model that learned age spreads its lines across that
    prior: near 1 at the first threshold, near 0 at the last, and crossing 0.5 near each
    line's rank; a rank-consistent model gives non-increasing lines."""
    plt = _plt()
    c = torch.as_tensor(cum_probs, dtype=torch.float64)
    y = torch.as_tensor(labels).long()
    present = torch.unique(y)
    ranks: list[int] = []
    for r in torch.linspace(int(present.min()), int(present.max()), num_images).round().long().tolist():
        nearest = int(present[(present - r).abs().argmin()])
        if nearest not in ranks:
            ranks.append(nearest)
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    k = torch.arange(c.shape[1])
    prior = torch.stack([(y > j).double().mean() for j in range(c.shape[1])])
    ax.plot(k, prior, "k--", lw=1.2, label="labels' P(y > k)")
    for r in ranks:
        rows = c[y == r]
        mean = rows.mean(0)
        line = ax.plot(k, mean, "o-", ms=3, label=f"true rank {r} ({len(rows)} image{'s' * (len(rows) > 1)})")[0]
        if len(rows) > 1:
            lo, hi = torch.quantile(rows, 0.25, dim=0), torch.quantile(rows, 0.75, dim=0)
            ax.fill_between(k, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        ax.axvline(r - 0.5, color=line.get_color(), ls=":", lw=1)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xlabel("rank threshold k")
    ax.set_ylabel("P(y > k)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("test split: mean P(y > k) by true rank", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, Path(path))


def plot_roc(scores: torch.Tensor, same: torch.Tensor, path: str | Path, *, title: str = "") -> Path:
    """ROC curve of ``scores`` (higher = positive / same identity) against 0/1 ``same``."""
    from facecore.metrics import roc_curve, verification_auc

    plt = _plt()
    roc = roc_curve(scores, same)
    auc = verification_auc(scores, same)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(roc.fpr, roc.tpr, lw=1.5)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{title} ROC (AUC {auc:.3f})".strip())
    return _save(fig, Path(path))
