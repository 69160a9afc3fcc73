"""SAN research / demo driver (issue 11, phase 1): everything in one process, no Ray.

``python -m facecore.privacy.experiment synthetic --out DIR`` and ``... real --out DIR``:

1. faces: synthetic (:class:`facecore.data.SyntheticFaces`, identity-disjoint parts) or
   real (London faces + FairFace-540), grayscale at ``image_size``;
2. auxiliary models (in the SAN loss): gender classifier + matcher, grayscale, trained on
   the ``aux`` part;
3. *unseen* models (never in the loss; another architecture and seed, trained on more data,
   ``unseen`` part) and *validation* models (a third architecture, for choosing settings
   on the ``val`` part without touching the test figures);
4. the SAN (:class:`facecore.models.SANAutoencoder` + :class:`facecore.losses.SANObjective`)
   and the autoencoder-only baseline (``lambda_gender = 0``);
5. evaluation (:mod:`facecore.privacy.evaluation`) of original / SM / NT / OP / AE-only /
   blur / pixelate on the identity-disjoint ``test`` part (and ``val``), report (JSON +
   Markdown) and plots.

Trained auxiliaries are cached under ``DIR/models`` (keyed by their settings), so SAN
variants can be compared without retraining them. The training loops here are plain
single-process loops (phase 2 trains the SAN as the ``san`` task under Ray Train with the
same objective).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facecore.losses.san import SANObjective
from facecore.models import CosFace, FaceEmbedder, GenderClassifier, build_model, model_checkpoint
from facecore.models.san import SAN_DEFAULTS, GrayscaleAdapter, SANAutoencoder
from facecore.privacy.anonymizers import gaussian_blur, pixelate
from facecore.privacy.evaluation import Evaluator, evaluate_variants

__all__ = [
    "FaceSet",
    "SANTrainConfig",
    "augment",
    "build_objective",
    "real_faces",
    "synthetic_faces",
    "train_gender_classifier",
    "train_matcher",
    "train_san",
]

NORM_MEAN, NORM_STD = 0.5, 0.25  # grayscale normalisation of every model here


# ============================================================================ data


@dataclass
class FaceSet:
    """Faces as uint8 RGB ``[N, 3, S, S]`` with ``gender`` / ``identity`` ``[N]`` and named
    parts (index tensors). ``pairs[part] = (gallery, probe)``: the cross-photo protocol's
    index sets *within* the part (``None``: every image against every other)."""

    name: str
    rgb: torch.Tensor
    gender: torch.Tensor
    identity: torch.Tensor
    parts: dict[str, torch.Tensor]
    pairs: dict[str, tuple[list[int], list[int]] | None] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def gray(self, part: str | None = None) -> torch.Tensor:
        """float ``[n, 1, S, S]`` luma in [0, 1] of a part (or all)."""
        x = self.rgb if part is None else self.rgb[self.parts[part]]
        x = x.float() / 255.0
        return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]

    def labels(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.parts[part]
        return self.gender[idx], self.identity[idx]


def synthetic_faces(
    *,
    num_samples: int = 16000,
    image_size: int = 64,
    images_per_identity: int = 8,
    pose_jitter: float = 0.3,
    seed: int = 0,
    fractions: dict[str, float] | None = None,
    cache_dir: str | Path | None = None,
) -> FaceSet:
    """Synthetic faces split by identity into ``aux`` / ``extra`` / ``val`` / ``test``
    (``unseen`` = ``aux`` + ``extra``: the unseen models see more data)."""
    from facecore.data import SyntheticFaces, make_splits

    fr = fractions or {"aux": 0.45, "extra": 0.3, "val": 0.1, "test": 0.15}
    ds = SyntheticFaces(num_samples, image_size=image_size, seed=seed,
                        num_identities=num_samples // images_per_identity, pose_jitter=pose_jitter)
    key = f"synth_n{num_samples}_s{image_size}_k{images_per_identity}_j{pose_jitter}_seed{seed}"
    path = Path(cache_dir) / f"{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        rgb = torch.load(path, weights_only=True)
    else:
        chunks = []
        for i in range(0, len(ds), 512):
            x, _ = ds.batch(range(i, min(len(ds), i + 512)))
            chunks.append((x * 255.0).round().to(torch.uint8))
        rgb = torch.cat(chunks)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(rgb, path)
    gender = ds.targets("gender").long()
    identity = ds.targets("identity").long()
    names = list(fr)
    idx = make_splits(len(ds), [fr[k] for k in names], seed=seed + 1, groups=identity.numpy())
    parts = {k: torch.as_tensor(v, dtype=torch.long) for k, v in zip(names, idx)}
    parts["unseen"] = torch.cat([parts["aux"], parts["extra"]]).sort().values
    return FaceSet("synthetic", rgb, gender, identity, parts,
                   info={"num_samples": num_samples, "image_size": image_size,
                         "images_per_identity": images_per_identity, "pose_jitter": pose_jitter,
                         "seed": seed, "fractions": fr})


def _load_rgb(path: Path, size: int, crop: float = 1.0) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if crop < 1.0:
            w, h = im.size
            cw, ch = round(w * crop), round(h * crop)
            left, top = (w - cw) // 2, (h - ch) // 2
            im = im.crop((left, top, left + cw, top + ch))
        im = im.resize((size, size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous()


def real_faces(
    root: str | Path,
    *,
    image_size: int = 64,
    fairface_crop: float = 0.6,
    seed: int = 0,
    fractions: dict[str, float] | None = None,
) -> FaceSet:
    """London faces (identity-disjoint parts) + FairFace-540 (random parts).

    Parts: ``aux`` (auxiliaries and SAN), ``val``, ``test``; ``unseen`` = ``aux`` (there is
    no more labelled real data: the unseen in-house models differ in architecture and seed
    only; the third-party evaluators are the truly unseen ones). ``london_test`` /
    ``london_val`` keep the London faces of a part, whose ``pairs`` are smiling originals
    (gallery) against neutral probes. FairFace crops are centre crops of
    ``fairface_crop`` x the side (the set's face crops have a wide margin).
    """
    from facecore.data import FairFace, LondonFaces, make_splits

    root = Path(root)
    fr = fractions or {"aux": 0.6, "val": 0.1, "test": 0.3}
    names = list(fr)
    lon = LondonFaces(root / "london_faces", verify=False)
    ff = FairFace(root / "fairface540", verify=False)
    rgb_l = torch.stack([_load_rgb(p, image_size) for p in lon.paths])
    rgb_f = torch.stack([_load_rgb(p, image_size, fairface_crop) for p in ff.paths])
    g_l, id_l = lon.targets("gender").long(), lon.targets("identity").long()
    expr = lon.targets("expression").long()
    g_f = ff.targets("gender").long()
    id_f = torch.arange(len(ff)) + int(id_l.max()) + 1  # one identity per FairFace photo
    split_l = make_splits(len(lon), [fr[k] for k in names], seed=seed + 1, groups=id_l.numpy())
    split_f = make_splits(len(ff), [fr[k] for k in names], seed=seed + 2)
    n_l = len(lon)
    parts: dict[str, torch.Tensor] = {}
    pairs: dict[str, tuple[list[int], list[int]] | None] = {}
    for k, il, jf in zip(names, split_l, split_f):
        parts[k] = torch.as_tensor(sorted(il) + [n_l + j for j in sorted(jf)], dtype=torch.long)
        parts[f"london_{k}"] = torch.as_tensor(sorted(il), dtype=torch.long)
        loc = list(range(len(il)))
        e = expr[torch.as_tensor(sorted(il), dtype=torch.long)]
        pairs[f"london_{k}"] = ([i for i in loc if e[i] == 1], [i for i in loc if e[i] == 0])
        pairs[k] = None
    parts["unseen"] = parts["aux"]
    return FaceSet("real", torch.cat([rgb_l, rgb_f]), torch.cat([g_l, g_f]),
                   torch.cat([id_l, id_f]), parts, pairs,
                   info={"image_size": image_size, "fairface_crop": fairface_crop, "seed": seed,
                         "fractions": fr, "london": len(lon), "fairface": len(ff)})


# ============================================================================ training helpers


def augment(x: torch.Tensor, gen: torch.Generator, *, shift: int = 4, flip: bool = True,
            brightness: float = 0.2, contrast: float = 0.2) -> torch.Tensor:
    """Random translation (reflect-padded, up to ``shift`` px), horizontal flip,
    brightness and contrast jitter of grayscale ``[n, 1, S, S]`` in [0, 1]."""
    n, _, h, w = x.shape
    if shift > 0:
        xp = F.pad(x, (shift, shift, shift, shift), mode="reflect")
        off = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen)
        x = torch.stack([xp[i, :, off[i, 0]: off[i, 0] + h, off[i, 1]: off[i, 1] + w] for i in range(n)])
    if flip:
        m = torch.rand(n, generator=gen) < 0.5
        x = torch.where(m.view(-1, 1, 1, 1), x.flip(-1), x)
    if brightness > 0 or contrast > 0:
        b = 1.0 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * brightness
        c = 1.0 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * contrast
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * c + mean) * b
    return x.clamp(0, 1)


def _cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, total: int, warmup: int = 0) -> None:
    lr = base * (step + 1) / warmup if step < warmup else \
        0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for group in opt.param_groups:
        group["lr"] = lr


def _fit_auxiliary(
    model: GrayscaleAdapter, params: list[torch.nn.Parameter], x: torch.Tensor,
    batch_loss, gen: torch.Generator, *, name: str, epochs: int, batch_size: int, lr: float,
    weight_decay: float, aug: dict[str, Any] | None, log,
) -> GrayscaleAdapter:
    """The plain loop both auxiliaries train with: AdamW + warm-up / cosine per step over
    shuffled batches of ``x`` (augmented with ``gen``), ``batch_loss(augmented, index)``."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = x.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    step = 0
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot = cnt = 0.0
        for i in range(0, n, batch_size):
            b = perm[i: i + batch_size]
            if b.numel() < 2:
                continue
            loss = batch_loss(augment(x[b], gen, **(aug or {})), b)
            _cosine_lr(opt, lr, step, steps, warmup=min(50, steps // 10))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            tot += float(loss.detach()) * b.numel()
            cnt += b.numel()
        log(f"  {name} epoch {ep + 1}/{epochs} loss {tot / max(cnt, 1):.4f}")
    return model.eval()


def train_gender_classifier(
    model: GrayscaleAdapter, x: torch.Tensor, gender: torch.Tensor, *, epochs: int = 8,
    batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0,
    aug: dict[str, Any] | None = None, log=print,
) -> GrayscaleAdapter:
    """Adam + cosine schedule, BCE on augmented grayscale ``x`` [n, 1, S, S] in [0, 1]."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]

    def batch_loss(xb: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(xb).reshape(-1), gender[b].float())

    return _fit_auxiliary(model, params, x, batch_loss, gen, name="gender", epochs=epochs,
                          batch_size=batch_size, lr=lr, weight_decay=weight_decay, aug=aug, log=log)


def train_matcher(
    model: GrayscaleAdapter, x: torch.Tensor, identity: torch.Tensor, *, epochs: int = 12,
    batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0,
    scale: float = 30.0, margin: float = 0.3, aug: dict[str, Any] | None = None, log=print,
) -> GrayscaleAdapter:
    """CosFace (Wang et al. 2018) over the identities of ``x``, Adam + cosine schedule."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    ids, labels = torch.unique(identity, return_inverse=True)
    dim = int(model.model.embedding_dim)
    head = CosFace(dim, len(ids), scale=scale, margin=margin)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())

    def batch_loss(xb: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(model(xb), labels[b]), labels[b])

    return _fit_auxiliary(model, params, x, batch_loss, gen, name="matcher", epochs=epochs,
                          batch_size=batch_size, lr=lr, weight_decay=weight_decay, aug=aug, log=log)


@dataclass
class SANTrainConfig:
    """Everything that defines a SAN run (architecture, loss, schedule, optimisation)."""

    encoder_channels: tuple[int, ...] = tuple(SAN_DEFAULTS["encoder_channels"])
    decoder_channels: tuple[int, ...] = tuple(SAN_DEFAULTS["decoder_channels"])
    pool_levels: int = SAN_DEFAULTS["pool_levels"]
    prototype_gain: float = 1.0
    prototype_reference: str = "none"
    reconstruction: str = "l1"
    lambda_rec: float = 1.0
    lambda_gender: float = 1.0
    lambda_match: float = 64.0
    match_target: str = "sm"
    pretrain_epochs: int = 1
    match_warmup_epochs: int = 0
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    max_images: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["encoder_channels"] = list(self.encoder_channels)
        d["decoder_channels"] = list(self.decoder_channels)
        return d


def build_objective(
    cfg: SANTrainConfig, prototypes: dict[str, torch.Tensor], image_size: int,
    gender_classifier: nn.Module, matcher: nn.Module, *, auxiliaries: dict[str, Any] | None = None,
) -> SANObjective:
    """A fresh SAN (seeded by ``cfg.seed``) inside its objective."""
    torch.manual_seed(cfg.seed)
    model = SANAutoencoder(prototypes, image_size=image_size, encoder_channels=cfg.encoder_channels,
                           decoder_channels=cfg.decoder_channels, pool_levels=cfg.pool_levels,
                           prototype_gain=cfg.prototype_gain, prototype_reference=cfg.prototype_reference)
    return SANObjective(model, gender_classifier, matcher, reconstruction=cfg.reconstruction,
                        lambda_rec=cfg.lambda_rec, lambda_gender=cfg.lambda_gender,
                        lambda_match=cfg.lambda_match, match_target=cfg.match_target,
                        pretrain_epochs=cfg.pretrain_epochs,
                        match_warmup_epochs=cfg.match_warmup_epochs, auxiliaries=auxiliaries)


def train_san(objective: SANObjective, x: torch.Tensor, gender: torch.Tensor, cfg: SANTrainConfig,
              log=print) -> list[dict[str, float]]:
    """Adam (lr ``cfg.lr``, cosine schedule), ``set_epoch`` at each epoch start, the loop
    the phase-2 task runs; returns per-epoch means of the loss terms."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    params = [p for p in objective.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    n = x.shape[0]
    steps = cfg.epochs * (n // cfg.batch_size)
    step = 0
    history = []
    for ep in range(cfg.epochs):
        objective.train()
        objective.set_epoch(ep)
        perm = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        count = 0
        t0 = time.process_time()
        for i in range(0, n - cfg.batch_size + 1, cfg.batch_size):
            b = perm[i: i + cfg.batch_size]
            loss, _, terms = objective(x[b], gender[b])
            _cosine_lr(opt, cfg.lr, step, steps, warmup=min(100, steps // 20))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            count += 1
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        row = {k: v / max(count, 1) for k, v in sums.items()}
        row["epoch"] = ep
        row["cpu_s"] = time.process_time() - t0
        history.append(row)
        log(f"  SAN epoch {ep + 1}/{cfg.epochs} " + " ".join(
            f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch",)))
    objective.eval()
    return history


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 over the state_dict tensors (names and bytes, in order): equal iff the runs
    produced bit-identical weights."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def san_outputs(model: SANAutoencoder, x: torch.Tensor, gender: torch.Tensor, batch: int = 256):
    model.eval()
    outs = [model(x[i: i + batch], gender[i: i + batch].float()) for i in range(0, x.shape[0], batch)]
    return tuple(torch.cat([o[k] for o in outs]) for k in range(3))


@torch.no_grad()
def accuracy_of(model: nn.Module, x: torch.Tensor, gender: torch.Tensor) -> float:
    model.eval()
    logits = torch.cat([model(x[i: i + 256]).reshape(-1) for i in range(0, x.shape[0], 256)])
    return float(((logits > 0).long() == gender).float().mean())


# ============================================================================ model zoo


MODEL_SPECS: dict[str, dict[str, Any]] = {
    # role: (kind, architecture, training part, seed, options)
    "aux_gender": {"kind": "gender", "backbone": "small_cnn", "width": 16, "part": "aux", "seed": 1},
    "aux_matcher": {"kind": "matcher", "backbone": "small_cnn", "width": 16, "dim": 64, "part": "aux",
                    "seed": 2},
    "unseen_gender": {"kind": "gender", "backbone": "resnet10", "width": 16, "part": "unseen", "seed": 11},
    "unseen_matcher": {"kind": "matcher", "backbone": "resnet10", "width": 16, "dim": 128,
                       "part": "unseen", "seed": 12},
    "val_gender": {"kind": "gender", "backbone": "small_cnn", "width": 24, "depth": 3, "part": "extra",
                   "seed": 21},
    "val_matcher": {"kind": "matcher", "backbone": "small_cnn", "width": 24, "depth": 3, "dim": 96,
                    "part": "extra", "seed": 22},
}


def _build_zoo_model(spec: dict[str, Any]) -> GrayscaleAdapter:
    opts = {"depth": spec["depth"]} if "depth" in spec else None
    torch.manual_seed(spec["seed"])
    if spec["kind"] == "gender":
        m = GenderClassifier(spec["backbone"], width=spec["width"], in_channels=1, backbone_options=opts,
                             dropout=spec.get("dropout", 0.0))
    else:
        m = FaceEmbedder(spec["backbone"], spec["dim"], width=spec["width"], in_channels=1,
                         backbone_options=opts)
    return GrayscaleAdapter(m, NORM_MEAN, NORM_STD)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def get_model(name: str, spec: dict[str, Any], faces: FaceSet, train_kw: dict[str, Any],
              cache: Path, log=print) -> tuple[GrayscaleAdapter, dict[str, Any]]:
    """Train (or load from ``cache``) one zoo model; returns it (eval, frozen) and its record
    (path, sha256, settings, training CPU seconds)."""
    from facecore.losses.san import file_sha256

    part = spec["part"] if spec["part"] in faces.parts else "aux"
    key = _digest({"spec": spec, "train": train_kw, "faces": faces.info, "name": faces.name, "part": part})
    path = cache / f"{name}-{key}.pt"
    model = _build_zoo_model(spec)
    record: dict[str, Any] = {"spec": spec, "train": train_kw, "part": part}
    if path.is_file():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model.model.load_state_dict(ckpt["state_dict"])
        record["cpu_s"] = ckpt.get("cpu_s")
        log(f"{name}: loaded {path.name}")
    else:
        log(f"{name}: training on part {part!r} ({len(faces.parts[part])} images)")
        t0 = time.process_time()
        x = faces.gray(part)
        g, ident = faces.labels(part)
        if spec["kind"] == "gender":
            train_gender_classifier(model, x, g, seed=spec["seed"], log=log, **train_kw)
        else:
            train_matcher(model, x, ident, seed=spec["seed"], log=log, **train_kw)
        record["cpu_s"] = time.process_time() - t0
        ckpt = model_checkpoint(model.model)
        ckpt["cpu_s"] = record["cpu_s"]
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, path)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    record["path"] = str(path)
    record["sha256"] = file_sha256(path)
    return model, record


def load_zoo_model(path: str | Path) -> GrayscaleAdapter:
    """A zoo checkpoint (a facecore model checkpoint) wrapped for grayscale [0, 1] input."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    m = build_model(ckpt["config"])
    m.load_state_dict(ckpt["state_dict"])
    return GrayscaleAdapter(m.eval(), NORM_MEAN, NORM_STD)


# ============================================================================ experiment


class _GenderPart(torch.utils.data.Dataset):
    def __init__(self, rgb: torch.Tensor, gender: torch.Tensor) -> None:
        self.rgb, self.gender = rgb, gender

    def __len__(self) -> int:
        return self.rgb.shape[0]

    def __getitem__(self, i: int):
        return self.rgb[i].float() / 255.0, {"gender": int(self.gender[i])}


def prototypes_of(faces: FaceSet, part: str) -> dict[str, torch.Tensor]:
    """RGB gender prototypes of a part (:func:`facecore.data.compute_gender_prototypes`)."""
    from facecore.data import compute_gender_prototypes

    idx = faces.parts[part]
    return compute_gender_prototypes(_GenderPart(faces.rgb[idx], faces.gender[idx]), batch_size=512)


def anonymizer_variants(x: torch.Tensor, blur: list[float], pix: list[int]) -> dict[str, torch.Tensor]:
    out = {}
    for s in blur:
        out[f"blur_{s:g}"] = gaussian_blur(x, float(s))
    for b in pix:
        out[f"pixelate_{b}"] = pixelate(x, int(b))
    return out


def run(kind: str, out: Path, *, data_kw: dict[str, Any], san: SANTrainConfig,
        gender_train: dict[str, Any], matcher_train: dict[str, Any], parts: tuple[str, ...],
        blur: list[float], pix: list[int], third_party: bool, ae_only: bool = True,
        shared_root: str | None = None, prototype_part: str = "aux", log=print) -> dict[str, Any]:
    """One experiment (see the module docstring); returns the summary written to
    ``out/summary.json``."""
    from facecore.privacy.plots import plot_grid, plot_p_female, plot_roc
    from facecore.privacy.report import done_when_checks, equal_utility_table, write_report

    out.mkdir(parents=True, exist_ok=True)
    cache = out.parent / "cache" / "models"
    t_all = time.process_time()
    if kind == "synthetic":
        faces = synthetic_faces(cache_dir=out.parent / "cache", **data_kw)
    else:
        faces = real_faces(shared_root or "/work/shared/data", **data_kw)
    S = faces.rgb.shape[-1]
    log(f"faces: {faces.name} {tuple(faces.rgb.shape)} parts " +
        ", ".join(f"{k}={len(v)}" for k, v in faces.parts.items()))
    zoo, records = {}, {}
    for name, spec in MODEL_SPECS.items():
        kw = gender_train if spec["kind"] == "gender" else matcher_train
        zoo[name], records[name] = get_model(name, spec, faces, kw, cache, log)
    # validation accuracy of the gender classifiers (on the val part)
    xv = faces.gray("val")
    gv, _ = faces.labels("val")
    for name in ("aux_gender", "unseen_gender", "val_gender"):
        records[name]["val_accuracy"] = accuracy_of(zoo[name], xv, gv)
        log(f"{name}: validation accuracy {records[name]['val_accuracy']:.3f} ({len(gv)} faces)")
        for part in ("london_val", "london_test"):  # real faces: the aligned London subset
            if part in faces.parts:
                gp, _ = faces.labels(part)
                acc = accuracy_of(zoo[name], faces.gray(part), gp)
                records[name][f"{part}_accuracy"] = acc
                log(f"{name}: {part} accuracy {acc:.3f} ({len(gp)} faces)")
    protos = prototypes_of(faces, prototype_part)
    aux_ref = {k: {"path": records[k]["path"], "sha256": records[k]["sha256"]}
               for k in ("aux_gender", "aux_matcher")}
    x_train = faces.gray("aux")
    g_train, _ = faces.labels("aux")
    if san.max_images is not None and san.max_images < x_train.shape[0]:
        x_train, g_train = x_train[: san.max_images], g_train[: san.max_images]
    runs = {"san": san}
    if ae_only:
        runs["ae_only"] = dataclasses.replace(san, lambda_gender=0.0)
    models: dict[str, SANAutoencoder] = {}
    history: dict[str, Any] = {}
    cpu: dict[str, float] = {}
    for rname, cfg in runs.items():
        log(f"training {rname}: {cfg.to_dict()}")
        obj = build_objective(cfg, protos, S, zoo["aux_gender"], zoo["aux_matcher"], auxiliaries=aux_ref)
        t0 = time.process_time()
        history[rname] = train_san(obj, x_train, g_train, cfg, log)
        cpu[rname] = time.process_time() - t0
        models[rname] = obj.model
        history[rname + "_weights_sha256"] = weights_sha256(obj.model)
        log(f"{rname}: weights sha256 {history[rname + '_weights_sha256']}")
        torch.save({"config": obj.model.config, "state_dict": obj.model.state_dict(),
                    "objective": obj.config(), "train": cfg.to_dict()}, out / f"{rname}.pt")
    summary: dict[str, Any] = {"kind": kind, "faces": faces.info, "san": san.to_dict(),
                               "prototype_part": prototype_part,
                               "gender_train": gender_train, "matcher_train": matcher_train,
                               "models": records, "history": history, "san_cpu_s": cpu, "parts": {}}
    extra_eval = []
    if third_party:
        from facecore.privacy.thirdparty import third_party_evaluators

        extra_eval = third_party_evaluators()
        log("third-party evaluators: " + (", ".join(e.name for e in extra_eval) or "none installed"))
    for part in parts:
        x = faces.gray(part)
        g, ident = faces.labels(part)
        sm, nt, op = san_outputs(models["san"], x, g)
        variants = {"original": x, "sm": sm, "nt": nt, "op": op}
        if "ae_only" in models:
            variants["ae_only"] = san_outputs(models["ae_only"], x, g)[0]
        variants.update(anonymizer_variants(x, blur, pix))
        evaluators = [
            Evaluator("aux_gender", "gender", zoo["aux_gender"], role="auxiliary"),
            Evaluator("aux_matcher", "matcher", zoo["aux_matcher"], role="auxiliary"),
            Evaluator("unseen_gender", "gender", zoo["unseen_gender"], role="unseen"),
            Evaluator("unseen_matcher", "matcher", zoo["unseen_matcher"], role="unseen"),
            Evaluator("val_gender", "gender", zoo["val_gender"], role="validation"),
            Evaluator("val_matcher", "matcher", zoo["val_matcher"], role="validation"),
        ]
        if part.startswith("london") or kind == "real":
            evaluators += extra_eval
        pr = faces.pairs.get(part)
        t0 = time.process_time()
        res = evaluate_variants(x, variants, g, ident, evaluators,
                                gallery=pr[0] if pr else None, probe=pr[1] if pr else None)
        cpu[f"eval_{part}"] = time.process_time() - t0
        gclf, mtc = ("val_gender", "val_matcher") if part == "val" else ("unseen_gender", "unseen_matcher")
        checks = done_when_checks(res.table, gender=gclf, matcher=mtc, real=kind == "real",
                                  auxiliary_valid_accuracy=records["aux_gender"]["val_accuracy"])
        eq = equal_utility_table(res.table, gender=gclf, matcher=mtc)
        eq += equal_utility_table(res.table, gender=gclf, matcher=mtc, utility="tar@far=0.01")
        tp_checks, tp_eq = [], []
        names = {e.name for e in extra_eval}
        if {"dlib_gender", "dlib_matcher"} <= names and any(e.name == "dlib_gender" for e in evaluators):
            tp_checks = done_when_checks(res.table, gender="dlib_gender", matcher="dlib_matcher",
                                         real=kind == "real",
                                         auxiliary_valid_accuracy=records["aux_gender"]["val_accuracy"])
            tp_eq = equal_utility_table(res.table, gender="dlib_gender", matcher="dlib_matcher")
            tp_eq += equal_utility_table(res.table, gender="dlib_gender", matcher="dlib_matcher",
                                         utility="tar@far=0.01")
        pdir = out / part
        pdir.mkdir(exist_ok=True)
        order = torch.argsort(g, stable=True)
        pick = torch.cat([order[:4], order[-4:]]).tolist()  # 4 men, 4 women
        imgs = [plot_grid({k: variants[k] for k in ("original", "sm", "nt", "op")}, pdir / "grid.png",
                          indices=pick, row_labels=["m" if int(g[i]) == 0 else "f" for i in pick])]
        imgs.append(plot_grid({k: v for k, v in variants.items()}, pdir / "grid_all.png", indices=pick[::2]))
        for mname in res.roc:
            for protocol, curves in res.roc[mname].items():
                keep = {k: curves[k] for k in curves if k in ("original", "sm", "nt", "op", "ae_only")
                        or k in (f"blur_{blur[len(blur) // 2]:g}" if blur else "",
                                 f"pixelate_{pix[len(pix) // 2]}" if pix else "")}
                imgs.append(plot_roc(keep, pdir / f"roc_{mname}_{protocol}.png",
                                     title=f"{mname} ({res.evaluators[mname]}), {protocol}"))
        for cname, probs in res.p_female.items():
            keep = {k: probs[k] for k in ("original", "sm", "nt", "op") if k in probs}
            imgs.append(plot_p_female(keep, g, pdir / f"p_female_{cname}.png",
                                      title=f"{cname} ({res.evaluators[cname]})"))
        meta = {"kind": kind, "part": part, "images": int(x.shape[0]), "faces": faces.info,
                "san": san.to_dict(), "models": {k: {kk: vv for kk, vv in r.items() if kk != "train"}
                                                 for k, r in records.items()},
                "san_cpu_s": cpu}
        write_report(pdir, res, title=f"SAN privacy evaluation: {faces.name}, part {part}",
                     meta=meta, checks=checks + tp_checks, equal_utility_rows=eq + tp_eq,
                     images=[str(p) for p in imgs])
        summary["parts"][part] = {"checks": checks, "third_party_checks": tp_checks,
                                  "equal_utility": eq + tp_eq, "figures": res.table}
        log(f"part {part}: " + "; ".join(f"{c['check']}: {c['value']:.3f} vs {c['target']:.3f} "
                                           f"{'ok' if c['passed'] else 'FAIL'}" for c in checks + tp_checks))
    summary["cpu_s_total"] = time.process_time() - t_all
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True, default=str))
    return summary


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


DEFAULTS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "data": {"num_samples": 16000, "image_size": 64, "pose_jitter": 0.3, "seed": 0},
        "gender_train": {"epochs": 10, "batch_size": 64, "lr": 3e-3},
        "matcher_train": {"epochs": 20, "batch_size": 64, "lr": 3e-3},
        "parts": ["val", "test"],
        "blur": [1, 2, 3, 4, 6],
        "pixelate": [2, 3, 4, 6, 8],
    },
    "real": {
        "data": {"image_size": 64, "seed": 0},
        "gender_train": {"epochs": 60, "batch_size": 32, "lr": 2e-3, "weight_decay": 5e-3},
        "matcher_train": {"epochs": 60, "batch_size": 32, "lr": 2e-3, "weight_decay": 5e-3},
        "parts": ["test", "london_test"],
        "blur": [1, 2, 3, 4, 6],
        "pixelate": [2, 3, 4, 6, 8],
    },
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m facecore.privacy.experiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=sorted(DEFAULTS))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--san", action="append", default=[], metavar="KEY=VALUE",
                   help="SANTrainConfig field (JSON value), e.g. --san lambda_gender=2")
    p.add_argument("--data", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--gender-train", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--matcher-train", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--parts", nargs="+")
    p.add_argument("--no-ae-only", action="store_true")
    p.add_argument("--third-party", action="store_true", help="add the privacy-eval extra's evaluators")
    p.add_argument("--shared-root", default=None)
    p.add_argument("--prototype-part", default="aux",
                   help="part whose faces make the gender prototypes (real: london_aux = aligned only)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    d = copy.deepcopy(DEFAULTS[a.kind])

    def kv(items: list[str]) -> dict[str, Any]:
        out = {}
        for it in items:
            k, sep, v = it.partition("=")
            if not sep:
                raise SystemExit(f"expected KEY=VALUE, got {it!r}")
            out[k] = _parse_value(v)
        return out

    d["data"].update(kv(a.data))
    d["gender_train"].update(kv(a.gender_train))
    d["matcher_train"].update(kv(a.matcher_train))
    san_kw = kv(a.san)
    for k in ("encoder_channels", "decoder_channels"):
        if k in san_kw:
            san_kw[k] = tuple(san_kw[k])
    san = SANTrainConfig(**san_kw)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "command.txt").write_text("python -m facecore.privacy.experiment " + " ".join(argv or __import__("sys").argv[1:]) + "\n")
    return run(a.kind, a.out, data_kw=d["data"], san=san, gender_train=d["gender_train"],
               matcher_train=d["matcher_train"], parts=tuple(a.parts or d["parts"]), blur=d["blur"],
               pix=d["pixelate"], third_party=a.third_party, ae_only=not a.no_ae_only,
               shared_root=a.shared_root, prototype_part=a.prototype_part)


if __name__ == "__main__":
    main()
