"""The task registry: ``cfg.task`` -> :class:`~facecore.train.tasks.base.Task`.

Everything task-specific in training lives in one module per task (its config section and
config class, label key, split grouping, model config, objective, evaluation outputs and
metrics, after-epoch hook, plots, export settings, checkpoint score, progress fields);
the loop, the runner, the CLI and the config loader ask :func:`get_task`.

How to add a task
-----------------
1. Write ``facecore/train/tasks/<name>.py`` with:

   * an options dataclass (the task's config section) and ``<Name>Config(TrainConfig)``
     with ``task: str = "<name>"``, the section as a field and
     ``DEFAULT_SCORE: ClassVar[tuple[str, str]] = ("val_<metric>", "min" | "max")``;
     choice-valued fields use ``choices(LIST, default)`` with ``LIST`` imported from
     where the choices are defined;
   * an :class:`~facecore.train.tasks.base.Objective` subclass: ``forward(images, labels)``
     returns ``(loss, outputs)`` or ``(loss, outputs, terms)`` (``terms``: scalar tensors
     logged per epoch as ``train_<name>``); optional ``set_epoch(epoch)`` (e.g. a loss
     schedule); frozen auxiliary models registered with ``self.freeze(name, module)``
     (not optimised, not checkpointed);
   * a :class:`~facecore.train.tasks.base.Task` subclass: class attributes ``name``,
     ``config_class``, ``label_key``, ``split_by`` (``"sample"`` | ``"identity"``;
     matching tasks split by identity), ``default_config``, ``progress``; methods
     ``model_config`` (a dict for :func:`facecore.models.build_model`; a new model family
     adds one line to :data:`facecore.models.factory.MODEL_BUILDERS`),
     ``build_objective``, ``outputs``, ``metrics``, and where needed ``validate``,
     ``num_classes``, ``check_split``, ``batch_sampler``, ``validation_subset``,
     ``after_epoch``, ``plots``,
     ``export_settings``.

2. Add one line to :data:`TASKS` below, and a packaged config
   ``facecore/train/configs/<default_config>.yaml``.

Nothing else in ``facecore/train`` switches on the task.
"""

from __future__ import annotations

from facecore.train.tasks.age import AgeTask
from facecore.train.tasks.base import METRIC_PREFIX, PROTOCOLS, Objective, Task
from facecore.train.tasks.embedding import EmbeddingTask
from facecore.train.tasks.gender import GenderTask
from facecore.train.tasks.san import SANTask

__all__ = ["METRIC_PREFIX", "PROTOCOLS", "TASKS", "Objective", "Task", "get_task"]

#: Every training task by name (one line per task).
TASKS: dict[str, Task] = {
    "age": AgeTask(),
    "gender": GenderTask(),
    "embedding": EmbeddingTask(),
    "san": SANTask(),
}


def get_task(name: str) -> Task:
    """The registered task ``name`` (``KeyError`` listing the tasks otherwise)."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; tasks: {' | '.join(TASKS)}") from None
