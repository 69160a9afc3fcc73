"""Learned-space comparison: the same :class:`~facecore.models.FaceEmbedder` trained with
softmax (cross-entropy over identities), contrastive and triplet losses on the same data,
and on a deliberately biased subset (one group over-represented), compared by retrieval
and clustering quality on held-out people, overall and per group, with projections side
by side.

Objectives: the training task's :class:`~facecore.train.tasks.embedding.EmbeddingObjective`
built from :class:`~facecore.train.tasks.embedding.MetricOptions` (:func:`space_metric_options`),
i.e. the same loss construction as ``facecore train --set metric.loss=...``: ``softmax`` =
:class:`facecore.losses.SoftmaxLoss`; ``contrastive`` = :class:`facecore.losses.ContrastiveLoss`
(``pos_margin=0``, ``neg_margin`` 1.0 here, PML's default), ``triplet`` =
:class:`facecore.losses.TripletMarginLoss` (``triplet_margin`` 0.2) with the batch-hard
miner: the fused C++ losses facecore trains with. Every objective sees the same P x K
batches (:class:`facecore.data.PKSampler`, same seed), the same optimiser (Adam, cosine
schedule) and the same number of steps.

Why :func:`train_embedder` is a light single-process loop and not :func:`facecore.train.fit`:
the comparison trains on *exact identity sets* (held-out people stratified by group; a
biased and a balanced training set with the same number of people) that a training
config's seeded ``fractions`` do not express, and six trainings must fit in a test. The
objective, the model and the sampler are training's own; only the loop is short. For full
runs of the same objectives use ``facecore train --set metric.loss=softmax`` (or
``contrastive`` / ``triplet``) and analyse the results with ``facecore analyze
embeddings | groups``.

Evaluation (:func:`compare_spaces`): the people are split once into training and held-out
identities (stratified by group); the biased setting draws ``bias_fraction`` of its
training identities from ``bias_group`` (all that group has, the rest from the others),
the balanced setting the same number evenly from every group, so the two differ in
composition only. Held-out embeddings
are scored with :func:`facecore.metrics.retrieval_metrics` (precision@1, R-precision,
MAP@R, NMI, AMI; every held-out image a query against the others), on all of them and
within each group. Precision@1, R-precision and MAP@R are means over queries; their 95%
intervals resample the held-out *people* (an identity bootstrap of the per-query values
of :func:`facecore.metrics.retrieval_per_query`, the gallery fixed). NMI / AMI depend on a
clustering of all queries at once and have no interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from facecore.analysis.data import dataset_labels, swap_transform
from facecore.analysis.embeddings import Embeddings, extract_embeddings

__all__ = [
    "SPACE_LOSSES",
    "SpaceComparison",
    "balanced_identities",
    "biased_identities",
    "SPACE_METRIC_DEFAULTS",
    "compare_spaces",
    "space_metric_options",
    "train_embedder",
]

#: Objectives compared (``metric.loss`` names of the training task's embedding objective).
SPACE_LOSSES = ("softmax", "contrastive", "triplet")

#: The comparison's settings of the training task's metric options (PML's contrastive
#: margin; batch-hard triplets); anything else is :class:`MetricOptions`' default.
SPACE_METRIC_DEFAULTS: dict[str, Any] = {"neg_margin": 1.0, "triplet_margin": 0.2,
                                         "miner": "batch_hard"}


def space_metric_options(loss: str, **overrides: Any) -> Any:
    """The :class:`~facecore.train.tasks.embedding.MetricOptions` of objective ``loss``
    (one of :data:`SPACE_LOSSES`) with :data:`SPACE_METRIC_DEFAULTS` and ``overrides``
    (e.g. ``neg_margin=0.5``)."""
    from facecore.train.tasks.embedding import MetricOptions

    if loss not in SPACE_LOSSES:
        raise ValueError(f"loss must be one of {list(SPACE_LOSSES)}, got {loss!r}")
    return MetricOptions(loss=loss, **{**SPACE_METRIC_DEFAULTS, **overrides})


def train_embedder(
    dataset: Dataset,
    loss: str,
    *,
    preprocess: Any,
    indices: np.ndarray | None = None,
    backbone: str = "small_cnn",
    width: int | None = None,
    embedding_dim: int = 64,
    steps: int = 300,
    p: int = 16,
    k: int = 4,
    lr: float = 2e-3,
    metric: dict[str, Any] | None = None,
    seed: int = 0,
    augment: bool = True,
) -> nn.Module:
    """Train a :class:`~facecore.models.FaceEmbedder` on the ``identity`` labels of
    ``dataset`` (rows ``indices``) with objective ``loss`` (the training task's
    :class:`~facecore.train.tasks.embedding.EmbeddingObjective`, options
    :func:`space_metric_options` ``(loss, **metric)``) for ``steps`` P x K batches (P at
    most the number of identities); returned in eval mode."""
    from facecore.data import PKSampler
    from facecore.models import FaceEmbedder
    from facecore.train.tasks.embedding import EmbeddingObjective

    labels, _ = dataset_labels(dataset)
    if "identity" not in labels:
        raise ValueError("train_embedder needs a dataset with identity labels")
    idx = np.arange(len(labels["identity"])) if indices is None else np.asarray(indices)
    ids = labels["identity"][idx]
    uniq, local = np.unique(ids, return_inverse=True)
    torch.manual_seed(seed)
    model = FaceEmbedder(backbone, embedding_dim, width=width)
    objective = EmbeddingObjective(model, space_metric_options(loss, **(metric or {})), len(uniq))
    params = [q for q in objective.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    if len(uniq) < 2:
        raise ValueError(f"train_embedder needs at least 2 identities, got {len(uniq)}")
    sampler = PKSampler(local, min(p, len(uniq)), k, seed=seed, batches_per_epoch=steps)
    tf = preprocess.train_transform() if augment else preprocess.eval_transform()
    lut = torch.full((int(ids.max()) + 1,), -1, dtype=torch.long)
    lut[torch.as_tensor(uniq)] = torch.arange(len(uniq))
    with swap_transform(dataset, tf):
        loader = DataLoader(Subset(dataset, idx.tolist()), batch_sampler=sampler)
        objective.train()
        for step, (images, target) in enumerate(loader):
            if step >= steps:
                break
            y = lut[torch.as_tensor(target["identity"])]
            out = objective(images, y)[0]
            opt.zero_grad(set_to_none=True)
            out.backward()
            opt.step()
            sched.step()
    return model.eval()


def biased_identities(
    identity: np.ndarray,
    group: np.ndarray,
    candidates: np.ndarray,
    *,
    bias_group: int,
    bias_fraction: float,
    seed: int = 0,
) -> np.ndarray:
    """Of the identities ``candidates``, as many as there are, with ``bias_fraction`` of
    them from group ``bias_group`` (as far as it has enough) and the rest from the others."""
    if not 0.0 < bias_fraction < 1.0:
        raise ValueError(f"bias_fraction must be in (0, 1), got {bias_fraction!r}")
    gid = {int(i): int(g) for i, g in zip(identity, group)}
    cands = np.asarray(candidates)
    rng = np.random.default_rng(seed)
    mine = rng.permutation([c for c in cands if gid[int(c)] == bias_group])
    rest = rng.permutation([c for c in cands if gid[int(c)] != bias_group])
    n = len(cands)
    n_mine = min(len(mine), int(round(bias_fraction * n)))
    n_rest = min(len(rest), n - n_mine)
    if n_mine < round(bias_fraction * n):
        # not enough of the group: keep the fraction by using fewer identities overall
        n_rest = min(n_rest, int(round(n_mine * (1 - bias_fraction) / bias_fraction)))
    return np.sort(np.concatenate([mine[:n_mine], rest[:n_rest]]).astype(np.int64))


def balanced_identities(
    identity: np.ndarray, group: np.ndarray, candidates: np.ndarray, n: int, *, seed: int = 0
) -> np.ndarray:
    """``n`` of the identities ``candidates``, as evenly spread over the groups as they allow."""
    gid = {int(i): int(g) for i, g in zip(identity, group)}
    rng = np.random.default_rng(seed + 1)
    pools = {}
    for c in np.asarray(candidates).tolist():
        pools.setdefault(gid[int(c)], []).append(int(c))
    pools = {g: list(rng.permutation(v)) for g, v in sorted(pools.items())}
    chosen: list[int] = []
    while len(chosen) < min(n, len(candidates)):
        for g in pools:
            if pools[g] and len(chosen) < n:
                chosen.append(pools[g].pop())
    return np.sort(np.asarray(chosen, dtype=np.int64))


@dataclass
class SpaceComparison:
    """``rows``: ``{"setting", "loss", "group", "metrics": {...}, "n"}`` (``group="all"`` and
    one row per group); ``figures``: written PNGs; ``embeddings``: held-out embeddings per
    (setting, loss)."""

    rows: list[dict[str, Any]]
    group: str
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    embeddings: dict[tuple[str, str], Embeddings] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "rows": self.rows, "figures": self.figures, "meta": self.meta}

    def to_markdown(self) -> str:
        from facecore.metrics.retrieval import RETRIEVAL_METRICS

        short = {"precision_at_1": "P@1", "r_precision": "R-prec", "mean_average_precision_at_r": "MAP@R",
                 "NMI": "NMI", "AMI": "AMI"}
        lines = ["| setting | loss | " + f"{self.group} | n | " + " | ".join(short[m] for m in RETRIEVAL_METRICS) + " |",
                 "|---|---|---|---|" + "---|" * len(RETRIEVAL_METRICS)]
        for r in self.rows:
            cells = []
            for m in RETRIEVAL_METRICS:
                iv = r.get("intervals", {}).get(m)
                if iv is not None and np.isfinite(iv["low"]):
                    cells.append(f"{r['metrics'][m]:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]")
                else:
                    cells.append(f"{r['metrics'][m]:.3f}")
            lines.append(f"| {r['setting']} | {r['loss']} | {r['group']} | {r['n']} | "
                         + " | ".join(cells) + " |")
        lines += ["", "P@1, R-precision, MAP@R: 95% identity-bootstrap intervals over the held-out "
                      "people (queries resampled by person); NMI / AMI: no interval"]
        return "\n".join(lines)


def _split_identities(identity, group, test_fraction, seed):
    rng = np.random.default_rng(seed)
    per = {}
    for i, g in zip(identity, group):
        per.setdefault(int(g), set()).add(int(i))
    train, test = [], []
    for g in sorted(per):
        ids = rng.permutation(sorted(per[g]))
        n_test = max(1, int(round(test_fraction * len(ids))))
        test += ids[:n_test].tolist()
        train += ids[n_test:].tolist()
    return np.array(sorted(train)), np.array(sorted(test))


def compare_spaces(
    dataset: Dataset,
    *,
    preprocess: Any,
    group: str = "race",
    losses: tuple[str, ...] = SPACE_LOSSES,
    bias_group: int | None = 0,
    bias_fraction: float = 0.8,
    test_fraction: float = 0.3,
    out_dir: str | Path | None = None,
    seed: int = 0,
    perplexity: float = 30.0,
    n_boot: int = 1000,
    **train_options: Any,
) -> SpaceComparison:
    """Train one embedder per (setting, loss) and compare the held-out spaces (see the
    module doc). ``bias_group=None`` runs the balanced setting only. ``train_options`` go
    to :func:`train_embedder` (``steps``, ``p``, ``k``, ``embedding_dim``, ...)."""
    from facecore.analysis.stats import mean_estimate
    from facecore.metrics.retrieval import retrieval_metrics, retrieval_per_query

    labels, names = dataset_labels(dataset)
    if "identity" not in labels:
        raise ValueError("compare_spaces needs identity labels")
    ident = labels["identity"]
    grp = labels[group] if group in labels else np.zeros_like(ident)
    gnames = names.get(group) or [str(v) for v in range(int(grp.max()) + 1)]
    train_ids, test_ids = _split_identities(ident, grp, test_fraction, seed)
    settings = {"balanced": train_ids}
    if bias_group is not None:
        biased = biased_identities(
            ident, grp, train_ids, bias_group=bias_group, bias_fraction=bias_fraction, seed=seed
        )
        # the same number of training identities in both settings, so they differ only in
        # who is in them: as many from every group in the balanced one
        settings["balanced"] = balanced_identities(ident, grp, train_ids, len(biased), seed=seed)
        settings[f"biased ({gnames[bias_group]} {bias_fraction:.0%})"] = biased
    test_idx = np.nonzero(np.isin(ident, test_ids))[0]
    rows, panels, embs = [], [], {}
    meta: dict[str, Any] = {"seed": seed, "test_identities": len(test_ids), "test_images": len(test_idx),
                            "train_options": {k: v for k, v in train_options.items()},
                            "settings": {}}
    for setting, ids in settings.items():
        tr_idx = np.nonzero(np.isin(ident, ids))[0]
        gid_counts = {gnames[int(g)]: int(len(np.unique(ident[tr_idx][grp[tr_idx] == g])))
                      for g in np.unique(grp)}
        meta["settings"][setting] = {"train_identities": len(ids), "train_images": len(tr_idx),
                                     "identities_per_group": gid_counts}
        row_panels = []
        for loss in losses:
            model = train_embedder(dataset, loss, preprocess=preprocess, indices=tr_idx, seed=seed,
                                   **train_options)
            e = extract_embeddings(model, Subset(dataset, test_idx.tolist()), preprocess=preprocess)
            embs[(setting, loss)] = e
            for gv in [None, *np.unique(grp[test_idx]).tolist()]:
                m = np.ones(len(e), bool) if gv is None else e.labels[group] == gv if group in e.labels else None
                if m is None or m.sum() < 3:
                    continue
                met = retrieval_metrics(e.features[m], e.labels["identity"][m], seed=seed)
                per_query, who = retrieval_per_query(e.features[m], e.labels["identity"][m])
                intervals = {
                    k: mean_estimate(v.numpy(), clusters=who.numpy(), seed=seed,
                                     n_boot=n_boot).to_dict()
                    for k, v in per_query.items()
                }
                rows.append({"setting": setting, "loss": loss,
                             "group": "all" if gv is None else gnames[int(gv)],
                             "n": int(m.sum()), "metrics": met, "intervals": intervals})
            row_panels.append((setting, loss, e))
        panels.append(row_panels)
    result = SpaceComparison(rows, group, meta, [], embs)
    if out_dir is not None:
        result.figures = _space_figures(panels, Path(out_dir), group, gnames, perplexity, seed)
    return result


def _space_figures(panels, out: Path, group: str, gnames: list[str], perplexity: float,
                   seed: int) -> list[str]:
    from facecore.analysis.plots import scatter_grid
    from facecore.analysis.projection import project

    grid_g, grid_i = [], []
    for row in panels:
        rg, ri = [], []
        for setting, loss, e in row:
            proj = project(e.features, method="tsne", perplexity=perplexity, seed=seed)
            title = f"{loss} / {setting}"
            if group in e.labels:
                rg.append({"coords": proj.coords, "values": e.labels[group], "names": gnames, "title": title})
            ri.append({"coords": proj.coords, "values": e.labels["identity"], "names": None, "title": title})
        grid_g.append(rg)
        grid_i.append(ri)
    files = []
    note = f"t-SNE (perplexity {perplexity:g}, seed {seed}) of held-out identities"
    if grid_g and grid_g[0]:
        files.append(str(scatter_grid(grid_g, out / f"spaces_tsne_{group}.png",
                                      title=f"learned spaces, colour = {group}", note=note)))
    files.append(str(scatter_grid(grid_i, out / "spaces_tsne_identity.png",
                                  title="learned spaces, colour = identity", note=note)))
    return files
