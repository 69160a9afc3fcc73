"""Functional API over the compiled ops (``torch.ops.facecore.*``).

Importing this package loads the compiled library and registers the fake
kernels used by torch.compile / torch.export.
"""

from facecore.extension import load_library

load_library()

from facecore.ops import _meta  # noqa: E402,F401  (registers fake kernels)
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
    "OrdinalPrediction",
    "OrdinalProbs",
    "coral_loss",
    "corn_loss",
    "ordinal_labels",
    "ordinal_predict",
    "ordinal_probs",
]
