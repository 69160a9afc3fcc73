"""facecore: face soft-biometrics on fused PyTorch operators.

Flat API for what users touch most::

    import facecore
    loss = facecore.coral_loss(logits, labels)       # fused CORAL loss
    age = facecore.ordinal_labels(logits, "coral")   # predicted rank
    loss, active, terms = facecore.triplet_margin_loss(emb, ids, mining="semihard")
    predictor = facecore.load("exported/age")        # serving

Subpackages: :mod:`facecore.ops` (functional ops; importing it loads the compiled
library), :mod:`facecore.metrics` (evaluation metrics), :mod:`facecore.models` (backbones,
heads, models), :mod:`facecore.data` (dataset readers, synthetic faces, transforms,
samplers), :mod:`facecore.losses` (loss modules with PML-style
:mod:`~facecore.losses.distances` and :mod:`~facecore.losses.miners`),
:mod:`facecore.serving` (export, ``load`` / ``Predictor``, face detection),
:mod:`facecore.train` (Ray Train), :mod:`facecore.reference` (pure-PyTorch semantics),
:mod:`facecore.extension` (the compiled library), :mod:`facecore.formats` (file formats).

No module below this one imports ``facecore`` itself (the version is in
:mod:`facecore._version`).
"""

from facecore import data, losses, metrics, models, ops, serving
from facecore._version import __version__
from facecore.extension import library_path, load_library
from facecore.losses import (
    CenterLoss,
    ContrastiveLoss,
    CoralLoss,
    CornLoss,
    TripletMarginLoss,
)
from facecore.models import (
    AgeEstimator,
    BinaryAttributeClassifier,
    FaceEmbedder,
    GenderClassifier,
    build_model,
    model_checkpoint,
    model_from_checkpoint,
)
from facecore.ops import (
    MatchingLoss,
    OrdinalPrediction,
    OrdinalProbs,
    contrastive_loss,
    coral_loss,
    corn_loss,
    ordinal_labels,
    ordinal_predict,
    ordinal_probs,
    pairwise_distance,
    triplet_margin_loss,
)
from facecore.serving import (
    AgePrediction,
    BinaryPrediction,
    EmbeddingPrediction,
    ModelVersionError,
    Predictor,
    export_model,
    load,
)

__all__ = [
    "AgeEstimator",
    "AgePrediction",
    "BinaryAttributeClassifier",
    "BinaryPrediction",
    "CenterLoss",
    "ContrastiveLoss",
    "CoralLoss",
    "CornLoss",
    "EmbeddingPrediction",
    "FaceEmbedder",
    "GenderClassifier",
    "MatchingLoss",
    "ModelVersionError",
    "OrdinalPrediction",
    "OrdinalProbs",
    "Predictor",
    "TripletMarginLoss",
    "__version__",
    "build_model",
    "contrastive_loss",
    "coral_loss",
    "corn_loss",
    "data",
    "export_model",
    "library_path",
    "load",
    "load_library",
    "losses",
    "metrics",
    "model_checkpoint",
    "model_from_checkpoint",
    "models",
    "ops",
    "ordinal_labels",
    "ordinal_predict",
    "ordinal_probs",
    "pairwise_distance",
    "serving",
    "triplet_margin_loss",
]
