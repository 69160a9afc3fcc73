r"""Face embedding network (the matcher): backbone -> linear -> BN -> L2 normalisation.

``FaceEmbedder(backbone, embedding_dim)`` maps a normalised face batch to unit
vectors ``[N, D]`` (``F.normalize``, eps 1e-12), so cosine similarity is a dot
product. The batch-norm "neck" after the projection follows the common
InsightFace / ArcFace recipe (BN on the embedding before normalisation). Train it
with a margin head (:mod:`facecore.models.margin`), the center loss
(:class:`facecore.losses.CenterLoss`) or pair / triplet losses.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facecore.models.backbones import resolve_backbone

__all__ = ["FaceEmbedder"]


class FaceEmbedder(nn.Module):
    """Backbone + ``Linear(F, D, bias=False)`` + ``BatchNorm1d(D)`` + L2 normalisation.

    Args:
        backbone: a name (see :func:`facecore.models.build_backbone`) or an
            ``nn.Module`` with ``out_features``.
        embedding_dim: D.
        width, in_channels, backbone_options: for a backbone given by name.
        dropout: dropout on the backbone features before the projection.
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet18",
        embedding_dim: int = 128,
        *,
        width: int | None = None,
        in_channels: int = 3,
        backbone_options: dict[str, Any] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if (
            isinstance(embedding_dim, bool)
            or not isinstance(embedding_dim, int)
            or embedding_dim < 1
        ):
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.backbone, backbone_config, features = resolve_backbone(
            backbone, width=width, in_channels=in_channels, options=backbone_options
        )
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(features, embedding_dim, bias=False)
        self.bn = nn.BatchNorm1d(embedding_dim)
        self.embedding_dim = embedding_dim
        self.task = "embedding"
        self.config = {
            "task": "embedding",
            "backbone": backbone_config,
            "embedding_dim": embedding_dim,
            "dropout": float(dropout),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings ``[N, D]``."""
        return F.normalize(self.bn(self.fc(self.dropout(self.backbone(x)))), p=2.0, dim=1)

    @torch.jit.export
    def serve(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"embedding": [N, D]}`` (unit vectors)."""
        return {"embedding": self.forward(x)}
