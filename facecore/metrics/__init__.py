"""Evaluation metrics for facecore's tasks, torch-native (CPU and CUDA tensors in,
Python floats or tensors out; no scikit-learn at run time).

* :mod:`facecore.metrics.ordinal` (age): :func:`mae`, :func:`rmse`,
  :func:`cumulative_score`, :func:`off_by_one_accuracy`,
  :func:`quadratic_weighted_kappa`, :func:`rank_inconsistency`,
  :func:`median_baseline_mae`.
* :mod:`facecore.metrics.binary` (gender): :func:`accuracy`, :func:`roc_auc`,
  :func:`calibration_bins`, :func:`expected_calibration_error`,
  :func:`max_calibration_error`, :func:`brier_score`, :func:`log_loss`.
* :mod:`facecore.metrics.verification` (matching): :func:`roc_curve`,
  :func:`verification_auc`, :func:`equal_error_rate`, :func:`tar_at_far`,
  :func:`lfw_accuracy`, :func:`cmc_curve`, :func:`rank_k_accuracy`.
* :mod:`facecore.metrics.retrieval` (embedding spaces, pytorch-metric-learning's names):
  :func:`retrieval_metrics` (``precision_at_1``, ``r_precision``,
  ``mean_average_precision_at_r``, ``NMI``, ``AMI``), :func:`kmeans`.

Each module states its conventions (threshold rules, interpolation, ties,
degenerate cases) in its docstring; the tests check them against
scikit-learn and hand-computed examples.
"""

from facecore.metrics.binary import (
    CalibrationBins,
    accuracy,
    brier_score,
    calibration_bins,
    expected_calibration_error,
    log_loss,
    max_calibration_error,
    roc_auc,
)
from facecore.metrics.ordinal import (
    RankInconsistency,
    cumulative_score,
    mae,
    median_baseline_mae,
    off_by_one_accuracy,
    quadratic_weighted_kappa,
    rank_inconsistency,
    rmse,
)
from facecore.metrics.retrieval import (
    RETRIEVAL_METRICS,
    adjusted_mutual_info,
    kmeans,
    mean_average_precision_at_r,
    normalized_mutual_info,
    precision_at_1,
    r_precision,
    retrieval_metrics,
    retrieval_per_query,
)
from facecore.metrics.verification import (
    EqualErrorRate,
    FoldAccuracy,
    RocCurve,
    TarAtFar,
    cmc_curve,
    equal_error_rate,
    lfw_accuracy,
    rank_k_accuracy,
    roc_curve,
    tar_at_far,
    verification_auc,
)

__all__ = [
    # ordinal
    "RankInconsistency",
    "cumulative_score",
    "mae",
    "median_baseline_mae",
    "off_by_one_accuracy",
    "quadratic_weighted_kappa",
    "rank_inconsistency",
    "rmse",
    # binary
    "CalibrationBins",
    "accuracy",
    "brier_score",
    "calibration_bins",
    "expected_calibration_error",
    "log_loss",
    "max_calibration_error",
    "roc_auc",
    # verification / identification
    "EqualErrorRate",
    "FoldAccuracy",
    "RocCurve",
    "TarAtFar",
    "cmc_curve",
    "equal_error_rate",
    "lfw_accuracy",
    "rank_k_accuracy",
    "roc_curve",
    "tar_at_far",
    "verification_auc",
    # retrieval / clustering of embedding spaces
    "RETRIEVAL_METRICS",
    "adjusted_mutual_info",
    "kmeans",
    "mean_average_precision_at_r",
    "normalized_mutual_info",
    "precision_at_1",
    "r_precision",
    "retrieval_metrics",
    "retrieval_per_query",
]
