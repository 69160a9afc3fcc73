"""facecore: face soft-biometrics on fused PyTorch operators.

Flat API for what users touch most::

    import facecore
    loss = facecore.coral_loss(logits, labels)       # fused CORAL loss
    age = facecore.ordinal_labels(logits, "coral")   # predicted rank
    loss, active, terms = facecore.triplet_margin_loss(emb, ids, mining="semihard")
    predictor = facecore.load("exported/age")        # serving

Subpackages: :mod:`facecore.ops` (functional ops), :mod:`facecore.metrics`
(evaluation metrics), :mod:`facecore.models` (backbones, heads, models),
:mod:`facecore.data` (dataset readers, synthetic faces, transforms, samplers),
:mod:`facecore.losses` (loss modules), :mod:`facecore.distances` and
:mod:`facecore.miners` (metric learning), :mod:`facecore.train` (Ray Train), :mod:`facecore.reference` (pure-PyTorch semantics),
:mod:`facecore.extension` (the compiled library).
"""

from facecore.extension import library_path, load_library

load_library()

from facecore import data, distances, metrics, miners, models  # noqa: E402
from facecore.export import export_model  # noqa: E402
from facecore.losses import (  # noqa: E402
    CenterLoss,
    ContrastiveLoss,
    CoralLoss,
    CornLoss,
    TripletMarginLoss,
)
from facecore.models import (  # noqa: E402
    AgeEstimator,
    BinaryAttributeClassifier,
    FaceEmbedder,
    GenderClassifier,
    build_model,
    model_checkpoint,
    model_from_checkpoint,
)
from facecore.ops import (  # noqa: E402
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
from facecore.predict import (  # noqa: E402
    AgePrediction,
    BinaryPrediction,
    EmbeddingPrediction,
    ModelVersionError,
    Predictor,
    load,
)

__version__ = "0.1.0"

__all__ = [
    "AgeEstimator",
    "BinaryAttributeClassifier",
    "CenterLoss",
    "FaceEmbedder",
    "GenderClassifier",
    "build_model",
    "model_checkpoint",
    "model_from_checkpoint",
    "models",
    "distances",
    "miners",
    "ContrastiveLoss",
    "TripletMarginLoss",
    "MatchingLoss",
    "contrastive_loss",
    "pairwise_distance",
    "triplet_margin_loss",
    "AgePrediction",
    "BinaryPrediction",
    "EmbeddingPrediction",
    "ModelVersionError",
    "Predictor",
    "load",
    "export_model",
    "data",
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
