r"""Task ``san``: a semi-adversarial network (Mirjalili et al., ICB 2018) that hides gender
from grayscale faces while keeping them matchable (:class:`facecore.models.SANAutoencoder`
trained by :class:`facecore.losses.SANObjective`; the loss, its terms and the mapping from
the authors' code are documented there).

One command, two stages (``facecore train --task san --config san_synthetic``):

* **Stage 1** (:meth:`SANTask.before_fit`, on the driver): the frozen auxiliaries of the
  loss -- a gender classifier (``san.gender_classifier``) and a face matcher
  (``san.matcher``) -- and the **unseen** evaluators (``san.unseen_gender_classifier``,
  ``san.unseen_matcher``: another architecture and seed, trained on more data, never in the
  loss). Each key is a training checkpoint (a ``checkpoint_epoch_NNNN`` folder or its
  ``checkpoint.pt``, as ``facecore train --task gender | embedding`` writes) or ``null``:
  then it is trained here with the existing ``gender`` / ``embedding`` tasks on the SAN's
  own data (grayscale, the same seed and fractions split by identity -- or by image with
  ``data.split_by: sample``, for sets of one photo per person such as FairFace-540 -- so
  no test person is ever seen), with the ``stage1.<model>`` overrides (``KEY=VALUE`` strings, e.g.
  ``data.max_train_samples=4000``: the auxiliaries see less data than the unseen models).
  Stage-1 runs live in ``<run>/stage1/<model>`` and are reused when the command runs
  again. Each file is referenced by path and SHA-256 (``san.sha256``, filled in here; a
  given hash that disagrees with the file is an error), never copied into the SAN's
  checkpoints.
* With ``san.ae_baseline: true`` (default) the **autoencoder-only baseline** (the same
  run with ``lambda_gender = 0``: the utility ceiling) is trained next, in
  ``<run>/stage1/ae_only`` (``san.ae_baseline_checkpoint`` names an existing one instead).
* **Stage 2**: the SAN under Ray Train like every task (checkpoints, resume,
  ``FailureConfig``). Splits are identity-disjoint. The auxiliaries are frozen (``eval()``,
  ``requires_grad=False``, outside the module tree, so never in a checkpoint or the
  optimiser); their SHA-256 travel in the objective's checkpoint state, and resuming with
  a changed file is a one-line error.

Schedule: epochs ``1 .. pretrain_epochs`` train ``J_D`` only, then ``J_G`` is added, and
``J_M`` from epoch ``pretrain_epochs + match_warmup_epochs + 1`` on (the loop's epochs are
1-based; :class:`SANObjective` counts from 0).

Per-epoch metrics (every epoch on the validation split, with the unseen models): the
training terms ``train_rec`` (J_D), ``train_gender`` (J_G), ``train_match`` (J_M),
``train_aux_acc_sm`` / ``train_aux_acc_op``; ``val_gender_acc_<v>`` / ``val_gender_auc_<v>``
and ``val_match_auc_<v>`` (original photo vs perturbed probe, cross-photo genuine pairs)
for ``v`` in ``original | sm | nt | op``; ``val_l1_sm`` / ``val_l1_op``; and the two
summary figures ``val_privacy`` = gender accuracy on SM minus on OP (higher hides more
while keeping SM) and ``val_utility`` = matcher AUC on SM. Checkpoints are ranked by
``epoch`` (the model is the end of the schedule); the test split is never used for
choices.

At the end (``facecore train`` and ``facecore eval RUN --plot``) the test split gets the
full privacy report (:func:`facecore.privacy.runs.write_run_report`: JSON + Markdown +
PNGs, blur / pixelation sweeps, AE-only baseline, acceptance checks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from facecore.losses.san import MATCH_TARGETS, RECONSTRUCTIONS, SANObjective, file_sha256
from facecore.models.san import PROTOTYPE_REFERENCES, SAN_DEFAULTS, to_grayscale
from facecore.privacy.auxiliaries import (
    AUXILIARIES,
    IN_LOSS,
    auxiliary,
    checkpoint_file,
)
from facecore.train.sections import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    build_section,
    choices,
    validate_common,
)
from facecore.train.tasks.base import Task
from facecore.train.tasks.embedding import EmbeddingConfig
from facecore.train.tasks.gender import GenderConfig

_STAGE1_CONFIGS: dict[str, type[TrainConfig]] = {"gender": GenderConfig, "embedding": EmbeddingConfig}

__all__ = [
    "AUXILIARIES",
    "SANConfig",
    "SANOptions",
    "SANTask",
    "SANTaskObjective",
    "Stage1Options",
]

@dataclass
class SANOptions:
    """The ``san`` section (defaults measured on 64 px synthetic faces; see the README's
    privacy section).

    Architecture (:class:`facecore.models.SANAutoencoder`): ``encoder_channels``,
    ``decoder_channels``, ``pool_levels`` (defaults: :data:`facecore.models.san.SAN_DEFAULTS`,
    no bottleneck; 1 pooling level cost identity and fidelity, 2 lost identity),
    ``prototype_gain`` / ``prototype_reference``. Loss
    (:class:`facecore.losses.SANObjective`): ``reconstruction``, ``lambda_rec``,
    ``lambda_gender``, ``lambda_match``, ``match_target``, ``pretrain_epochs``,
    ``match_warmup_epochs``. Models (module docstring): ``gender_classifier``,
    ``matcher``, ``unseen_gender_classifier``, ``unseen_matcher`` (training checkpoints;
    ``null``: stage 1 trains them), ``sha256`` (``{key: hex}``, filled in by stage 1),
    ``ae_baseline`` / ``ae_baseline_checkpoint``. Report: ``blur`` (sigmas, px) and
    ``pixelate`` (block sizes) sweeps, ``third_party`` (the dlib evaluators of the
    ``privacy-eval`` extra where installed), ``max_impostors`` (impostor pairs per
    protocol), ``max_val_images`` (validation faces evaluated per epoch).
    """

    encoder_channels: list[int] = field(default_factory=lambda: list(SAN_DEFAULTS["encoder_channels"]))
    decoder_channels: list[int] = field(default_factory=lambda: list(SAN_DEFAULTS["decoder_channels"]))
    pool_levels: int = SAN_DEFAULTS["pool_levels"]
    prototype_gain: float = 10.0
    prototype_reference: str = choices(PROTOTYPE_REFERENCES, "same")
    reconstruction: str = choices(RECONSTRUCTIONS, "l1")
    lambda_rec: float = 1.0
    lambda_gender: float = 2.0
    lambda_match: float = 64.0
    match_target: str = choices(MATCH_TARGETS, "sm")
    pretrain_epochs: int = 1
    match_warmup_epochs: int = 0
    gender_classifier: str | None = None
    matcher: str | None = None
    unseen_gender_classifier: str | None = None
    unseen_matcher: str | None = None
    sha256: dict[str, str] | None = None
    ae_baseline: bool = True
    ae_baseline_checkpoint: str | None = None
    blur: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0, 6.0])
    pixelate: list[int] = field(default_factory=lambda: [2, 3, 4, 6, 8])
    third_party: bool = True
    max_impostors: int = 200000
    max_val_images: int = 2000


@dataclass
class Stage1Options:
    """Overrides (``KEY=VALUE``, as ``--set``) of the stage-1 runs that train the models
    ``san.*`` leaves ``null``; applied over a config derived from the SAN's (same data,
    grayscale, split as the SAN's -- by identity, or by image for ``data.split_by: sample``
    --, ``run.workers``, ``run.seed``). ``{data.root}`` in a
    value is the SAN's ``data.root`` (e.g. ``data.root={data.root}/../fairface540`` trains
    a classifier on another set of people)."""

    gender_classifier: list[str] = field(default_factory=list)
    matcher: list[str] = field(default_factory=list)
    unseen_gender_classifier: list[str] = field(default_factory=list)
    unseen_matcher: list[str] = field(default_factory=list)


@dataclass
class SANConfig(TrainConfig):
    DEFAULT_SCORE: ClassVar[tuple[str, str]] = ("epoch", "max")

    task: str = "san"
    san: SANOptions = field(default_factory=SANOptions)
    stage1: Stage1Options = field(default_factory=Stage1Options)


# ------------------------------------------------------------------ auxiliaries


def _hash_tensor(hexdigest: str) -> torch.Tensor:
    return torch.tensor(list(bytes.fromhex(hexdigest)), dtype=torch.uint8)


class SANTaskObjective(SANObjective):
    """:class:`SANObjective` with the training loop's hooks (the
    :class:`~facecore.train.tasks.base.Objective` protocol): 1-based :meth:`set_epoch`,
    :meth:`checkpoint_state` (the SHA-256 of the two auxiliaries, as ``uint8`` buffers;
    the autoencoder is saved separately, the auxiliaries never), and
    :meth:`load_checkpoint_state`, which refuses (``ConfigError``) a checkpoint trained
    against other auxiliary files."""

    frozen: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, gender_classifier: nn.Module, matcher: nn.Module, *,
                 sha256: dict[str, str], paths: dict[str, str], **kwargs: Any) -> None:
        super().__init__(model, gender_classifier, matcher,
                         auxiliaries={k: {"path": paths[k], "sha256": sha256[k]} for k in IN_LOSS},
                         **kwargs)
        for k in IN_LOSS:
            self.register_buffer(f"sha256_{k}", _hash_tensor(sha256[k]))

    def set_epoch(self, epoch: int) -> None:  # the loop counts from 1, the objective from 0
        super().set_epoch(int(epoch) - 1)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items()
                if not k.startswith("model.")}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        for k in IN_LOSS:
            saved = state.get(f"sha256_{k}")
            if saved is None:
                continue
            have = getattr(self, f"sha256_{k}")
            if not torch.equal(saved.cpu(), have.cpu()):
                raise ConfigError(
                    f"san.{k}={self.auxiliaries[k]['path']}: SHA-256 {bytes(have.tolist()).hex()[:12]}... "
                    f"differs from the one this run's checkpoints were trained with "
                    f"({bytes(saved.tolist()).hex()[:12]}...); restore that file or start a new run.name"
                )


# ------------------------------------------------------------------ stage 1


def _stage1_config(cfg: SANConfig, key: str, storage: Path) -> TrainConfig:
    """The config of the stage-1 run training ``san.<key>`` (module docstring)."""
    base = dataclasses.asdict(cfg)
    data = dict(base["data"], grayscale=True, split_by=cfg.data.split_by or "identity",
                include=None, max_train_samples=None)
    run = dict(base["run"], storage=str(storage), name=key, output=None, export=False,
               plot=False, score="epoch", score_mode="max", num_to_keep=1, fail_after_epoch=None)
    d: dict[str, Any] = {"data": data, "run": run,
                         "optim": {"epochs": base["optim"]["epochs"]}}
    root = cfg.data.root or ""
    d = apply_overrides(d, [item.replace("{data.root}", root) for item in getattr(cfg.stage1, key)])
    try:  # the full validation runs again in fit
        sub = build_section(_STAGE1_CONFIGS[AUXILIARIES[key]], d)
        validate_common(sub)
        return sub
    except ConfigError as exc:
        raise ConfigError(f"stage1.{key}: {exc}") from None


def _train_stage1(cfg: SANConfig, key: str, storage: Path, out: Any, fit: Any) -> str:
    """Train (or find, when the run folder already holds its last epoch) ``san.<key>``;
    returns its best checkpoint folder."""
    sub = _stage1_config(cfg, key, storage)
    if out is not None:
        print(f"facecore: san stage 1: {key} ({sub.task}, {sub.model.backbone}) in {storage / key}",
              file=out, flush=True)
    res = fit(sub, finalize_run=False, out=out)
    if res.best_checkpoint is None:
        raise ConfigError(f"stage1.{key}: the run wrote no checkpoint")
    return res.best_checkpoint


def _local(run_dir: str) -> Path:
    if "://" in run_dir:
        raise ConfigError("task san: stage 1 needs a local run.storage, or every san.* model given")
    return Path(run_dir)


# ------------------------------------------------------------------ the task


class SANTask(Task):
    name = "san"
    config_class = SANConfig
    label_key = "gender"
    eval_keys = ("identity", "expression")
    split_by = "identity"
    one_photo_per_person = True  # data.split_by: sample (FairFace-540); see bind_dataset
    default_config = "san_synthetic"
    curve_metrics = ("val_privacy", "val_utility", "val_gender_acc_sm", "val_gender_acc_op",
                     "val_match_auc_original", "val_l1_sm")
    # facecore.serving exports a SANAutoencoder once it supports it (prototypes as buffers,
    # optional embedded gender classifier); until then a failed export only warns
    export_required = False
    progress = (
        ("train_rec", "J_D {:.4f}"),
        ("train_gender", "J_G {:.3f}"),
        ("train_match", "J_M {:.4f}"),
        ("val_privacy", "privacy {:.3f}"),
        ("val_utility", "utility {:.3f}"),
    )

    # -- configuration ---------------------------------------------------------------
    def validate(self, cfg: SANConfig) -> None:
        s = cfg.san
        if not s.encoder_channels or any(c < 1 for c in s.encoder_channels):
            raise ConfigError(f"san.encoder_channels must be positive ints, got {s.encoder_channels}")
        if len(s.decoder_channels) != len(s.encoder_channels) or any(c < 1 for c in s.decoder_channels):
            raise ConfigError(
                f"san.decoder_channels must be {len(s.encoder_channels)} positive ints (as "
                f"san.encoder_channels), got {s.decoder_channels}")
        if not 0 <= s.pool_levels <= len(s.encoder_channels):
            raise ConfigError(f"san.pool_levels must be in [0, {len(s.encoder_channels)}], got {s.pool_levels}")
        if cfg.data.image_size % (2 ** s.pool_levels):
            raise ConfigError(f"data.image_size={cfg.data.image_size} must be a multiple of "
                              f"2 ** san.pool_levels = {2 ** s.pool_levels}")
        if not 0 < s.prototype_gain < float("inf"):
            raise ConfigError(f"san.prototype_gain must be a positive number, got {s.prototype_gain}")
        for key in ("lambda_rec", "lambda_gender", "lambda_match"):
            if not getattr(s, key) >= 0:
                raise ConfigError(f"san.{key} must be >= 0, got {getattr(s, key)}")
        if s.lambda_rec == 0 and s.lambda_match == 0:
            raise ConfigError("san.lambda_rec and san.lambda_match are both 0: nothing keeps the "
                              "face (the autoencoder collapses to prototypes)")
        for key in ("pretrain_epochs", "match_warmup_epochs"):
            if getattr(s, key) < 0:
                raise ConfigError(f"san.{key} must be >= 0, got {getattr(s, key)}")
        if s.pretrain_epochs >= cfg.optim.epochs and s.lambda_gender > 0:
            raise ConfigError(f"san.pretrain_epochs={s.pretrain_epochs} leaves no epoch with the "
                              f"gender loss (optim.epochs={cfg.optim.epochs})")
        if s.sha256:
            for k, v in s.sha256.items():
                if k not in AUXILIARIES:
                    raise ConfigError(f"san.sha256.{k}: unknown model; models: {', '.join(AUXILIARIES)}")
                try:
                    ok = len(bytes.fromhex(v)) == 32
                except ValueError:
                    ok = False
                if not ok:
                    raise ConfigError(f"san.sha256.{k} must be 64 hex digits, got {v!r}")
        if any(b <= 0 for b in s.blur) or any(b < 1 for b in s.pixelate):
            raise ConfigError(f"san.blur must be sigmas > 0 and san.pixelate block sizes >= 1, got "
                              f"{s.blur} and {s.pixelate}")
        if s.max_impostors < 1 or s.max_val_images < 2:
            raise ConfigError("san.max_impostors must be >= 1 and san.max_val_images >= 2")
        if cfg.data.split_by not in (None, "identity", "sample"):
            raise ConfigError("data.split_by must be null, identity or sample (one photo per "
                              "person) for task san")
        for key in AUXILIARIES:
            for item in getattr(cfg.stage1, key):
                if "=" not in item:
                    raise ConfigError(f"stage1.{key}: each entry must be KEY=VALUE, got {item!r}")

    def describe(self, cfg: SANConfig) -> str:
        s = cfg.san
        return (f"lambda_rec {s.lambda_rec:g}, lambda_gender {s.lambda_gender:g}, lambda_match "
                f"{s.lambda_match:g}, {s.reconstruction}")

    def before_fit(self, cfg: SANConfig, *, fit: Any = None, run_dir: str = "", out: Any = None) -> SANConfig:
        """Stage 1 (module docstring): every ``san.*`` model trained or checked, hashed; the
        AE-only baseline trained when asked. Returns the config with paths and hashes."""
        s = cfg.san
        stage1 = None
        paths = {}
        for key in AUXILIARIES:
            path = getattr(s, key)
            if path is None:
                stage1 = stage1 or _local(run_dir) / "stage1"
                path = _train_stage1(cfg, key, stage1, out, fit)
            paths[key] = str(Path(path).expanduser().resolve()) if "://" not in str(path) else path
        sha = dict(s.sha256 or {})
        for key, path in paths.items():
            f = checkpoint_file(path)
            if not f.is_file():
                raise ConfigError(f"san.{key}: training checkpoint not found: {path}")
            have = file_sha256(f)
            if key in sha and sha[key] != have:
                raise ConfigError(f"san.{key}={path}: SHA-256 {have[:12]}... differs from "
                                  f"san.sha256.{key} {sha[key][:12]}...")
            sha[key] = have
            model, info = auxiliary(dataclasses.replace(cfg, san=dataclasses.replace(
                s, **{key: path}, sha256=sha)), key)
            want = {"gender_classifier": "gender", "unseen_gender_classifier": "gender"}.get(key, "embedding")
            if info["task"] != want:
                raise ConfigError(f"san.{key}={path} is a {info['task']!r} checkpoint, expected {want!r}")
            if info["image_size"] != cfg.data.image_size:
                raise ConfigError(f"san.{key}={path} takes {info['image_size']} px faces, the SAN "
                                  f"data.image_size is {cfg.data.image_size}")
            if out is not None:
                val = ", ".join(f"{k} {v:.3f}" for k, v in info["valid"].items()
                                if k in ("val_accuracy", "val_auc", "val_eer"))
                print(f"facecore: san.{key}: {path} (sha256 {have[:12]}...; {val})", file=out, flush=True)
        new = dataclasses.replace(s, sha256=sha, **paths)
        if s.ae_baseline and s.lambda_gender > 0 and s.ae_baseline_checkpoint is None:
            base = dataclasses.replace(
                cfg, san=dataclasses.replace(new, lambda_gender=0.0, ae_baseline=False),
                run=dataclasses.replace(cfg.run, storage=str(_local(run_dir) / "stage1"),
                                        name="ae_only", output=None, export=False, plot=False,
                                        fail_after_epoch=None))
            if out is not None:
                print("facecore: san stage 1: the autoencoder-only baseline (lambda_gender 0)",
                      file=out, flush=True)
            res = fit(base, finalize_run=False, out=out)
            new = dataclasses.replace(new, ae_baseline_checkpoint=res.best_checkpoint)
        return dataclasses.replace(cfg, san=new)

    # -- data --------------------------------------------------------------------------
    def preprocess(self, cfg: SANConfig, default: Any) -> Any:
        """Grayscale faces in [0, 1] (no normalisation: the autoencoder's input and output
        range); resize / crop / flip as the data section says."""
        return dataclasses.replace(default, grayscale=True, mean=(0.0, 0.0, 0.0),
                                   std=(1.0, 1.0, 1.0))

    def bind_dataset(self, cfg: SANConfig, dataset: Any) -> SANConfig:
        """``data.split_by: sample`` is for sets of one photo per person without identity
        labels (FairFace-540: each image is its own person, so a split by image is a split
        by person); on a set with identity labels it would put a person in two splits."""
        if cfg.data.split_by == "sample":
            try:
                ident = dataset.targets("identity")
            except (KeyError, ValueError, AttributeError):
                return cfg
            if len(torch.unique(torch.as_tensor(ident))) < len(ident):
                raise ConfigError(
                    f"data.split_by=sample: data.name={cfg.data.name!r} has several photos per "
                    "person (identity labels); task san splits it by identity (data.split_by: "
                    "identity or null)")
        return cfg

    def num_classes(self, cfg: SANConfig, dataset: Any, targets: torch.Tensor) -> int:
        return 2

    def check_split(self, cfg: SANConfig, split: str, labels: torch.Tensor) -> None:
        if len(torch.unique(labels)) < 2:
            raise ConfigError(f"the {split} split holds one gender only: gender metrics need both; "
                              "change data.fractions or data.seed")

    # -- model and objective ----------------------------------------------------------
    def model_config(self, cfg: SANConfig, num_classes: int) -> dict[str, Any]:
        s = cfg.san
        return {
            "task": "san",
            "image_size": cfg.data.image_size,
            "encoder_channels": list(s.encoder_channels),
            "decoder_channels": list(s.decoder_channels),
            "pool_levels": s.pool_levels,
            "prototype_gain": s.prototype_gain,
            "prototype_reference": s.prototype_reference,
        }

    def initialize(self, cfg: SANConfig, model: nn.Module, splits: Any, *, loaded: frozenset[str]) -> None:
        """The gender prototypes: mean training faces per gender (in the model's buffers, so
        they are in every checkpoint and export)."""
        from facecore.data import compute_gender_prototypes

        if any(k.startswith("prototype_") for k in loaded):
            return
        from torch.utils.data import Subset

        train = Subset(splits.dataset, splits.indices["train"])  # no augmentation
        model.set_prototypes(compute_gender_prototypes(train, batch_size=256))

    def build_objective(self, cfg: SANConfig, model: nn.Module, splits: Any) -> SANTaskObjective:
        s = cfg.san
        if s.sha256 is None or any(k not in s.sha256 for k in IN_LOSS):
            raise ConfigError("san.sha256 is not filled in: run the SAN through facecore.train.fit")
        clf, _ = auxiliary(cfg, "gender_classifier")
        mtc, _ = auxiliary(cfg, "matcher")
        return SANTaskObjective(
            model, clf, mtc, sha256=s.sha256, paths={k: str(getattr(s, k)) for k in IN_LOSS},
            reconstruction=s.reconstruction, lambda_rec=s.lambda_rec,
            lambda_gender=s.lambda_gender, lambda_match=s.lambda_match,
            match_target=s.match_target, pretrain_epochs=s.pretrain_epochs,
            match_warmup_epochs=s.match_warmup_epochs,
        )

    # -- evaluation --------------------------------------------------------------------
    def outputs(self, cfg: SANConfig, model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The grayscale face ``x`` and its SM / NT / OP versions for either gender
        (``sm0`` ... ``op1``): the metrics pick the true gender's."""
        x = to_grayscale(images[:, :1] if images.size(1) == 3 else images)
        out = {"x": x}
        for g in (0, 1):
            gender = torch.full((x.size(0),), float(g), device=x.device)
            sm, nt, op = model(x, gender)
            out.update({f"sm{g}": sm, f"nt{g}": nt, f"op{g}": op})
        return out

    def validation_subset(self, cfg: SANConfig, splits: Any) -> list[int] | None:
        """``san.max_val_images`` faces of whole validation people (the selection the
        metrics make), so the epoch runs the SAN and the evaluators on those only."""
        from facecore.privacy.runs import whole_identities

        idx = torch.as_tensor(splits.indices["valid"], dtype=torch.long)
        if len(idx) <= cfg.san.max_val_images:
            return None
        try:
            ident = torch.as_tensor(splits.dataset.targets("identity"), dtype=torch.long)[idx]
        except (KeyError, AttributeError, ValueError):  # no identities: one face per person
            ident = torch.arange(len(idx))
        return whole_identities(ident, cfg.san.max_val_images, cfg.data.seed).tolist()

    def metrics(self, cfg: SANConfig, out: dict[str, torch.Tensor], train_labels: torch.Tensor,
                split: str) -> dict[str, float]:
        from facecore.privacy.runs import summary_metrics, variants_of

        n = cfg.san.max_val_images if split == "valid" else None
        return summary_metrics(cfg, variants_of(out, limit=n, seed=cfg.data.seed))

    # -- results -----------------------------------------------------------------------
    def plots(self, cfg: SANConfig, test: dict[str, torch.Tensor], outdir: Path) -> dict[str, Path]:
        """The privacy report of the test split (JSON + Markdown + PNGs into
        ``outdir/privacy``)."""
        from facecore.privacy.runs import write_run_report

        return write_run_report(cfg, test, Path(outdir) / "privacy")

    def export_settings(self, cfg: SANConfig, dataset: Any) -> dict[str, Any]:
        return {}

