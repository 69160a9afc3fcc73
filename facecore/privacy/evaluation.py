r"""Privacy evaluation: does a perturbation hide gender from *unseen* classifiers while
*unseen* matchers still match the face?

Inputs are grayscale test faces ``X`` ``[N, 1, S, S]`` in [0, 1] with ``gender`` (0 male,
1 female) and ``identity`` labels, and perturbed versions ``X'`` of the same faces
(``variants``: e.g. ``{"original": X, "sm": ..., "nt": ..., "op": ..., "blur_4": ...}``).
Evaluators are callables on such images: gender classifiers return the logit of P(female)
``[N]`` (or, flagged ``probability=True``, P(female)); matchers return descriptors
``[N, D]`` compared by cosine similarity (or negative Euclidean distance, ``metric=``).

Figures per variant (:func:`evaluate_variants`):

* ``l1``: mean ``|X - X'|`` over pixels and images (reconstruction error);
* per gender classifier: ``accuracy`` (threshold 0.5 on P(female)) against the *true*
  gender, ``auc`` (ROC AUC of P(female) against the true gender; < 0.5 = flipped),
  ``p_female_male`` / ``p_female_female`` (mean P(female) of true men / women);
* per matcher, two protocols (every pair ``(original a, perturbed b)``):

  - ``same_photo``: genuine pairs ``(X_i, X'_i)``; impostors ``(X_i, X'_j)``,
    ``identity_i != identity_j`` (the issue's "verified each blurred photo against its
    original"; for ``original`` itself every genuine score is 1);
  - ``cross_photo``: genuine pairs ``(X_a, X'_b)`` of *different* photos of one person
    (``a != b``), impostors as above; the gallery / probe index sets restrict ``a`` / ``b``
    (London faces: smiling originals against perturbed neutral photos). This is the
    protocol whose ``original`` row is the utility reference.

  each with ``auc``, ``eer``, ``tar@far=1e-2``, ``tar@far=1e-3`` and the pair counts
  (:mod:`facecore.metrics.verification` rules).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from facecore.metrics.binary import roc_auc
from facecore.metrics.verification import (
    equal_error_rate,
    roc_curve,
    tar_at_far,
    verification_auc,
)

__all__ = [
    "Evaluator",
    "PrivacyResult",
    "equal_utility",
    "evaluate_variants",
    "gender_metrics",
    "pair_scores",
    "roc_on_grid",
    "verification_metrics",
]

FARS = (1e-2, 1e-3)


@dataclass
class Evaluator:
    """A named gender classifier (``kind="gender"``) or matcher (``kind="matcher"``).

    ``fn`` maps grayscale ``[n, 1, S, S]`` images in [0, 1] to logits ``[n]`` (or P(female)
    when ``probability``) / descriptors ``[n, D]``; ``metric`` is ``'cosine'`` or
    ``'euclidean'`` for matchers; ``role`` is ``'auxiliary'`` (in the SAN loss),
    ``'unseen'`` (never in the loss) or ``'third_party'``; ``batch_size`` bounds memory.
    """

    name: str
    kind: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    role: str = "unseen"
    probability: bool = False
    metric: str = "cosine"
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.kind not in ("gender", "matcher"):
            raise ValueError(f"Evaluator {self.name!r}: kind must be 'gender' or 'matcher', got {self.kind!r}")
        if self.metric not in ("cosine", "euclidean"):
            raise ValueError(f"Evaluator {self.name!r}: metric must be 'cosine' or 'euclidean', got {self.metric!r}")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(0, images.shape[0], self.batch_size):
            outs.append(self.fn(images[i : i + self.batch_size]).detach().float().cpu())
        out = torch.cat(outs)
        if self.kind == "gender":
            out = out.reshape(-1)
            return out if self.probability else torch.sigmoid(out)
        return out


def gender_metrics(p_female: torch.Tensor, gender: torch.Tensor) -> dict[str, float]:
    """``accuracy`` (P(female) > 0.5 against ``gender``), ``auc``, mean P(female) per sex."""
    p = torch.as_tensor(p_female).double().reshape(-1)
    g = torch.as_tensor(gender).reshape(-1).long()
    if p.numel() != g.numel():
        raise ValueError(f"p_female and gender must have the same length, got {p.numel()} and {g.numel()}")
    out = {"accuracy": float(((p > 0.5).long() == g).double().mean())}
    both = bool((g == 0).any()) and bool((g == 1).any())
    out["auc"] = roc_auc(p, g) if both else float("nan")
    out["p_female_male"] = float(p[g == 0].mean()) if bool((g == 0).any()) else float("nan")
    out["p_female_female"] = float(p[g == 1].mean()) if bool((g == 1).any()) else float("nan")
    return out


def _similarity(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    a, b = a.double(), b.double()
    if metric == "cosine":
        a = torch.nn.functional.normalize(a, dim=1)
        b = torch.nn.functional.normalize(b, dim=1)
        return a @ b.T
    return -torch.cdist(a, b)


def pair_scores(
    emb_original: torch.Tensor,
    emb_perturbed: torch.Tensor,
    identity: torch.Tensor,
    protocol: str,
    *,
    metric: str = "cosine",
    gallery: Sequence[int] | None = None,
    probe: Sequence[int] | None = None,
    max_impostors: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, same)`` of the protocol's pairs (module docstring): rows are originals
    (``gallery``), columns perturbed images (``probe``); ``same_photo`` uses every image.
    ``max_impostors`` keeps every genuine pair and a random subset (fixed by ``seed``; the
    same subset for every variant of one evaluation) of that many impostor pairs."""
    ident = torch.as_tensor(identity).reshape(-1).long()
    n = ident.numel()
    if emb_original.shape[0] != n or emb_perturbed.shape[0] != n:
        raise ValueError("descriptors and identity must have one row per image")
    if protocol == "same_photo":
        s = _similarity(emb_original, emb_perturbed, metric)
        same_id = ident[:, None] == ident[None, :]
        eye = torch.eye(n, dtype=torch.bool)
        keep = eye | ~same_id
        return _subsample(s[keep], eye[keep], max_impostors, seed)
    if protocol != "cross_photo":
        raise ValueError(f"protocol must be 'same_photo' or 'cross_photo', got {protocol!r}")
    ga = torch.arange(n) if gallery is None else torch.as_tensor(list(gallery), dtype=torch.long)
    pr = torch.arange(n) if probe is None else torch.as_tensor(list(probe), dtype=torch.long)
    s = _similarity(emb_original[ga], emb_perturbed[pr], metric)
    same = ident[ga][:, None] == ident[pr][None, :]
    keep = ga[:, None] != pr[None, :]
    return _subsample(s[keep], same[keep], max_impostors, seed)


def _subsample(s: torch.Tensor, same: torch.Tensor, max_impostors: int | None, seed: int):
    n_imp = int((~same).sum())
    if max_impostors is None or n_imp <= max_impostors:
        return s, same
    imp = torch.nonzero(~same).squeeze(1)
    pick = imp[torch.randperm(n_imp, generator=torch.Generator().manual_seed(seed))[:max_impostors]]
    idx = torch.cat([torch.nonzero(same).squeeze(1), pick.sort().values])
    return s[idx], same[idx]


#: FPR grid of the stored ROC curves: 0 and 200 log-spaced points from 1e-4 to 1.
ROC_GRID = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-4, 0, 200, dtype=torch.float64)])


def roc_on_grid(scores: torch.Tensor, same: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ROC_GRID, tpr)``: the best TPR of an operating point with ``FPR <= f`` for each
    ``f`` of :data:`ROC_GRID` (the ROC's step function, compact for plots)."""
    r = roc_curve(scores, same)
    idx = torch.searchsorted(r.fpr, ROC_GRID, right=True) - 1
    return ROC_GRID.clone(), r.tpr[idx.clamp(min=0)]


def verification_metrics(scores: torch.Tensor, same: torch.Tensor) -> dict[str, float]:
    """``auc``, ``eer``, ``tar@far=1e-2``, ``tar@far=1e-3``, ``genuine``, ``impostor``."""
    tar = tar_at_far(scores, same, list(FARS))
    out = {
        "auc": verification_auc(scores, same),
        "eer": equal_error_rate(scores, same).eer,
    }
    for far, t in zip(FARS, tar.tar.tolist()):
        out[f"tar@far={far:g}"] = float(t)
    out["genuine"] = int(same.sum())
    out["impostor"] = int((~same).sum())
    return out


@dataclass
class PrivacyResult:
    """``table``: JSON-able figures ``{variant: {"l1", "gender": {evaluator: {...}},
    "match": {evaluator: {protocol: {...}}}}}``; ``p_female``: ``{evaluator: {variant:
    [N]}}``; ``roc``: ``{evaluator: {protocol: {variant: (fpr, tpr)}}}`` (for the plots);
    ``evaluators``: name -> role."""

    table: dict[str, Any]
    p_female: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    roc: dict[str, dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]] = field(default_factory=dict)
    evaluators: dict[str, str] = field(default_factory=dict)


def evaluate_variants(
    original: torch.Tensor,
    variants: dict[str, torch.Tensor],
    gender: torch.Tensor,
    identity: torch.Tensor,
    evaluators: Sequence[Evaluator],
    *,
    gallery: Sequence[int] | None = None,
    probe: Sequence[int] | None = None,
    protocols: Sequence[str] = ("same_photo", "cross_photo"),
    max_impostors: int | None = 200_000,
) -> PrivacyResult:
    """Figures for every variant (see the module docstring). ``variants`` should include
    ``"original": original`` for the reference row. ``max_impostors``: impostor pairs per
    protocol are subsampled to this many (the same pairs for every variant; ``None``: all)."""
    if original.dim() != 4:
        raise ValueError("original must be [N, C, S, S]")
    n = original.shape[0]
    g = torch.as_tensor(gender).reshape(-1).long()
    ident = torch.as_tensor(identity).reshape(-1).long()
    if g.numel() != n or ident.numel() != n:
        raise ValueError("gender and identity must have one entry per image")
    names = [e.name for e in evaluators]
    if len(set(names)) != len(names):
        raise ValueError(f"evaluator names must be unique, got {names}")
    result = PrivacyResult(table={}, evaluators={e.name: e.role for e in evaluators})
    ref = {e.name: e(original) for e in evaluators if e.kind == "matcher"}
    for vname, x in variants.items():
        if x.shape != original.shape:
            raise ValueError(f"variant {vname!r} has shape {list(x.shape)}, expected {list(original.shape)}")
        row: dict[str, Any] = {"l1": float((x.double() - original.double()).abs().mean())}
        row["gender"], row["match"] = {}, {}
        for e in evaluators:
            if e.kind == "gender":
                p = e(x)
                result.p_female.setdefault(e.name, {})[vname] = p
                row["gender"][e.name] = gender_metrics(p, g)
            else:
                emb = e(x)
                row["match"][e.name] = {}
                for protocol in protocols:
                    s, same = pair_scores(ref[e.name], emb, ident, protocol, metric=e.metric,
                                          gallery=gallery, probe=probe, max_impostors=max_impostors)
                    row["match"][e.name][protocol] = verification_metrics(s, same)
                    result.roc.setdefault(e.name, {}).setdefault(protocol, {})[vname] = roc_on_grid(s, same)
        result.table[vname] = row
    return result


def equal_utility(
    utilities: Sequence[float], privacies: Sequence[float], target: float
) -> float | None:
    """Linear interpolation of ``privacy`` at ``utility = target`` along a sweep of an
    anonymizer's strengths (``utilities[i]``, ``privacies[i]`` at strength ``i``, in sweep
    order). The first segment that brackets ``target`` is used; ``None`` when no strength of
    the sweep reaches it (the sweep's utilities all lie above or all below)."""
    u = [float(v) for v in utilities]
    p = [float(v) for v in privacies]
    if len(u) != len(p) or not u:
        raise ValueError("utilities and privacies must be non-empty and of equal length")
    for i in range(len(u)):
        if u[i] == target:
            return p[i]
        if i + 1 < len(u) and (u[i] - target) * (u[i + 1] - target) < 0:
            t = (target - u[i]) / (u[i + 1] - u[i])
            return p[i] + t * (p[i + 1] - p[i])
    return None
