"""facecore: face soft-biometrics on fused PyTorch operators.

Flat API for what users touch most::

    import facecore
    loss = facecore.coral_loss(logits, labels)       # fused CORAL loss
    age = facecore.ordinal_labels(logits, "coral")   # predicted rank

Subpackages: :mod:`facecore.ops` (functional ops), :mod:`facecore.metrics`
(evaluation metrics), :mod:`facecore.losses`
(modules), :mod:`facecore.reference` (pure-PyTorch semantics),
:mod:`facecore.extension` (the compiled library).
"""

from facecore.extension import library_path, load_library

load_library()

from facecore import metrics  # noqa: E402
from facecore.losses import CoralLoss, CornLoss  # noqa: E402
from facecore.ops import (  # noqa: E402
    OrdinalPrediction,
    OrdinalProbs,
    coral_loss,
    corn_loss,
    ordinal_labels,
    ordinal_predict,
    ordinal_probs,
)

__version__ = "0.1.0"

__all__ = [
    "CoralLoss",
    "CornLoss",
    "OrdinalPrediction",
    "OrdinalProbs",
    "coral_loss",
    "corn_loss",
    "library_path",
    "load_library",
    "metrics",
    "ordinal_labels",
    "ordinal_predict",
    "ordinal_probs",
]
