"""Training on Ray Train (V2): configs, the task registry, the per-worker loop, ``fit``,
plots, Tune trials.

::

    from facecore.train import fit, load_config
    cfg = load_config("age_coral_synthetic", ["optim.epochs=4", "run.workers=2"])
    result = fit(cfg)            # TorchTrainer on Ray; resumable by storage + name
    result.test_metrics, result.export_dir, result.plots

Layers (each imports only the ones above it):

* :mod:`facecore.train.sections`: the shared config sections and the dict -> dataclass
  machinery; :mod:`facecore.train.tasks`: the task registry, one module per task
  (config section, objective, metrics, plots, export settings), see its docstring for
  how to add a task; :mod:`facecore.train.config`: ``load_config`` and friends.
* :mod:`facecore.train.optim`: optimisers and schedules by name;
  :mod:`facecore.train.datasets`: the dataset and its ``train`` / ``valid`` / ``test``
  splits; :mod:`facecore.train.evaluation`: outputs and metrics of a split;
  :mod:`facecore.train.checkpoints`: checkpoint files.
* :mod:`facecore.train.loops`: ``train_loop_per_worker`` (DDP, sharded validation,
  checkpoints every epoch, resume).
* :mod:`facecore.train.runner`: :func:`fit`, :func:`finalize` (test metrics, export, plots).
* :mod:`facecore.train.plots` (figures), :mod:`facecore.train.progress` (progress lines),
  :mod:`facecore.train.tune` (Ray Tune function trainable for head / lr sweeps).

Ray is imported lazily (only ``fit`` and the loop need it).
"""

from facecore.train.checkpoints import load_checkpoint
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
from facecore.train.loops import train_loop_per_worker
from facecore.train.runner import TrainingError, TrainResult, finalize, fit
from facecore.train.tasks import TASKS, Objective, Task, get_task

__all__ = [
    "TASKS",
    "AgeConfig",
    "ConfigError",
    "EmbeddingConfig",
    "GenderConfig",
    "Objective",
    "Task",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "config_from_dict",
    "config_to_dict",
    "finalize",
    "fit",
    "get_task",
    "load_checkpoint",
    "load_config",
    "save_config",
    "train_loop_per_worker",
]
