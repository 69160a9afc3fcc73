"""Plots of a sweep (PNG; matplotlib optional: :class:`facecore.train.plots.MissingMatplotlib`).

* :func:`plot_box`: per configuration, the trials' values over the seeds (a box with the
  seeds as dots; stopped-early trials as crosses), one panel per metric, configurations
  best first.
* :func:`plot_curves`: the learning curves (metric per epoch) of every trial of the best
  configurations, one colour per configuration, one line per seed; a trial stopped early
  ends in a cross.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from facecore.train.plots import _plt, _save

__all__ = ["plot_box", "plot_curves"]

_DONE = ("finished", "stopped early")


def _label(row: Mapping[str, Any], params: Sequence[str]) -> str:
    last = [p.rsplit(".", 1)[-1] for p in params]
    names = [s if last.count(s) == 1 else p for p, s in zip(params, last)]

    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return "\n".join(f"{n}={fmt(row.get(p))}" for n, p in zip(names, params)) or "base"


def _key(row: Mapping[str, Any], params: Sequence[str]) -> str:
    return json.dumps({p: row.get(p) for p in params}, sort_keys=True, default=str)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def plot_box(
    trials: Sequence[Mapping[str, Any]],
    configs: Sequence[Mapping[str, Any]],
    params: Sequence[str],
    metrics: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    max_configs: int = 16,
) -> Path:
    """Box plot per configuration (``configs`` order, at most ``max_configs``) of each
    metric's values over the trials (seeds)."""
    plt = _plt()
    configs = list(configs)[:max_configs]
    metrics = list(metrics)[:4]
    width = max(4.5, 0.9 * len(configs) + 2)
    fig, axes = plt.subplots(1, len(metrics), figsize=(width * len(metrics), 4.4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        data, stopped = [], []
        for c in configs:
            members = [t for t in trials if t["status"] in _DONE and _key(t, params) == _key(c, params)]
            data.append([float(t[m]) for t in members if _finite(t.get(m))])
            stopped.append([float(t[m]) for t in members if _finite(t.get(m)) and t["status"] == "stopped early"])
        pos = list(range(1, len(configs) + 1))
        ax.boxplot([d if d else [math.nan] for d in data], positions=pos, widths=0.55, showfliers=False)
        for x, d, s in zip(pos, data, stopped):
            jitter = [x + 0.12 * ((i % 3) - 1) for i in range(len(d))]
            ax.scatter(jitter, d, s=16, c="C0", zorder=3, alpha=0.8)
            if s:
                ax.scatter([x] * len(s), s, marker="x", s=36, c="C3", zorder=4)
        ax.set_xticks(pos)
        ax.set_xticklabels([_label(c, params) for c in configs], fontsize=7)
        ax.set_ylabel(m)
        n = max((len(d) for d in data), default=0)
        ax.set_title(f"{m} over seeds (n <= {n}; x: stopped early)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))


def plot_curves(
    trials: Sequence[Mapping[str, Any]],
    configs: Sequence[Mapping[str, Any]],
    params: Sequence[str],
    metrics: Sequence[str],
    trials_dir: str | Path,
    path: str | Path,
    *,
    top: int = 4,
    title: str = "",
) -> Path:
    """Per-epoch ``metrics`` (from each trial's ``history.json``) of the trials of the
    ``top`` best configurations."""
    plt = _plt()
    metrics = list(metrics)[:3]
    best = [_key(c, params) for c in list(configs)[:top]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.0), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for i, k in enumerate(best):
            colour = f"C{i % 10}"
            labelled = False
            for t in trials:
                if t["status"] not in _DONE or _key(t, params) != k:
                    continue
                try:
                    hist = json.loads((Path(trials_dir) / t["trial_id"] / "history.json").read_text())
                except (OSError, ValueError):
                    continue
                xs = [h["epoch"] for h in hist if _finite(h.get(m))]
                ys = [h[m] for h in hist if _finite(h.get(m))]
                if not xs:
                    continue
                label = None if labelled else _label(t, params).replace("\n", " ")
                ax.plot(xs, ys, "-", c=colour, lw=1.2, alpha=0.8, label=label)
                labelled = True
                if t["status"] == "stopped early":
                    ax.scatter([xs[-1]], [ys[-1]], marker="x", c=colour, s=40, zorder=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.set_title(f"{m}: best {len(best)} configurations (one line per seed)", fontsize=9)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))
