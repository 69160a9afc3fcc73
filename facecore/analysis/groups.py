"""Per-group report of a trained model: its task's metrics broken down by a group
attribute, with the gap between the best and the worst group (the kind of table
InsightFace publishes per race).

* gender / binary models: ``accuracy`` of the served label (95% interval), ``auc`` of the
  calibrated probability (where a group has both classes);
* age models: ``mae`` of the predicted label and ``mae_expected`` of the expected rank, in
  years when the model records an age offset and the dataset has ``age_years``, else in
  classes against the dataset's ``age`` labels;
* embedders: verification over the pairs *within* each group: ``tar_at_far`` (at ``far``,
  the group's own threshold) and ``eer`` of cosine similarities (pair-bootstrap intervals),
  ``auc``; and at **one global threshold** (the one reaching ``far`` on all pairs, as a
  deployed system would use) each group's false match rate ``fmr_global`` and false
  non-match rate ``fnmr_global``, the NIST FRVT view of demographic differentials. Pair
  intervals come from the identity (subsets) bootstrap: pairs share images and people, so
  people, not pairs, are resampled.

:func:`model_outputs` runs the model once over the dataset (any model source of
:func:`facecore.analysis.load_analysis_model`); :func:`group_report` then scores any group
attribute of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from facecore.analysis.data import dataset_labels, swap_transform
from facecore.analysis.embeddings import load_analysis_model
from facecore.analysis.scoring import (
    accuracy_estimate,
    mae_estimate,
    pair_scores,
    rate_at_threshold,
    verification_estimates,
)
from facecore.analysis.stats import Estimate

__all__ = ["GroupReport", "ModelOutputs", "group_report", "model_outputs"]


@dataclass
class ModelOutputs:
    """A model's served outputs on a dataset (``{key: array [N, ...]}``), the dataset's
    labels and value names, and what the model is."""

    task: str
    outputs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    label_names: dict[str, list[str]]
    info: dict[str, Any] = field(default_factory=dict)


def model_outputs(
    model: Any, dataset: Dataset, *, preprocess: Any = None, batch_size: int = 64
) -> ModelOutputs:
    """Run ``model.serve`` (eval mode, no gradients) over ``dataset``."""
    loaded = load_analysis_model(model, preprocess=preprocess)
    m = loaded.model.eval()
    labels, names = dataset_labels(dataset)
    parts: dict[str, list[torch.Tensor]] = {}
    with swap_transform(dataset, loaded.preprocess.eval_transform()), torch.no_grad():
        for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            for k, v in m.serve(images).items():
                parts.setdefault(k, []).append(v.detach().cpu())
    outputs = {k: torch.cat(v).numpy() for k, v in parts.items()}
    info = dict(loaded.info)
    info.update(source=loaded.source, source_kind=loaded.kind, config=getattr(m, "config", None))
    return ModelOutputs(loaded.task, outputs, labels, names, info)


@dataclass
class GroupReport:
    """``rows``: one per group (plus ``all``) with ``n`` and the metrics (Estimates);
    ``primary``: the metric the gap is computed on; :meth:`best_worst` also says whether the
    best and worst groups' intervals are disjoint."""

    task: str
    group: str
    primary: str
    higher_is_better: bool
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def _groups(self) -> list[dict[str, Any]]:
        return [
            r for r in self.rows
            if r["group"] != "all" and np.isfinite(r["metrics"][self.primary].value)
        ]

    def best_worst(self) -> dict[str, Any]:
        rows = self._groups()
        if not rows:
            return {}
        key = lambda r: r["metrics"][self.primary].value  # noqa: E731
        best = max(rows, key=key) if self.higher_is_better else min(rows, key=key)
        worst = min(rows, key=key) if self.higher_is_better else max(rows, key=key)
        b, w = best["metrics"][self.primary], worst["metrics"][self.primary]
        separated = b.low > w.high if self.higher_is_better else b.high < w.low
        return {"best": best["group"], "best_value": key(best), "worst": worst["group"],
                "worst_value": key(worst), "gap": abs(key(best) - key(worst)),
                "intervals_disjoint": bool(separated)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "group": self.group,
            "primary_metric": self.primary,
            "higher_is_better": self.higher_is_better,
            "rows": [
                {"group": r["group"], "n": r["n"], **{k: (v.to_dict() if isinstance(v, Estimate) else v)
                                                       for k, v in r["metrics"].items()}}
                for r in self.rows
            ],
            "best_worst": self.best_worst(),
            "meta": self.meta,
        }

    def to_markdown(self) -> str:
        keys = list(self.rows[0]["metrics"])
        lines = [f"{self.task} model, metrics per {self.group} (95% CI)", "",
                 f"| {self.group} | n | " + " | ".join(keys) + " |",
                 "|---|---|" + "---|" * len(keys)]
        for r in self.rows:
            cells = []
            for k in keys:
                v = r["metrics"][k]
                cells.append(v.fmt() if isinstance(v, Estimate) else (f"{v:.3f}" if isinstance(v, float) else str(v)))
            name = f"**{r['group']}**" if r["group"] == "all" else r["group"]
            lines.append(f"| {name} | {r['n']} | " + " | ".join(cells) + " |")
        bw = self.best_worst()
        if bw:
            verdict = ("95% intervals disjoint" if bw["intervals_disjoint"]
                       else "95% intervals overlap: not a clear difference")
            lines += ["", f"{self.primary}: best {bw['best']} ({bw['best_value']:.3f}), worst "
                          f"{bw['worst']} ({bw['worst_value']:.3f}), gap {bw['gap']:.3f} ({verdict})"]
        return "\n".join(lines)


def _auc(prob: np.ndarray, y: np.ndarray) -> float:
    from facecore.metrics import roc_auc

    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc(torch.as_tensor(prob), torch.as_tensor(y)))


def group_report(
    out: ModelOutputs,
    group: str,
    *,
    target: str | None = None,
    far: float = 0.01,
    confidence: float = 0.95,
    min_group_size: int = 1,
    seed: int = 0,
    n_boot: int = 200,
) -> GroupReport:
    """The task's metrics of ``out`` per value of label ``group`` (see the module doc).
    ``target``: the label scored against (default: ``gender`` / the binary attribute,
    ``age`` (or ``age_years``), ``identity``)."""
    if group not in out.labels:
        raise KeyError(f"no label {group!r} to group by; the dataset has {sorted(out.labels)}")
    g = out.labels[group]
    names = out.label_names.get(group) or [str(v) for v in range(int(g.max()) + 1)]
    ident = out.labels.get("identity")
    task = out.task
    meta: dict[str, Any] = {"source": out.info.get("source"), "confidence": confidence,
                            "min_group_size": min_group_size}
    if task in ("gender", "binary"):
        target = target or (out.info.get("config") or {}).get("attribute", "gender")
        primary, better = "accuracy", True
    elif task == "age":
        offset = out.info.get("age_offset")
        if target is None:
            target = "age_years" if offset is not None and "age_years" in out.labels else "age"
        primary, better = "mae", False
        meta["age_unit"] = "years" if target == "age_years" else "classes"
    elif task == "embedding":
        target = target or "identity"
        primary, better = "tar_at_far", True
        meta["far"] = far
    else:
        raise ValueError(f"cannot report on a model with task {task!r}")
    if target not in out.labels:
        raise KeyError(f"the dataset has no {target!r} labels to score a {task} model against")
    y = out.labels[target]
    meta["target"] = target
    global_thr = None
    if task == "embedding":
        from facecore.metrics import tar_at_far

        s_all, same_all = pair_scores(out.outputs["embedding"], y, seed=seed)
        if same_all.any() and (~same_all).any():
            global_thr = float(tar_at_far(torch.as_tensor(s_all), torch.as_tensor(same_all), far).threshold)
        meta["global_threshold"] = global_thr

    def metrics(mask: np.ndarray) -> dict[str, Any]:
        cl = None if ident is None else ident[mask]
        kw = {"clusters": cl, "confidence": confidence, "seed": seed}
        if task in ("gender", "binary"):
            return {
                "accuracy": accuracy_estimate(out.outputs["label"][mask], y[mask], **kw),
                "auc": _auc(out.outputs["prob"][mask], y[mask]),
            }
        if task == "age":
            shift = float(out.info.get("age_offset") or 0.0) if target == "age_years" else 0.0
            return {
                "mae": mae_estimate(out.outputs["label"][mask] + shift, y[mask], **kw),
                "mae_expected": mae_estimate(out.outputs["expected"][mask] + shift, y[mask], **kw),
            }
        s, same, i, j = pair_scores(out.outputs["embedding"][mask], y[mask], seed=seed,
                                    return_index=True)
        pid = (y[mask][i], y[mask][j])  # the people of each pair: the bootstrap's units
        kw = {"pair_identities": pid, "confidence": confidence, "seed": seed, "n_boot": n_boot}
        est = verification_estimates(s, same, far=far, **kw)
        auc = _auc(s, same.astype(np.int64)) if len(s) else float("nan")
        res = {"tar_at_far": est["tar_at_far"], "eer": est["eer"], "auc": auc}
        if global_thr is not None:
            res["fmr_global"] = rate_at_threshold(s, same, global_thr, genuine=False, **kw)
            res["fnmr_global"] = rate_at_threshold(s, same, global_thr, genuine=True, **kw)
        res.update(genuine_pairs=int(same.sum()), impostor_pairs=int((~same).sum()))
        return res

    rows = []
    for v in np.unique(g):
        mask = g == v
        if mask.sum() < min_group_size:
            continue
        rows.append({"group": names[int(v)] if int(v) < len(names) else str(v),
                     "n": int(mask.sum()), "metrics": metrics(mask)})
    rows.append({"group": "all", "n": int(len(g)), "metrics": metrics(np.ones(len(g), bool))})
    return GroupReport(task=task, group=group, primary=primary, higher_is_better=better,
                       rows=rows, meta=meta)
