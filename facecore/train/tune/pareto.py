"""Pareto fronts of several objectives (e.g. privacy vs utility): the non-dominated rows,
written as CSV / JSON and plotted with the front highlighted and a reference point.

Objectives are ``(metric, mode)`` pairs, mode ``"max"`` or ``"min"``. Row ``a``
*dominates* row ``b`` when ``a`` is at least as good as ``b`` in every objective and
strictly better in one. The front is every row no other row dominates; rows with a
missing or non-finite objective value are neither on the front nor allowed to dominate.
Identical points are all on the front (none dominates another).

::

    from facecore.train.tune import pareto_front, save_front
    rows = [{"trial": "a", "privacy": 0.30, "utility": 0.91}, ...]
    objectives = [("privacy", "max"), ("utility", "max")]
    front = pareto_front(rows, objectives)
    save_front(rows, objectives, "out/pareto", reference={"privacy": 0.0, "utility": 1.0},
               reference_label="autoencoder only")
    # out/pareto.csv, out/pareto.json, out/pareto.png
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["dominates", "front_mask", "pareto_front", "plot_front", "save_front"]

Objectives = Sequence[tuple[str, str]]


def _check(objectives: Objectives) -> list[tuple[str, float]]:
    if not objectives:
        raise ValueError("objectives must name at least one (metric, mode) pair")
    out = []
    for obj in objectives:
        metric, mode = obj
        if mode not in ("min", "max"):
            raise ValueError(f"objective {metric!r}: mode must be 'min' or 'max', got {mode!r}")
        out.append((metric, 1.0 if mode == "max" else -1.0))
    return out


def _point(row: Mapping[str, Any], signed: list[tuple[str, float]]) -> tuple[float, ...] | None:
    """The row's objective values turned so that larger is better (``None``: unusable)."""
    values = []
    for metric, sign in signed:
        v = row.get(metric)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        values.append(sign * float(v))
    return tuple(values)


def dominates(a: Mapping[str, Any], b: Mapping[str, Any], objectives: Objectives) -> bool:
    """Whether row ``a`` dominates row ``b`` (module doc); ``False`` when either lacks a
    finite value of an objective."""
    signed = _check(objectives)
    pa, pb = _point(a, signed), _point(b, signed)
    if pa is None or pb is None:
        return False
    return all(x >= y for x, y in zip(pa, pb)) and any(x > y for x, y in zip(pa, pb))


def front_mask(rows: Sequence[Mapping[str, Any]], objectives: Objectives) -> list[bool]:
    """``[row i is on the front]`` (module doc)."""
    signed = _check(objectives)
    points = [_point(r, signed) for r in rows]
    mask = []
    for i, p in enumerate(points):
        if p is None:
            mask.append(False)
            continue
        dominated = any(
            q is not None and j != i
            and all(x >= y for x, y in zip(q, p)) and any(x > y for x, y in zip(q, p))
            for j, q in enumerate(points)
        )
        mask.append(not dominated)
    return mask


def pareto_front(rows: Sequence[Mapping[str, Any]], objectives: Objectives) -> list[Mapping[str, Any]]:
    """The non-dominated rows, in their input order."""
    return [r for r, on in zip(rows, front_mask(rows, objectives)) if on]


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def save_front(
    rows: Sequence[Mapping[str, Any]],
    objectives: Objectives,
    prefix: str | Path,
    *,
    reference: Mapping[str, float] | None = None,
    reference_label: str = "reference",
    label_key: str | None = None,
    title: str = "",
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``<prefix>.csv`` (every row with an ``on_front`` column, the front first,
    sorted by the first objective), ``<prefix>.json`` (``objectives``, ``reference``,
    ``front``: the non-dominated rows, ``rows``: all of them) and, for two objectives
    and with matplotlib, ``<prefix>.png`` (:func:`plot_front`). Returns the paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    mask = front_mask(rows, objectives)
    first, mode = objectives[0]
    sign = -1.0 if mode == "max" else 1.0

    def order(item):
        row, on = item
        v = row.get(first)
        ok = isinstance(v, (int, float)) and math.isfinite(v)
        return (not on, not ok, sign * v if ok else 0.0)

    ordered = sorted(zip(rows, mask), key=order)
    table = [{**dict(r), "on_front": on} for r, on in ordered]
    keys: list[str] = []
    for r in table:
        keys += [k for k in r if k not in keys]
    out: dict[str, Path] = {}
    with open(prefix.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(table)
    out["csv"] = prefix.with_suffix(".csv")
    doc = {
        "objectives": [list(o) for o in objectives],
        "reference": dict(reference) if reference else None,
        "reference_label": reference_label if reference else None,
        "front": [{k: _jsonable(v) for k, v in r.items()} for r in table if r["on_front"]],
        "rows": [{k: _jsonable(v) for k, v in r.items()} for r in table],
    }
    prefix.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=str))
    out["json"] = prefix.with_suffix(".json")
    if plot and len(objectives) == 2:
        from facecore.train.plots import MissingMatplotlib

        try:
            out["png"] = plot_front(
                rows, objectives, prefix.with_suffix(".png"), reference=reference,
                reference_label=reference_label, label_key=label_key, title=title,
            )
        except MissingMatplotlib:
            pass
    return out


def plot_front(
    rows: Sequence[Mapping[str, Any]],
    objectives: Objectives,
    path: str | Path,
    *,
    reference: Mapping[str, float] | None = None,
    reference_label: str = "reference",
    label_key: str | None = None,
    title: str = "",
) -> Path:
    """Scatter of two objectives: dominated rows grey, the front highlighted and joined
    as a staircase, the reference point as a star; arrows name the better direction.
    Raises :class:`facecore.train.plots.MissingMatplotlib` without matplotlib."""
    from facecore.train.plots import _plt, _save

    if len(objectives) != 2:
        raise ValueError(f"plot_front draws two objectives, got {len(objectives)}")
    (mx, ox), (my, oy) = objectives
    mask = front_mask(rows, objectives)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    usable = [(r, on) for r, on in zip(rows, mask) if _point(r, _check(objectives)) is not None]
    rest = [r for r, on in usable if not on]
    front = [r for r, on in usable if on]
    if rest:
        ax.scatter([r[mx] for r in rest], [r[my] for r in rest], s=28, c="0.65", label="dominated")
    if front:
        front.sort(key=lambda r: r[mx])
        ax.scatter([r[mx] for r in front], [r[my] for r in front], s=46, c="C3", zorder=3,
                   label=f"Pareto front ({len(front)})")
        # the boundary of the dominated region (vertical first when x is maximised)
        ax.step([r[mx] for r in front], [r[my] for r in front],
                where="pre" if ox == "max" else "post", c="C3", lw=1.2, alpha=0.8)
        if label_key:  # one line per parameter, towards the inside of the axes
            xs = [r[mx] for r, _ in usable]
            mid = (min(xs) + max(xs)) / 2 if xs else 0.0
            for r in front:
                right = r[mx] > mid
                ax.annotate(str(r.get(label_key, "")).replace(" ", "\n"), (r[mx], r[my]),
                            fontsize=7, xytext=(-6 if right else 6, -4), textcoords="offset points",
                            ha="right" if right else "left", va="top")
    if reference:
        ax.scatter([reference[mx]], [reference[my]], marker="*", s=180, c="C0", zorder=4,
                   label=reference_label)
    ax.set_xlabel(f"{mx} ({'higher' if ox == 'max' else 'lower'} is better)")
    ax.set_ylabel(f"{my} ({'higher' if oy == 'max' else 'lower'} is better)")
    if title:
        ax.set_title(title)
    ax.margins(x=0.12, y=0.12)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, Path(path))
