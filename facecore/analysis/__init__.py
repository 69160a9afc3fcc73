"""Embedding analysis and bias: extraction, projections, probes, the cross-group (bias)
matrix, per-group reports of trained models and learned-space comparison.

Needs the ``analysis`` extra (scikit-learn, matplotlib): ``pip install facecore[analysis]``.

::

    from facecore.analysis import (extract_embeddings, pixel_embeddings, projection_figures,
                                   probe, bias_matrix, model_outputs, group_report)
    from facecore.data import LondonFaces

    faces = LondonFaces("london_faces/")
    emb = extract_embeddings("exported/gender", faces)      # penultimate features + labels
    emb.save("london_gender")                                # .npz + .json sidecar
    projection_figures(emb, ["gender", "race"], "figs/")     # t-SNE, one PNG per attribute
    probe(emb, "gender").accuracy                            # CV accuracy, 95% CI
    probe(pixel_embeddings(faces), "gender").accuracy        # raw-pixel baseline
    m = bias_matrix(emb, "gender", "race")                   # train per group, test on each
    m.plot("figs/bias.png"); print(m.to_markdown())
    print(group_report(model_outputs("exported/gender", faces), "race").to_markdown())

Modules: :mod:`.embeddings` (:class:`Embeddings`, :func:`extract_embeddings`,
:func:`pixel_embeddings`, :func:`load_analysis_model`), :mod:`.projection`,
:mod:`.probes`, :mod:`.bias` (:func:`cross_group_matrix` with pluggable trainers),
:mod:`.runs` (:class:`FitTrainer`: a full :func:`facecore.train.fit` run per group),
:mod:`.groups`, :mod:`.spaces`, :mod:`.stats` (intervals), :mod:`.data`
(datasets open by name with :func:`facecore.data.open_dataset`), :mod:`.plots`, :mod:`.cli` (``facecore analyze``).
"""

from facecore.analysis.bias import (
    BiasMatrix,
    GroupTrainer,
    MetricProbeTrainer,
    ProbeTrainer,
    RegressionProbeTrainer,
    bias_matrix,
    cross_group_matrix,
)
from facecore.analysis.data import dataset_labels
from facecore.analysis.embeddings import (
    Embeddings,
    LoadedModel,
    extract_embeddings,
    load_analysis_model,
    pixel_embeddings,
)
from facecore.analysis.groups import GroupReport, ModelOutputs, group_report, model_outputs
from facecore.analysis.probes import ProbeResult, make_probe, probe
from facecore.analysis.projection import Projection, project, projection_figures
from facecore.analysis.runs import FitTrainer, fit_bias_matrix
from facecore.analysis.spaces import (
    SPACE_LOSSES,
    SpaceComparison,
    compare_spaces,
    space_metric_options,
    train_embedder,
)
from facecore.analysis.stats import Estimate, wilson_interval

__all__ = [
    "SPACE_LOSSES",
    "BiasMatrix",
    "Embeddings",
    "Estimate",
    "FitTrainer",
    "GroupReport",
    "GroupTrainer",
    "LoadedModel",
    "MetricProbeTrainer",
    "ModelOutputs",
    "ProbeResult",
    "ProbeTrainer",
    "Projection",
    "RegressionProbeTrainer",
    "SpaceComparison",
    "bias_matrix",
    "compare_spaces",
    "cross_group_matrix",
    "dataset_labels",
    "extract_embeddings",
    "fit_bias_matrix",
    "group_report",
    "load_analysis_model",
    "make_probe",
    "model_outputs",
    "pixel_embeddings",
    "probe",
    "project",
    "projection_figures",
    "space_metric_options",
    "train_embedder",
    "wilson_interval",
]
