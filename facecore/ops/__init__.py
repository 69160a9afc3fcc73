"""Functional API over the compiled ops (``torch.ops.facecore.*``).

Importing this package loads the compiled library and registers the fake
kernels used by torch.compile / torch.export.
"""

from facecore.extension import load_library

load_library()

from facecore.ops import _meta, _meta_matching  # noqa: E402,F401  (registers fake kernels)
from facecore.ops.matching import (  # noqa: E402
    MatchingLoss,
    contrastive_loss,
    contrastive_loss_from_dist,
    pairwise_distance,
    triplet_margin_loss,
    triplet_margin_loss_from_dist,
)
from facecore.ops.ordinal import (  # noqa: E402
    OrdinalPrediction,
    OrdinalProbs,
    coral_loss,
    corn_loss,
    ordinal_labels,
    ordinal_predict,
    ordinal_probs,
)

__all__ = [
    "MatchingLoss",
    "contrastive_loss",
    "contrastive_loss_from_dist",
    "pairwise_distance",
    "triplet_margin_loss",
    "triplet_margin_loss_from_dist",
    "OrdinalPrediction",
    "OrdinalProbs",
    "coral_loss",
    "corn_loss",
    "ordinal_labels",
    "ordinal_predict",
    "ordinal_probs",
]
