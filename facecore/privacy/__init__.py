"""Gender privacy for face images: semi-adversarial networks (SAN) and their evaluation.

* model / loss: :class:`facecore.models.SANAutoencoder`, :class:`facecore.losses.SANObjective`;
* :mod:`facecore.privacy.anonymizers`: :func:`gaussian_blur`, :func:`pixelate` (baselines);
* :mod:`facecore.privacy.evaluation`: :func:`evaluate_variants` (gender accuracy / AUC and
  verification AUC / EER / TAR@FAR of original and perturbed faces, per evaluator);
* :mod:`facecore.privacy.report`: the issue's acceptance checks, equal-utility comparison,
  JSON + Markdown; :mod:`facecore.privacy.plots`: image grid, ROC, P(female) histograms;
* :mod:`facecore.privacy.thirdparty`: optional dlib matcher / gender evaluators (the
  ``privacy-eval`` extra);
* :mod:`facecore.privacy.experiment`: the research / demo driver
  (``python -m facecore.privacy.experiment synthetic --out DIR``).
"""

from facecore.privacy.anonymizers import ANONYMIZERS, anonymize, gaussian_blur, pixelate
from facecore.privacy.evaluation import (
    Evaluator,
    PrivacyResult,
    equal_utility,
    evaluate_variants,
    gender_metrics,
    pair_scores,
    verification_metrics,
)
from facecore.privacy.report import done_when_checks, equal_utility_table, write_report

__all__ = [
    "ANONYMIZERS",
    "Evaluator",
    "PrivacyResult",
    "anonymize",
    "done_when_checks",
    "equal_utility",
    "equal_utility_table",
    "evaluate_variants",
    "gaussian_blur",
    "gender_metrics",
    "pair_scores",
    "pixelate",
    "verification_metrics",
    "write_report",
]
