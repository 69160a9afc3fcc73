"""Serving: export trained models and run them on images.

* :mod:`facecore.serving.format`: the export format (file names, output keys per task,
  ``metadata.json``: :func:`read_metadata`, :func:`check_compatibility`).
* :mod:`facecore.serving.export`: :func:`export_model` (TorchScript ``model.pt`` +
  torch.export ``model.pt2`` + ``metadata.json``), :class:`ServingModule`
  (:class:`SANServingModule` for the privacy autoencoder: images + gender).
* :mod:`facecore.serving.predictor`: :func:`load` -> :class:`Predictor` -> typed
  predictions (:class:`AgePrediction`, :class:`BinaryPrediction`,
  :class:`EmbeddingPrediction`); ``Predictor.anonymize`` for SAN exports.
* :mod:`facecore.serving.inputs`: what ``Predictor.predict`` accepts (PIL, paths, bytes,
  numpy, tensors) and how it is decoded.
* :mod:`facecore.serving.detect`: optional OpenCV Haar-cascade face detection.

The flat names (``facecore.load``, ``facecore.export_model``, ``facecore.Predictor``, ...)
are re-exported by the package root.
"""

from facecore.formats import ModelVersionError
from facecore.serving.export import SANServingModule, ServingModule, export_model, serving_module
from facecore.serving.format import ChecksumError, check_compatibility, read_metadata
from facecore.serving.predictor import (
    AgePrediction,
    BinaryPrediction,
    EmbeddingPrediction,
    Predictor,
    load,
)

__all__ = [
    "AgePrediction",
    "BinaryPrediction",
    "ChecksumError",
    "EmbeddingPrediction",
    "ModelVersionError",
    "Predictor",
    "SANServingModule",
    "ServingModule",
    "check_compatibility",
    "export_model",
    "load",
    "read_metadata",
    "serving_module",
]
