"""The interface of a training task (:class:`Task`) and of its objective (:class:`Objective`).

The generic parts of training (:mod:`facecore.train.datasets`, :mod:`facecore.train.loops`,
:mod:`facecore.train.evaluation`, :mod:`facecore.train.runner`, the CLI) ask the task for
everything task-specific; see :mod:`facecore.train.tasks` for how to add one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from facecore.data.splits import SPLIT_BY
from facecore.models.factory import build_model
from facecore.train.sections import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from torch.utils.data import Dataset, Sampler

    from facecore.train.datasets import Splits

__all__ = ["METRIC_PREFIX", "PROTOCOLS", "Objective", "Task"]

#: Metric-key prefix of each evaluated split (a *metric* prefix: the split names are
#: ``train`` / ``valid`` / ``test``; training-loss terms are ``train_<name>``).
METRIC_PREFIX: dict[str, str] = {"valid": "val_", "test": "test_"}

#: The evaluation protocol a task's ``split_by`` gives, as stated in ``evaluation.json``.
PROTOCOLS: dict[str, str] = {"sample": "image-level", "identity": "identity-disjoint"}


class Objective(nn.Module):
    """Base of training objectives: an ``nn.Module`` that owns the model and everything
    else that trains with it, so Ray Train's DDP wraps one module.

    ``forward(images, labels)`` returns ``(loss, outputs)`` or ``(loss, outputs, terms)``;
    ``terms`` is a dict of scalar tensors, each logged per epoch as ``train_<name>`` (the
    mean over the epoch's images and workers).

    Hooks the loop calls:

    * :meth:`set_epoch` at the start of every epoch (1-based; e.g. a loss schedule).
    * :meth:`checkpoint_state` / :meth:`load_checkpoint_state`: what the training
      checkpoint stores besides the model (default: every parameter and buffer outside
      ``model`` and the frozen auxiliaries).

    Frozen auxiliary models (loaded, never trained) are registered with :meth:`freeze`:
    their parameters get ``requires_grad=False`` (the optimizer only sees parameters that
    require grad), they stay in eval mode when the objective is put in train mode, and they
    are not copied into checkpoints (the task rebuilds them on every start).
    """

    frozen: tuple[str, ...] = ()

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def set_epoch(self, epoch: int) -> None:
        """Called by the loop at the start of each epoch (1-based)."""

    def freeze(self, name: str, module: nn.Module) -> nn.Module:
        """Register ``module`` as the frozen auxiliary ``self.<name>`` (see the class doc)."""
        module.requires_grad_(False)
        module.eval()
        setattr(self, name, module)
        self.frozen = (*self.frozen, name)
        return module

    def train(self, mode: bool = True) -> Objective:
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self

    def _skipped(self, key: str) -> bool:
        return any(key.startswith(prefix + ".") for prefix in ("model", *self.frozen))

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """Tensors the training checkpoint stores for this objective (CPU copies)."""
        return {
            k: v.detach().cpu().clone()
            for k, v in self.state_dict().items()
            if not self._skipped(k)
        }

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`checkpoint_state` (the model is restored separately)."""
        if state:
            self.load_state_dict(state, strict=False)


class Task:
    """One training task. Class attributes say what it is; the methods are hooks with
    defaults where a default makes sense. Every method gets the run's config ``cfg`` (an
    instance of :attr:`config_class`).
    """

    #: the config's ``task:`` value
    name: ClassVar[str]
    #: the root config dataclass (a :class:`~facecore.train.sections.TrainConfig` with the
    #: task's own section; its ``DEFAULT_SCORE`` is the task's checkpoint score)
    config_class: ClassVar[type[TrainConfig]]
    #: the target key the loss and the metrics read (``age``, ``gender``, ``identity``)
    label_key: ClassVar[str]
    #: the validation metrics the learning-curve plot shows (``None``: every ``val_*``)
    curve_metrics: ClassVar[tuple[str, ...] | None] = None
    #: ``False``: a failed export at the end of a run is a warning, not an error (a task
    #: whose model the serving package may not export yet)
    export_required: ClassVar[bool] = True
    #: further labels the evaluation outputs carry (``predict_dataset`` adds each as
    #: ``out[key]``), e.g. ``("identity",)`` for a task whose loss reads ``gender``
    eval_keys: ClassVar[tuple[str, ...]] = ()
    #: ``"sample"`` (images split at random) or ``"identity"`` (no person in two splits)
    split_by: ClassVar[str] = "sample"
    #: An identity-split task that accepts ``data.split_by: sample`` for sets of one photo
    #: per person without identity labels (a split by image is then a split by person);
    #: its ``bind_dataset`` must refuse a set where a person has several photos.
    one_photo_per_person: ClassVar[bool] = False
    #: the packaged config ``facecore train --task NAME`` uses without ``--config``
    default_config: ClassVar[str]
    #: the progress line's fields after ``loss``: ``(metric key, format)``, e.g.
    #: ``("val_mae", "val MAE {:.3f}")``
    progress: ClassVar[tuple[tuple[str, str], ...]] = ()

    # -- configuration ---------------------------------------------------------------
    @property
    def score(self) -> tuple[str, str]:
        """Default ``(metric, mode)`` ranking checkpoints."""
        return self.config_class.DEFAULT_SCORE

    @property
    def protocol(self) -> str:
        """``"image-level"`` or ``"identity-disjoint"`` (from :attr:`split_by`)."""
        assert self.split_by in SPLIT_BY, self.split_by
        return PROTOCOLS[self.split_by]

    def splits_by(self, cfg: Any) -> str:
        """What the run's splits keep together: ``data.split_by`` where set (``identity``),
        else :attr:`split_by`."""
        return cfg.data.split_by or self.split_by

    def protocol_of(self, cfg: Any) -> str:
        """The evaluation protocol of the run's splits (:data:`PROTOCOLS`)."""
        return PROTOCOLS[self.splits_by(cfg)]

    def validate(self, cfg: Any) -> None:
        """Cross-field checks of the task section; raise ``ConfigError`` naming the key."""

    def describe(self, cfg: Any) -> str:
        """A few words for the start-up line (e.g. the head or the loss)."""
        return cfg.model.backbone

    def before_fit(self, cfg: Any, *, fit: Any = None, run_dir: str = "", out: Any = None) -> Any:
        """Called by :func:`facecore.train.fit` on the driver before the run starts; returns
        the config the run uses (default: ``cfg``). ``fit``: :func:`facecore.train.fit`
        (for runs this one needs first), ``run_dir``: the run's ``<storage>/<name>``,
        ``out``: where to print progress (``None``: quiet). E.g. the privacy network trains
        or checks its frozen auxiliary models here and fills in their paths."""
        return cfg

    # -- data --------------------------------------------------------------------------
    def preprocess(self, cfg: Any, default: Any) -> Any:
        """The run's :class:`~facecore.data.PreprocessConfig` (training and export), given
        ``default`` = :func:`facecore.train.datasets.preprocess_for` of ``cfg.data``
        (returned unchanged by default)."""
        return default

    def num_classes(self, cfg: Any, dataset: Dataset, targets: torch.Tensor) -> int:
        """Classes the model predicts (ages, 2, identities) given the whole dataset."""
        return int(targets.max()) + 1 if len(targets) else 0

    def bind_dataset(self, cfg: Any, dataset: Dataset) -> Any:
        """Check ``cfg`` against the opened dataset (raise ``ConfigError`` naming the key
        where they disagree) and return ``cfg`` with what the dataset decides filled in
        (e.g. the age offset); the default returns ``cfg`` unchanged. Called by
        :func:`facecore.train.datasets.build_splits` (``Splits.config``)."""
        return cfg

    def check_split(self, cfg: Any, split: str, labels: torch.Tensor) -> None:
        """Refuse (``ConfigError`` naming ``split``) an evaluation split (``valid`` /
        ``test``) the task's metrics cannot be computed on."""

    def batch_sampler(self, cfg: Any, labels: torch.Tensor, rank: int, world_size: int) -> Sampler | None:
        """A batch sampler over the training split (``None``: shuffled batches of
        ``data.batch_size``, sharded over the workers)."""
        return None

    # -- model and objective ----------------------------------------------------------
    def model_config(self, cfg: Any, num_classes: int) -> dict[str, Any]:
        """The model's config dict for :func:`facecore.models.build_model`."""
        raise NotImplementedError

    def build_model(self, cfg: Any, num_classes: int) -> nn.Module:
        """The untrained model: ``facecore.models.build_model(self.model_config(...))``."""
        return build_model(self.model_config(cfg, num_classes))

    def build_objective(self, cfg: Any, model: nn.Module, splits: Splits) -> Objective:
        """The :class:`Objective` training ``model`` (and any other trained part)."""
        raise NotImplementedError

    def initialize(self, cfg: Any, model: nn.Module, splits: Splits, *, loaded: frozenset[str]) -> None:
        """Called once before a run trains from scratch (never when it resumes), after
        ``model.pretrained`` was loaded: e.g. initialise a head from the training labels.
        ``loaded``: the model's state-dict keys the pretrained weights set (leave those)."""

    # -- evaluation --------------------------------------------------------------------
    def outputs(self, cfg: Any, model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image evaluation outputs of ``model`` (eval mode, no grad) for a batch."""
        raise NotImplementedError

    def metrics(
        self, cfg: Any, out: dict[str, torch.Tensor], train_labels: torch.Tensor, split: str
    ) -> dict[str, float]:
        """Metrics of one split (unprefixed keys) from the concatenated :meth:`outputs`
        plus ``out["target"]`` (the :attr:`label_key` labels)."""
        raise NotImplementedError

    def validation_subset(self, cfg: Any, splits: Splits) -> list[int] | None:
        """Positions in ``splits.valid`` that the per-epoch validation evaluates (the same
        ones every epoch); ``None`` (default): all of them. For tasks whose evaluation is
        costly (the SAN runs four models over three versions of each face)."""
        return None

    def after_epoch(self, cfg: Any, model: nn.Module, valid: dict[str, torch.Tensor]) -> bool:
        """Called after each epoch's validation with its outputs; return True when the
        model changed (e.g. calibration) and validation must run again."""
        return False

    # -- results -----------------------------------------------------------------------
    def plots(self, cfg: Any, test: dict[str, torch.Tensor], outdir: Path) -> dict[str, Path]:
        """The task's plots of the test outputs (PNG paths by name; the learning curves are
        generic). May raise :class:`facecore.train.plots.MissingMatplotlib`."""
        return {}

    def export_settings(self, cfg: Any, dataset: Dataset) -> dict[str, Any]:
        """``export_model`` keyword arguments besides ``preprocess`` (``class_names``,
        ``age_offset``), JSON-able; stored in every training checkpoint so
        ``facecore export`` needs no dataset."""
        return {}
