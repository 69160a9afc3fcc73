"""Task ``embedding``: face embeddings for verification (a :class:`~facecore.models.FaceEmbedder`).

Loss (``metric.loss``): a pair / triplet loss of :data:`facecore.losses.metric.PAIR_LOSSES`
on the L2-normalised embeddings (``triplet`` with a miner of
:data:`facecore.losses.miners.MINERS`, ``contrastive``), plain softmax
(:data:`facecore.losses.softmax.SOFTMAX_LOSSES`: cross-entropy over the training
identities through a linear classifier, :class:`~facecore.losses.SoftmaxLoss`), or
cross-entropy over a margin-softmax head of :data:`facecore.models.margin.MARGIN_HEADS`;
plus ``center_loss x CenterLoss``. The classifiers (softmax, margin heads) train with the
model and are dropped at export. Pair / triplet losses train on batches of P identities x K
images (:class:`PKSampler`); softmax and the margin heads on shuffled batches of
``data.batch_size`` over every training image.

Splits are **identity-disjoint** (no person in two splits: the open-set, LFW-style
protocol). Metrics: cosine-similarity verification over the image pairs of a split (all
pairs, or ``metric.max_val_pairs`` drawn at random): ``auc``, ``eer``,
``eer_threshold``. A split without a genuine (same identity) or without an impostor pair
is refused with a message naming it. The pair helpers here are meant for every matching
task (e.g. a privacy network's matcher).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

import facecore.metrics as fm
from facecore.data.samplers import PKSampler
from facecore.losses.center import CenterLoss
from facecore.losses.metric import PAIR_LOSSES, ContrastiveLoss, TripletMarginLoss
from facecore.losses.miners import MINERS, miner_by_name
from facecore.losses.softmax import SOFTMAX_LOSSES, SoftmaxLoss
from facecore.models.margin import MARGIN_HEADS
from facecore.train import plots as P
from facecore.train.sections import ConfigError, TrainConfig, choices
from facecore.train.tasks.base import Objective, Task

__all__ = [
    "METRIC_LOSSES",
    "EmbeddingConfig",
    "EmbeddingObjective",
    "EmbeddingTask",
    "MetricOptions",
    "build_metric_loss",
    "require_pairs",
    "verification_metrics",
    "verification_pairs",
]

#: ``metric.loss`` choices: the pair losses, plain softmax, then the margin-softmax heads.
METRIC_LOSSES = (*PAIR_LOSSES, *SOFTMAX_LOSSES, *MARGIN_HEADS)


@dataclass
class MetricOptions:
    """Face-embedding objective. Every margin has its own key (each loss means something
    else by "margin"):

    * ``loss``: one of :data:`METRIC_LOSSES`.
    * ``triplet``: ``triplet_margin`` (the loss margin, in distance units: hinge of
      ``d_ap - d_an + triplet_margin``) with ``miner`` (``batch_hard`` = Hermans et al.;
      ``all | hard | semihard | easy`` = PML's ``TripletMarginMiner`` with its own
      ``miner_margin``).
    * ``contrastive``: positives pulled to distance 0, negatives pushed beyond
      ``neg_margin``.
    * ``softmax``: cross-entropy over the training identities through an unconstrained
      linear classifier on the embedding (no margin, no scale: the classic baseline).
    * ``arcface``: additive angular margin ``arcface_margin`` (radians);
      ``cosface``: additive cosine margin ``cosface_margin``; ``sphereface``: the integer
      angular multiplier ``sphereface_m`` (``cos(m theta)``); all three use the logit
      ``scale``.
    * ``center_loss``: weight of the center loss (0: off). Pair / triplet losses train on
      batches of P identities x K images (``p``, ``k``); softmax and the margin heads on
      shuffled batches of ``data.batch_size``. ``max_val_pairs``: verification pairs drawn per split.
    """

    RENAMED: ClassVar[dict[str, str]] = {
        "margin": "use triplet_margin (triplet loss), miner_margin (TripletMarginMiner), "
        "neg_margin (contrastive), arcface_margin, cosface_margin or sphereface_m",
    }

    loss: str = choices(METRIC_LOSSES, "triplet")
    triplet_margin: float = 0.2
    miner: str = choices(MINERS, "batch_hard")
    miner_margin: float = 0.2
    neg_margin: float = 0.2
    arcface_margin: float = 0.2
    cosface_margin: float = 0.2
    sphereface_m: int = 4
    scale: float = 30.0
    center_loss: float = 0.0
    p: int = 8
    k: int = 4
    max_val_pairs: int = 20000


@dataclass
class EmbeddingConfig(TrainConfig):
    DEFAULT_SCORE: ClassVar[tuple[str, str]] = ("val_eer", "min")

    task: str = "embedding"
    metric: MetricOptions = field(default_factory=MetricOptions)


def build_metric_loss(opts: MetricOptions) -> nn.Module:
    """The fused pair / triplet loss for ``opts`` (``metric.loss`` = triplet or contrastive):
    :class:`~facecore.losses.TripletMarginLoss` (``triplet_margin``) with the miner
    ``miner`` (``miner_margin``), or :class:`~facecore.losses.ContrastiveLoss` with
    ``pos_margin=0, neg_margin=neg_margin``. Both take the model's L2-normalised embeddings
    and use Euclidean distances."""
    if opts.loss == "triplet":
        miner = miner_by_name(opts.miner, opts.miner_margin)
        return TripletMarginLoss(margin=opts.triplet_margin, miner=miner)
    if opts.loss == "contrastive":
        return ContrastiveLoss(pos_margin=0.0, neg_margin=opts.neg_margin)
    raise ValueError(f"metric.loss={opts.loss!r} is not a pair / triplet loss")


def _margin_head(opts: MetricOptions, dim: int, num_identities: int) -> nn.Module:
    margin = {
        "arcface": opts.arcface_margin,
        "cosface": opts.cosface_margin,
        "sphereface": opts.sphereface_m,
    }[opts.loss]
    return MARGIN_HEADS[opts.loss](dim, num_identities, scale=opts.scale, margin=margin)


class EmbeddingObjective(Objective):
    """Pair / triplet loss on the embeddings, plain softmax (``softmax``: a
    :class:`~facecore.losses.SoftmaxLoss` classifier), or cross-entropy over a margin head;
    plus ``center_loss * CenterLoss``. Classifier, head and centres train with the model."""

    def __init__(self, model: nn.Module, opts: MetricOptions, num_identities: int):
        super().__init__(model)
        self.center_weight = opts.center_loss
        dim = int(model.config.get("embedding_dim", 128)) if hasattr(model, "config") else 128
        self.head: nn.Module | None = None
        self.pair_loss: nn.Module | None = None
        self.softmax: SoftmaxLoss | None = None
        if opts.loss in MARGIN_HEADS:
            self.head = _margin_head(opts, dim, num_identities)
        elif opts.loss in SOFTMAX_LOSSES:
            self.softmax = SOFTMAX_LOSSES[opts.loss](dim, num_identities)
        else:
            self.pair_loss = build_metric_loss(opts)
        self.center: nn.Module | None = None
        if self.center_weight > 0:
            self.center = CenterLoss(num_identities, dim)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Any]:
        emb = self.model(images)
        if self.head is not None:
            loss = nn.functional.cross_entropy(self.head(emb, labels), labels)
        elif self.softmax is not None:
            loss = self.softmax(emb, labels)
        else:
            assert self.pair_loss is not None
            loss = self.pair_loss(emb, labels)
        if self.center is not None:
            loss = loss + self.center_weight * self.center(emb, labels)
        return loss, emb


# ------------------------------------------------------------- verification pairs


def require_pairs(split: str, labels: torch.Tensor) -> None:
    """Refuse (``ConfigError``) a split whose images hold no genuine pair (no identity with
    two images) or no impostor pair (one identity): verification metrics need both."""
    ids, counts = torch.unique(torch.as_tensor(labels), return_counts=True)
    n, k = len(labels), len(ids)
    if k < 2:
        raise ConfigError(
            f"the {split} split has no impostor pairs ({n} images of {k} identity): verification "
            "metrics need two identities or more; change data.fractions or data.seed, or use a "
            "larger dataset"
        )
    if int(counts.max()) < 2:
        raise ConfigError(
            f"the {split} split has no genuine pairs (none of its {k} identities has two "
            f"images among its {n} images): verification metrics need same-identity pairs; use "
            "a dataset with several images per identity or a larger data.fractions share"
        )


def verification_pairs(n: int, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(i, j)``, ``i < j``, of every image pair, or ``limit`` of them at random."""
    i, j = torch.triu_indices(n, n, offset=1)
    if i.numel() > limit:
        keep = torch.randperm(i.numel(), generator=torch.Generator().manual_seed(seed))[:limit]
        i, j = i[keep], j[keep]
    return i, j


def _scores(
    embeddings: torch.Tensor, labels: torch.Tensor, limit: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    e = nn.functional.normalize(embeddings.double(), dim=1)
    i, j = verification_pairs(len(labels), limit, seed)
    return (e[i] * e[j]).sum(1), (labels[i] == labels[j]).long()


def verification_metrics(
    embeddings: torch.Tensor, labels: torch.Tensor, split: str, *, limit: int, seed: int
) -> dict[str, float]:
    """``auc``, ``eer``, ``eer_threshold`` of cosine similarity over the split's pairs;
    ``ValueError`` naming the split when the pairs hold only one class."""
    scores, same = _scores(embeddings, labels, limit, seed)
    genuine = int(same.sum())
    if genuine == 0 or genuine == len(same):
        missing = "genuine" if genuine == 0 else "impostor"
        raise ValueError(
            f"the {split} split's {len(same)} verification pairs hold no {missing} pairs: "
            "AUC / EER are undefined (raise metric.max_val_pairs, or change the split)"
        )
    eer = fm.equal_error_rate(scores, same)
    return {"auc": fm.verification_auc(scores, same), "eer": eer.eer, "eer_threshold": eer.threshold}


class EmbeddingTask(Task):
    name = "embedding"
    config_class = EmbeddingConfig
    label_key = "identity"
    split_by = "identity"
    default_config = "embedding_triplet_synthetic"
    progress = (("val_auc", "val AUC {:.3f}"), ("val_eer", "val EER {:.3f}"))

    def validate(self, cfg: EmbeddingConfig) -> None:
        m = cfg.metric
        for key, value, minimum in (("metric.p", m.p, 2), ("metric.k", m.k, 2),
                                    ("metric.sphereface_m", m.sphereface_m, 1),
                                    ("metric.max_val_pairs", m.max_val_pairs, 1)):
            if value < minimum:
                raise ConfigError(f"{key} must be >= {minimum}, got {value}")
        if m.center_loss < 0:
            raise ConfigError(f"metric.center_loss must be >= 0, got {m.center_loss}")

    def describe(self, cfg: EmbeddingConfig) -> str:
        return cfg.metric.loss

    def num_classes(self, cfg: EmbeddingConfig, dataset: Any, targets: torch.Tensor) -> int:
        return int(getattr(dataset, "num_identities", None) or int(targets.max()) + 1)

    def check_split(self, cfg: EmbeddingConfig, split: str, labels: torch.Tensor) -> None:
        require_pairs(split, labels)

    def batch_sampler(self, cfg: EmbeddingConfig, labels: torch.Tensor, rank: int, world_size: int):
        if cfg.metric.loss not in PAIR_LOSSES:
            # classification losses (softmax, margin heads) need no pairs in a batch: shuffled
            # batches of data.batch_size over every image, as ArcFace / CosFace train (a P x K
            # epoch covers each identity once, i.e. a fraction of the images)
            return None
        found = len(torch.unique(torch.as_tensor(labels)))
        if found < cfg.metric.p:
            raise ConfigError(
                f"metric.p={cfg.metric.p} identities per batch, but the train split has only "
                f"{found}: lower metric.p or train on more people"
            )
        return PKSampler(labels, cfg.metric.p, cfg.metric.k, seed=cfg.data.seed, rank=rank,
                         world_size=world_size)

    def model_config(self, cfg: EmbeddingConfig, num_classes: int) -> dict[str, Any]:
        return {
            "task": "embedding",
            "backbone": {"name": cfg.model.backbone, "width": cfg.model.width},
            "embedding_dim": cfg.model.embedding_dim,
        }

    def build_objective(self, cfg: EmbeddingConfig, model: nn.Module, splits: Any) -> Objective:
        return EmbeddingObjective(model, cfg.metric, splits.num_classes)

    def outputs(self, cfg: EmbeddingConfig, model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": model(images)}

    def metrics(
        self, cfg: EmbeddingConfig, out: dict[str, torch.Tensor], train_labels: torch.Tensor,
        split: str,
    ) -> dict[str, float]:
        return verification_metrics(
            out["embedding"], out["target"], split, limit=cfg.metric.max_val_pairs,
            seed=cfg.data.seed,
        )

    def plots(self, cfg: EmbeddingConfig, test: dict[str, torch.Tensor], outdir: Path) -> dict[str, Path]:
        scores, same = _scores(test["embedding"], test["target"], cfg.metric.max_val_pairs,
                               cfg.data.seed)
        if not 0 < int(same.sum()) < len(same):
            return {}
        return {"roc": P.plot_roc(scores, same, outdir / "roc.png", title="verification")}
