"""Privacy figures of a trained ``san`` run (the training task
:mod:`facecore.train.tasks.san`): per-epoch summary metrics and the test split's report.

* :func:`variants_of`: the task's evaluation outputs (SM / NT / OP for either gender) ->
  the faces, labels and the SM / NT / OP of each face's true gender;
* :func:`summary_metrics`: the flat metrics of one split with the **unseen** evaluators
  (``gender_acc_<v>``, ``gender_auc_<v>``, ``match_auc_<v>``, ``match_tar1_<v>`` for
  ``v`` in ``original | sm | nt | op``; ``l1_<v>``; ``aux_gender_acc_sm`` /
  ``aux_gender_acc_op`` of the auxiliary classifier; ``privacy`` = ``gender_acc_sm -
  gender_acc_op``, ``utility`` = ``match_auc_sm``), matching on the cross-photo protocol;
* :func:`write_run_report`: the issue's report of the test split (``report.json``,
  ``report.md``, PNGs): every evaluator (auxiliary, unseen, and the third-party dlib ones
  on real faces when the ``privacy-eval`` extra is installed), the autoencoder-only
  baseline, blur and pixelation sweeps, acceptance checks and equal-utility rows.

London faces: the cross-photo genuine pairs are a person's smiling original against the
perturbed neutral photo (``expression`` labels); elsewhere every pair of different photos
of one person. Where there is none (one photo per person, e.g. FairFace-540), matching is
reported on the ``same_photo`` protocol only (each original against its own perturbed
version; :func:`match_protocol`): the per-epoch ``match_*`` figures, the checks and the
equal-utility rows then use it, and the report says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facecore.privacy.auxiliaries import auxiliary
from facecore.privacy.evaluation import Evaluator, evaluate_variants

__all__ = ["match_protocol", "summary_metrics", "variants_of", "whole_identities", "write_run_report"]

MODES = ("sm", "nt", "op")


def whole_identities(identity: torch.Tensor, limit: int | None, seed: int = 0) -> torch.Tensor:
    """Positions of the faces of whole identities, in a seeded random order of the people,
    up to ``limit`` faces (at least two people); every position when ``limit`` is ``None``
    or not below the count."""
    ident = torch.as_tensor(identity).long().reshape(-1)
    if limit is None or len(ident) <= limit:
        return torch.arange(len(ident))
    ids = torch.unique(ident)
    ids = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))]
    counts = torch.stack([(ident == i).sum() for i in ids]).cumsum(0)
    chosen = ids[: max(2, int((counts <= limit).sum()))]
    return torch.nonzero(torch.isin(ident, chosen)).squeeze(1)


def variants_of(out: dict[str, torch.Tensor], *, limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """``{"x", "gender", "identity", "expression" (or None), "sm", "nt", "op"}`` from
    :meth:`SANTask.outputs` (+ ``target`` / ``identity``); ``limit`` keeps whole
    identities, in a seeded random order, up to that many faces."""
    g = out["target"].long().reshape(-1)
    ident = out["identity"].long().reshape(-1) if "identity" in out else torch.arange(len(g))
    keep = whole_identities(ident, limit, seed)
    sel = g[keep].view(-1, 1, 1, 1).bool()
    v: dict[str, Any] = {"x": out["x"][keep], "gender": g[keep], "identity": ident[keep],
                         "expression": out["expression"][keep].long() if "expression" in out else None}
    for m in MODES:
        v[m] = torch.where(sel, out[f"{m}1"][keep], out[f"{m}0"][keep])
    return v


def _pairs(v: dict[str, Any]) -> tuple[list[int] | None, list[int] | None]:
    """Cross-photo gallery / probe: smiling originals vs neutral probes where the faces
    carry expressions (London), else every image."""
    e = v.get("expression")
    if e is None or not (bool((e == 0).any()) and bool((e == 1).any())):
        return None, None
    return torch.nonzero(e == 1).squeeze(1).tolist(), torch.nonzero(e == 0).squeeze(1).tolist()


def match_protocol(v: dict[str, Any]) -> str:
    """``"cross_photo"`` when the faces hold a genuine pair of *different* photos (within
    the gallery / probe of :func:`_pairs`), else ``"same_photo"`` (one photo per person)."""
    gallery, probe = _pairs(v)
    ident = v["identity"]
    ga = torch.arange(len(ident)) if gallery is None else torch.as_tensor(gallery, dtype=torch.long)
    pr = torch.arange(len(ident)) if probe is None else torch.as_tensor(probe, dtype=torch.long)
    genuine = (ident[ga][:, None] == ident[pr][None, :]) & (ga[:, None] != pr[None, :])
    return "cross_photo" if bool(genuine.any()) else "same_photo"


def _evaluators(cfg: Any, keys: tuple[str, ...]) -> list[Evaluator]:
    names = {"gender_classifier": ("aux_gender", "gender", "auxiliary"),
             "matcher": ("aux_matcher", "matcher", "auxiliary"),
             "unseen_gender_classifier": ("unseen_gender", "gender", "unseen"),
             "unseen_matcher": ("unseen_matcher", "matcher", "unseen")}
    out = []
    for key in keys:
        name, kind, role = names[key]
        model, _ = auxiliary(cfg, key)
        out.append(Evaluator(name, kind, model, role=role))
    return out


def summary_metrics(cfg: Any, v: dict[str, Any]) -> dict[str, float]:
    """The per-epoch / test metrics of :class:`SANTask` (module docstring)."""
    ev = _evaluators(cfg, ("gender_classifier", "unseen_gender_classifier", "unseen_matcher"))
    variants = {"original": v["x"], **{m: v[m] for m in MODES}}
    gallery, probe = _pairs(v)
    protocol = match_protocol(v)
    res = evaluate_variants(v["x"], variants, v["gender"], v["identity"], ev, gallery=gallery,
                            probe=probe, protocols=(protocol,),
                            max_impostors=cfg.san.max_impostors)
    t = res.table
    out: dict[str, float] = {}
    for name in variants:
        gm = t[name]["gender"]["unseen_gender"]
        mm = t[name]["match"]["unseen_matcher"][protocol]
        out[f"gender_acc_{name}"] = gm["accuracy"]
        out[f"gender_auc_{name}"] = gm["auc"]
        out[f"match_auc_{name}"] = mm["auc"]
        out[f"match_tar1_{name}"] = mm["tar@far=0.01"]
        if name != "original":
            out[f"l1_{name}"] = t[name]["l1"]
    out["aux_gender_acc_sm"] = t["sm"]["gender"]["aux_gender"]["accuracy"]
    out["aux_gender_acc_op"] = t["op"]["gender"]["aux_gender"]["accuracy"]
    out["privacy"] = out["gender_acc_sm"] - out["gender_acc_op"]
    out["utility"] = out["match_auc_sm"]
    return out


@torch.no_grad()
def _ae_only(cfg: Any, v: dict[str, Any]) -> torch.Tensor | None:
    """SM output of the autoencoder-only baseline (``san.ae_baseline_checkpoint``)."""
    from facecore.models.factory import model_from_checkpoint
    from facecore.train.checkpoints import load_checkpoint

    path = cfg.san.ae_baseline_checkpoint
    if not path or not Path(path).exists():
        return None
    model = model_from_checkpoint(load_checkpoint(path)["model"]).eval()
    x, g = v["x"], v["gender"].float()
    return torch.cat([model(x[i: i + 256], g[i: i + 256])[0] for i in range(0, len(g), 256)])


def write_run_report(cfg: Any, test: dict[str, torch.Tensor], outdir: str | Path) -> dict[str, Path]:
    """The test split's privacy report (module docstring) into ``outdir``; returns the
    PNGs by name (``report.json`` / ``report.md`` are written beside them)."""
    from facecore.privacy.anonymizers import gaussian_blur, pixelate
    from facecore.privacy.plots import plot_grid, plot_p_female, plot_roc
    from facecore.privacy.report import done_when_checks, equal_utility_table, write_report
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    v = variants_of(test)
    x, g = v["x"], v["gender"]
    variants: dict[str, torch.Tensor] = {"original": x, **{m: v[m] for m in MODES}}
    ae = _ae_only(cfg, v)
    if ae is not None:
        variants["ae_only"] = ae
    for s in cfg.san.blur:
        variants[f"blur_{s:g}"] = gaussian_blur(x, float(s))
    for b in cfg.san.pixelate:
        variants[f"pixelate_{b}"] = pixelate(x, int(b))
    evaluators = _evaluators(cfg, ("gender_classifier", "matcher", "unseen_gender_classifier",
                                   "unseen_matcher"))
    real = cfg.data.name != "synthetic"
    if real and cfg.san.third_party:
        from facecore.privacy.thirdparty import third_party_evaluators

        evaluators += third_party_evaluators()
    gallery, probe = _pairs(v)
    protocol = match_protocol(v)
    protocols = ("same_photo", "cross_photo") if protocol == "cross_photo" else ("same_photo",)
    res = evaluate_variants(x, variants, g, v["identity"], evaluators, gallery=gallery, probe=probe,
                            protocols=protocols, max_impostors=cfg.san.max_impostors)
    aux_valid = auxiliary(cfg, "gender_classifier")[1]["valid"].get("val_accuracy")
    checks = done_when_checks(res.table, gender="unseen_gender", matcher="unseen_matcher", real=real,
                              auxiliary_valid_accuracy=aux_valid, protocol=protocol)
    eq = []
    names = [e.name for e in evaluators]
    for gname, mname in (("unseen_gender", "unseen_matcher"), ("dlib_gender", "dlib_matcher")):
        if gname in names and mname in names:
            if gname == "dlib_gender":
                checks += done_when_checks(res.table, gender=gname, matcher=mname, real=real,
                                           auxiliary_valid_accuracy=aux_valid, protocol=protocol)
            for utility in ("auc", "tar@far=0.01"):
                eq += equal_utility_table(res.table, gender=gname, matcher=mname, utility=utility,
                                          protocol=protocol)
    images: dict[str, Path] = {}
    order = torch.argsort(g, stable=True)
    pick = torch.cat([order[:4], order[-4:]]).tolist()  # 4 men, 4 women
    labels = ["male" if int(g[i]) == 0 else "female" for i in pick]
    images["grid"] = plot_grid({k: variants[k] for k in ("original", "sm", "nt", "op")},
                               outdir / "grid.png", indices=pick, row_labels=labels)
    images["grid_all"] = plot_grid(variants, outdir / "grid_all.png", indices=pick[::2],
                                   row_labels=labels[::2])
    mid = [f"blur_{cfg.san.blur[len(cfg.san.blur) // 2]:g}" if cfg.san.blur else "",
           f"pixelate_{cfg.san.pixelate[len(cfg.san.pixelate) // 2]}" if cfg.san.pixelate else ""]
    for mname, protocols in res.roc.items():
        for protocol, curves in protocols.items():
            keep = {k: c for k, c in curves.items() if k in ("original", *MODES, "ae_only", *mid)}
            images[f"roc_{mname}_{protocol}"] = plot_roc(
                keep, outdir / f"roc_{mname}_{protocol}.png",
                title=f"{mname} ({res.evaluators[mname]}), {protocol}")
    for cname, probs in res.p_female.items():
        keep = {k: probs[k] for k in ("original", *MODES) if k in probs}
        images[f"p_female_{cname}"] = plot_p_female(keep, g, outdir / f"p_female_{cname}.png",
                                                    title=f"{cname} ({res.evaluators[cname]})")
    models = {}
    for key in ("gender_classifier", "matcher", "unseen_gender_classifier", "unseen_matcher"):
        info = auxiliary(cfg, key)[1]
        backbone = info["config"].get("backbone") or {}
        models[key] = {"path": getattr(cfg.san, key), "sha256": (cfg.san.sha256 or {}).get(key),
                       "backbone": f"{backbone.get('name')} width {backbone.get('width')}",
                       "valid": {k: round(float(v), 4) for k, v in info["valid"].items()}}
    meta = {"data": cfg.data.name, "test_faces": int(len(g)),
            "test_identities": int(len(torch.unique(v["identity"]))),
            "protocol": "identity-disjoint" if cfg.data.split_by != "sample"
            else "one photo per person, split by image (= by person)", "models": models,
            "san": {k: v for k, v in vars(cfg.san).items() if k not in models and k != "sha256"},
            "ae_baseline_checkpoint": cfg.san.ae_baseline_checkpoint,
            "match_protocol": protocol,
            "cross_photo": "smiling originals vs perturbed neutral photos" if gallery is not None
            else "every pair of different photos of one person" if protocol == "cross_photo"
            else "none: one photo per person, matching is each original against its own "
                 "perturbed version (same_photo)"}
    write_report(outdir, res, title=f"SAN privacy evaluation: {cfg.data.name}, test split",
                 meta=meta, checks=checks, equal_utility_rows=eq,
                 images=[p.name for p in images.values()])
    return images
