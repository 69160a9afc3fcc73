"""The SAN loss-weight sweep (task ``san``, :mod:`facecore.train.tasks.san`) on
:func:`~facecore.train.tune.run_sweep`: a privacy-utility Pareto front.

What a sweep does, in order:

1. **Shared models, trained once before any trial** (:func:`prepare_shared_models`, in
   ``<storage>/<name>/shared``; found again when the command reruns):

   * the frozen **auxiliaries** of the loss (``san.gender_classifier``, ``san.matcher``)
     and the **validation** evaluators (a gender classifier and a matcher of the configured
     unseen recipe with other seeds: ``run.seed + 1000``) -- the SAN task's own stage 1,
     run with the validation evaluators in the ``san.unseen_*`` keys, in
     ``shared/validation/stage1/``;
   * the **autoencoder-only** baseline (``lambda_gender = 0``), measured by the validation
     evaluators: its last epoch's ``val_utility`` is the reference of every trial's
     relative utility;
   * the **unseen test** evaluators (the configured ``stage1.unseen_*`` recipe and seeds:
     another architecture, more data), in ``shared/test/stage1/``: never in the loss, never
     in a trial, only in the final evaluation.

   Every trial's config references these files by path and SHA-256
   (``san.* / san.sha256``), so no trial trains or copies them.

2. **Trials** train the SAN with ``san.lambda_gender = 1`` as the scale and the searched
   ``san.lambda_rec``, ``san.lambda_match``, ``san.pretrain_epochs`` and
   ``san.match_warmup_epochs`` (:data:`SAN_SPACE`). Every epoch a trial reports, on the
   validation split with the validation evaluators:

   * privacy ``val_privacy`` = gender accuracy on SM minus on OP (higher: the OP face hides
     gender while the SM face keeps it);
   * utility ``val_utility_rel`` = matcher ROC AUC, original photo vs SM probe
     (``val_utility``), divided by the autoencoder-only run's.

   **Scalarisation** (ASHA's metric and each trial's choice of epoch):
   ``sweep_score = w_p * val_privacy + w_u * val_utility_rel`` with ``w = (1, 1)`` by
   default (``--weights``): one point of gender-accuracy gap (0.01) is worth 1% of the
   autoencoder-only matcher AUC. ASHA's grace period is at least the largest
   ``pretrain_epochs + match_warmup_epochs + 1`` of the space, so no trial is judged
   before its gender loss has run.

3. **Final evaluation** (:func:`test_evaluator`): every finished trial (stopped early ones
   included) and the autoencoder-only run are evaluated on the identity-disjoint **test**
   split by the **unseen test** evaluators: ``test_privacy``, ``test_utility``,
   ``test_utility_rel`` (relative to the autoencoder-only test utility) and the other
   ``test_*`` figures of :func:`facecore.privacy.runs.summary_metrics`.

4. **Pareto front** of ``test_privacy`` vs ``test_utility_rel`` over the configurations
   (``pareto.csv`` / ``pareto.json`` / ``pareto.png`` with the front highlighted and the
   autoencoder-only point), and the **chosen** trial -- the front configuration with the
   best scalarised test score -- in ``chosen.json`` (its checkpoint, and its export where
   facecore.serving exports SAN models).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from facecore.train.sections import ConfigError, TrainConfig
from facecore.train.tune.space import Dimension, parse_dimension
from facecore.train.tune.sweep import Asha, FinishedTrial, SweepResult, run_sweep

__all__ = [
    "OBJECTIVES",
    "SAN_SPACE",
    "evaluate_san_checkpoint",
    "prepare_shared_models",
    "sweep_san_weights",
    "test_evaluator",
]

#: The default search space (lambda_gender = 1 is the scale). With san_synthetic's CosFace
#: matcher J_M sits near 0.3 (lambda_match 64 makes it the largest term) and the measured
#: settings lie within these ranges (README, privacy section); widen them with --space.
SAN_SPACE = (
    "san.lambda_rec=loguniform:0.3:3",
    "san.lambda_match=choice:4,16,64",
    "san.pretrain_epochs=randint:0:3",
    "san.match_warmup_epochs=randint:0:2",
)
#: Privacy and relative utility, both maximised (module doc).
OBJECTIVES = (("val_privacy", "max"), ("val_utility_rel", "max"))
SHARED_DIR = "shared"
REFERENCE_FILE = "reference.json"
_UNSEEN = ("unseen_gender_classifier", "unseen_matcher")
_VALIDATION_SEED_OFFSET = 1000


def _validation_overrides(items: Sequence[str], seed: int) -> list[str]:
    """The configured unseen recipe with another seed (the last ``run.seed=`` wins)."""
    for item in items:
        key, _, value = item.partition("=")
        if key.strip() == "run.seed":
            seed = int(value)
    return [*items, f"run.seed={seed + _VALIDATION_SEED_OFFSET}"]


def prepare_shared_models(base: TrainConfig, shared: str | Path, *, out: Any = None) -> tuple[TrainConfig, dict[str, Any]]:
    """Train (or find) the models every trial shares (module doc, step 1) in ``shared``.

    Returns the trials' base config (auxiliaries and validation evaluators filled in by
    path and SHA-256, ``lambda_gender = 1``, no AE-only baseline of its own) and
    ``{"validation", "test", "ae_only", "ae_only_valid"}``: the paths and the
    autoencoder-only run's last-epoch validation metrics."""
    from facecore.train.checkpoints import load_checkpoint
    from facecore.train.runner import fit
    from facecore.train.tasks import get_task

    task = get_task("san")
    if not isinstance(base, task.config_class):  # the registry's san config, not a switch
        raise ConfigError(f"the SAN sweep needs a task san config, got task {base.task!r}")
    shared = Path(shared).expanduser().resolve()
    s = base.san
    given = {k: getattr(s, k) for k in _UNSEEN if getattr(s, k)}
    if given:
        raise ConfigError(
            f"the SAN sweep trains its own validation and test evaluators; leave "
            f"{', '.join('san.' + k for k in given)} null (the stage1.unseen_* recipes apply)")
    stage1 = base.stage1
    val_stage1 = dataclasses.replace(stage1, **{
        k: _validation_overrides(getattr(stage1, k), base.run.seed) for k in _UNSEEN})
    # pass 1: auxiliaries, validation evaluators (in the unseen keys), AE-only baseline
    cfg_v = dataclasses.replace(
        base, stage1=val_stage1,
        san=dataclasses.replace(s, lambda_gender=1.0, ae_baseline=True, ae_baseline_checkpoint=None))
    cfg_v = task.before_fit(cfg_v, fit=fit, run_dir=str(shared / "validation"), out=out)
    # pass 2: the unseen test evaluators (the configured recipes), nothing else
    cfg_t = dataclasses.replace(
        base, san=dataclasses.replace(
            cfg_v.san, **{k: None for k in _UNSEEN}, ae_baseline=False,
            sha256={k: v for k, v in cfg_v.san.sha256.items() if k not in _UNSEEN}))
    cfg_t = task.before_fit(cfg_t, fit=fit, run_dir=str(shared / "test"), out=out)
    ae = cfg_v.san.ae_baseline_checkpoint
    ae_valid = {k: v for k, v in load_checkpoint(ae)["metrics"].items() if k.startswith("val_")}
    if not (isinstance(ae_valid.get("val_utility"), (int, float)) and ae_valid["val_utility"] > 0):
        raise ConfigError(f"the autoencoder-only run {ae} reports no positive val_utility")
    info = {
        "validation": {k: getattr(cfg_v.san, k) for k in _UNSEEN},
        "auxiliaries": {k: getattr(cfg_v.san, k) for k in ("gender_classifier", "matcher")},
        "test": {k: getattr(cfg_t.san, k) for k in _UNSEEN},
        "sha256": {**cfg_v.san.sha256, **{f"test_{k}": cfg_t.san.sha256[k] for k in _UNSEEN}},
        "ae_only": ae,
        "ae_only_valid": ae_valid,
    }
    trial_base = dataclasses.replace(
        cfg_v, stage1=base.stage1, san=dataclasses.replace(cfg_v.san, ae_baseline=False))
    return trial_base, info


def evaluate_san_checkpoint(checkpoint: str | Path, test_models: Mapping[str, str]) -> dict[str, float]:
    """A SAN training checkpoint on its config's **test** split with the given unseen
    evaluators (``{"unseen_gender_classifier": path, "unseen_matcher": path}``) instead of
    the ones it trained with: ``test_*`` metrics of the task."""
    from facecore.losses.san import file_sha256
    from facecore.privacy.auxiliaries import checkpoint_file
    from facecore.train.config import config_from_dict, config_to_dict
    from facecore.train.datasets import build_splits
    from facecore.train.evaluation import evaluate, predict_dataset
    from facecore.train.runner import model_from_training_checkpoint

    model, cfg, _ = model_from_training_checkpoint(checkpoint)
    d = config_to_dict(cfg)
    d["san"].update({k: str(v) for k, v in test_models.items()})
    d["san"]["sha256"] = dict(d["san"].get("sha256") or {}, **{
        k: file_sha256(checkpoint_file(v)) for k, v in test_models.items()})
    cfg = config_from_dict(d)
    splits = build_splits(cfg, cache=False)
    cfg = splits.config
    test = predict_dataset(cfg, model, splits.test, batch_size=cfg.data.eval_batch_size)
    return evaluate(cfg, test, splits.labels("train"), "test")


def _reference(path: Path, info: Mapping[str, Any]) -> dict[str, float]:
    """The autoencoder-only run's test metrics with the unseen test evaluators (cached in
    ``shared/reference.json`` by checkpoint and evaluators)."""
    f = path / REFERENCE_FILE
    key = {"checkpoint": str(info["ae_only"]), "test": info["test"], "sha256": info["sha256"]}
    try:
        cached = json.loads(f.read_text())
        if cached.get("key") == key:
            return cached["metrics"]
    except (OSError, ValueError):
        pass
    metrics = evaluate_san_checkpoint(info["ae_only"], info["test"])
    f.write_text(json.dumps({"key": key, "metrics": metrics}, indent=1))
    return metrics


def test_evaluator(info: Mapping[str, Any], reference: Mapping[str, float]) -> Callable[[FinishedTrial], dict[str, float]]:
    """The final evaluation hook (module doc, step 3)."""
    test_models = dict(info["test"])
    ref = float(reference["test_utility"])

    def evaluate_with_unseen_test_models(trial: FinishedTrial) -> dict[str, float]:
        m = evaluate_san_checkpoint(trial.checkpoint, test_models)
        m["test_utility_rel"] = m["test_utility"] / ref if ref else math.nan
        return m

    return evaluate_with_unseen_test_models


def _space(space: Sequence[Dimension | str] | None) -> list[Dimension]:
    items = SAN_SPACE if not space else space
    dims = [parse_dimension(d) if isinstance(d, str) else d for d in items]
    if any(d.key == "san.lambda_gender" for d in dims):
        raise ConfigError("--space san.lambda_gender: lambda_gender = 1 is the scale of the SAN "
                          "sweep; search san.lambda_rec / san.lambda_match instead")
    return dims


def _grace(dims: Sequence[Dimension], base: TrainConfig) -> int:
    """Epochs before the gender loss has run in every configuration (+1)."""
    worst = 1
    for key in ("san.pretrain_epochs", "san.match_warmup_epochs"):
        vals = [int(v) for d in dims if d.key == key for v in d.probes]
        worst += max(vals) if vals else int(getattr(base.san, key.split(".")[1]))
    return worst


def sweep_san_weights(
    base: TrainConfig | None = None,
    *,
    space: Sequence[Dimension | str] | None = None,
    name: str = "san-weights",
    storage: str = "runs/tune",
    num_samples: int = 8,
    asha: Asha | None | bool = True,
    weights: Sequence[float] | None = None,
    export_chosen: bool = True,
    out: Any = None,
    **kwargs: Any,
) -> SweepResult:
    """The SAN loss-weight sweep (module doc). ``base`` defaults to ``san_synthetic``;
    ``space`` to :data:`SAN_SPACE` (``num_samples`` draws); ``asha=True``: ASHA with the
    grace period of the module doc (``None`` / ``False``: none; or an :class:`Asha`).
    ``kwargs``: :func:`run_sweep`'s (``seeds``, ``workers_per_trial``, ...; not
    ``objectives`` / ``evaluate`` / ``reference``, which this sweep defines)."""
    import sys

    from facecore.train.config import load_config
    from facecore.train.sections import check_run_name

    out = sys.stdout if out is None else out
    for k in ("objectives", "evaluate", "reference", "relative", "front"):
        if kwargs.get(k) is not None:
            raise ConfigError(f"the SAN sweep defines {k} itself")
        kwargs.pop(k, None)
    base = base if base is not None else load_config("san_synthetic")
    dims = _space(space)
    if asha is True:
        asha = Asha(grace_period=_grace(dims, base))
    storage_path = Path(storage).expanduser().resolve()
    check_run_name(name, storage_path, key="--name")
    path = storage_path / name
    shared = path / SHARED_DIR
    shared.mkdir(parents=True, exist_ok=True)
    print(f"SAN sweep {name}: shared models (auxiliaries, validation and unseen test evaluators, "
          f"autoencoder-only run) in {shared}", file=out, flush=True)
    trial_base, info = prepare_shared_models(base, shared, out=out)
    ae_valid = info["ae_only_valid"]
    reference = _reference(shared, info)
    (shared / "models.json").write_text(json.dumps({**info, "ae_only_test": reference}, indent=1, default=str))
    print(f"autoencoder-only run: validation privacy {ae_valid.get('val_privacy', math.nan):.3f}, "
          f"utility {ae_valid['val_utility']:.3f}; test privacy {reference['test_privacy']:.3f}, "
          f"utility {reference['test_utility']:.3f} (unseen test evaluators)", file=out, flush=True)
    res = run_sweep(
        trial_base, dims, name=name, storage=storage, num_samples=num_samples, asha=asha or None,
        objectives=list(OBJECTIVES), weights=weights,
        relative={"val_utility": float(ae_valid["val_utility"])},
        evaluate=test_evaluator(info, reference),
        reference={"test_privacy": float(reference["test_privacy"]), "test_utility_rel": 1.0},
        reference_label="autoencoder only", out=out, **kwargs,
    )
    if not res.interrupted:
        res.files["chosen"] = _choose(res, weights, export_chosen, out)
    return res


def _choose(res: SweepResult, weights: Sequence[float] | None, export: bool, out: Any) -> Path:
    """``chosen.json``: the front configuration with the best scalarised test score, its
    best trial (seed) and checkpoint, exported where the SAN exports."""
    from facecore.train.tune.sweep import export_trial

    w = list(weights) if weights else [1.0, 1.0]
    front = res.front or []

    def score(c):
        vals = [c.get("test_privacy_mean"), c.get("test_utility_rel_mean")]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
            return -math.inf
        return w[0] * vals[0] + w[1] * vals[1]

    doc: dict[str, Any] = {"rule": f"front configuration with the largest {w[0]:g} * test_privacy "
                                   f"+ {w[1]:g} * test_utility_rel (means over seeds)"}
    if front:
        best = max(front, key=score)
        same = [t for t in res.trials if all(t.get(p) == best.get(p) for p in res.params)
                and t["status"] in ("finished", "stopped early")]
        trial = max(same, key=lambda t: (t.get("test_privacy", -math.inf) * w[0]
                                         + t.get("test_utility_rel", -math.inf) * w[1]))
        doc.update(params={p: best.get(p) for p in res.params}, score=score(best),
                   trial_id=trial["trial_id"], seed=trial["seed"], checkpoint=trial.get("checkpoint"),
                   test={k: v for k, v in trial.items() if k.startswith("test_")})
        doc["export"] = None
        if export and trial.get("checkpoint"):
            try:
                doc["export"] = str(export_trial(trial, res.path / "chosen" / "export"))
            except (ValueError, NotImplementedError, TypeError) as exc:
                doc["export_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        where = doc["export"] or doc.get("checkpoint")
        print(f"chosen trial {doc['trial_id']} ({', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in doc['params'].items())}): "
              f"test privacy {doc['test'].get('test_privacy', math.nan):.3f}, relative utility "
              f"{doc['test'].get('test_utility_rel', math.nan):.3f}; {where}"
              + (f" (not exported: {doc['export_error']})" if doc.get("export_error") else ""),
              file=out, flush=True)
    f = res.path / "chosen.json"
    f.write_text(json.dumps(doc, indent=1, default=str))
    return f
