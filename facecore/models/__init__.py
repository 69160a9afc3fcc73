"""facecore models: backbones, ordinal age heads, binary attribute classifiers,
face embedders and margin-softmax heads, all scriptable and exportable.

* :mod:`facecore.models.backbones`: :func:`build_backbone` (ResNet-10/18/34/50/101, small CNN).
* :mod:`facecore.models.pretrained`: :func:`load_pretrained` (torchvision-layout ResNet
  state dicts or facecore checkpoints, with a report), :func:`freeze_stages`.
* :mod:`facecore.models.ordinal`: :class:`AgeEstimator` with CE / Niu / CORAL / CORN heads,
  :func:`label_prior` (head initialisation from the training labels).
* :mod:`facecore.models.binary`: :class:`BinaryAttributeClassifier`,
  :class:`GenderClassifier`, :func:`fit_temperature` (temperature scaling).
* :mod:`facecore.models.embedding`: :class:`FaceEmbedder`.
* :mod:`facecore.models.margin`: :class:`ArcFace`, :class:`CosFace`, :class:`SphereFace`.
* :mod:`facecore.models.factory`: :func:`build_model`, :func:`model_checkpoint`,
  :func:`model_from_checkpoint`, :func:`load_weights`.
* :mod:`facecore.models.san`: :class:`SANAutoencoder` (semi-adversarial network for gender
  privacy), :class:`GrayscaleAdapter`, :func:`san_from_config`.
* :mod:`facecore.models.weights`: :func:`importance_weights_from_labels`.
"""

from facecore.models.backbones import BACKBONES, ResNet, SmallCNN, build_backbone
from facecore.models.binary import BinaryAttributeClassifier, GenderClassifier, fit_temperature
from facecore.models.embedding import FaceEmbedder
from facecore.models.factory import (
    build_model,
    load_weights,
    model_checkpoint,
    model_from_checkpoint,
)
from facecore.models.margin import ArcFace, CosFace, SphereFace
from facecore.models.ordinal import (
    HEADS,
    AgeEstimator,
    CEHead,
    CoralHead,
    CornHead,
    NiuHead,
    build_ordinal_head,
    label_prior,
)
from facecore.models.pretrained import PretrainedReport, freeze_stages, load_pretrained
from facecore.models.san import GrayscaleAdapter, SANAutoencoder, san_from_config
from facecore.models.weights import importance_weights_from_labels

__all__ = [
    "BACKBONES",
    "HEADS",
    "AgeEstimator",
    "ArcFace",
    "BinaryAttributeClassifier",
    "CEHead",
    "CoralHead",
    "CornHead",
    "CosFace",
    "FaceEmbedder",
    "GenderClassifier",
    "GrayscaleAdapter",
    "NiuHead",
    "PretrainedReport",
    "ResNet",
    "SANAutoencoder",
    "SmallCNN",
    "SphereFace",
    "build_backbone",
    "build_model",
    "build_ordinal_head",
    "fit_temperature",
    "freeze_stages",
    "importance_weights_from_labels",
    "label_prior",
    "load_pretrained",
    "load_weights",
    "model_checkpoint",
    "model_from_checkpoint",
    "san_from_config",
]
