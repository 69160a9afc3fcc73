"""Training on Ray Train (V2): configs, the per-worker loop, ``fit``, plots, Tune trials.

::

    from facecore.train import fit, load_config
    cfg = load_config("age_coral_synthetic", ["optim.epochs=4", "run.workers=2"])
    result = fit(cfg)            # TorchTrainer on Ray; resumable by storage + name
    result.test_metrics, result.export_dir, result.plots

* :mod:`facecore.train.config`: typed dataclasses per task, YAML, ``--set`` overrides.
* :mod:`facecore.train.loops`: ``train_loop_per_worker`` (DDP, sharded validation,
  checkpoints every epoch, resume).
* :mod:`facecore.train.runner`: :func:`fit`, :func:`finalize` (test metrics, export, plots).
* :mod:`facecore.train.plots`: learning curves, age scatter, cumulative probabilities, ROC.
* :mod:`facecore.train.tune`: Ray Tune function trainable for head / lr sweeps.

Ray is imported lazily (only ``fit`` and the loop need it).
"""

from facecore.train.config import (
    AgeConfig,
    ConfigError,
    EmbeddingConfig,
    GenderConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from facecore.train.loops import load_checkpoint, train_loop_per_worker
from facecore.train.runner import TrainingError, TrainResult, finalize, fit

__all__ = [
    "AgeConfig",
    "ConfigError",
    "EmbeddingConfig",
    "GenderConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "config_from_dict",
    "config_to_dict",
    "finalize",
    "fit",
    "load_checkpoint",
    "load_config",
    "save_config",
    "train_loop_per_worker",
]
