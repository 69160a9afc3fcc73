"""Embeddings of a dataset with all its attribute labels: extraction, raw-pixel baseline,
save / load.

An :class:`Embeddings` is ``features`` ``[N, D]`` (float32) plus ``labels`` (``{key: [N]}``,
every attribute of the dataset: ``identity``, ``gender``, ``race``, ``age``, ...), the names
of the label values and ``meta`` (where the vectors came from). It saves as
``<stem>.npz`` (arrays) + ``<stem>.json`` (sidecar: label names, meta, shapes).

Where the vectors come from (:func:`extract_embeddings`):

* any facecore model: an ``nn.Module`` (give its ``preprocess``), a model checkpoint file
  (:func:`facecore.models.model_checkpoint`; give ``preprocess``), a training checkpoint
  (``checkpoint_epoch_NNNN`` folder or its ``checkpoint.pt``; preprocessing from its
  training config) or an exported model (folder, ``model.pt``, ``model.pt2``; loaded with
  :func:`facecore.load`, which checks the op-set version; preprocessing from its metadata);
* ``layer="embedding"``: a :class:`~facecore.models.FaceEmbedder`'s L2-normalised output;
  ``layer="features"``: the backbone's output (the penultimate features of a gender or age
  model, or an embedder's features before its projection); ``"auto"``: ``embedding`` for
  embedders, ``features`` otherwise.

An exported model is rebuilt as the eager model from the config and weights it carries (so
the backbone's features are reachable from either file); its images go through the
preprocessing recorded in the export (resize, centre crop, normalisation).

:func:`pixel_embeddings` is the baseline "embedding": the resized image's pixels.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from facecore.analysis.data import bin_values, dataset_labels, swap_transform

__all__ = [
    "LAYERS",
    "Embeddings",
    "LoadedModel",
    "extract_embeddings",
    "load_analysis_model",
    "pixel_embeddings",
    "training_preprocess",
]

FORMAT = "facecore.embeddings"
FORMAT_VERSION = 1
#: Which output :func:`extract_embeddings` takes.
LAYERS = ("auto", "embedding", "features")


@dataclass
class Embeddings:
    """Vectors of a dataset and its labels (see the module doc)."""

    features: np.ndarray
    labels: dict[str, np.ndarray]
    label_names: dict[str, list[str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.ascontiguousarray(np.asarray(self.features, dtype=np.float32))
        if self.features.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {self.features.shape}")
        n = self.features.shape[0]
        for k, v in list(self.labels.items()):
            v = np.asarray(v)
            if v.shape != (n,):
                raise ValueError(f"label {k!r} has shape {v.shape}, expected ({n},)")
            self.labels[k] = v

    def __len__(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def label(self, key: str) -> np.ndarray:
        """Labels ``key`` ``[N]``; ``KeyError`` naming the keys there are."""
        if key not in self.labels:
            raise KeyError(f"no label {key!r}; these embeddings have {sorted(self.labels)}")
        return self.labels[key]

    def names(self, key: str) -> list[str]:
        """Names of the values ``0..max`` of label ``key`` (the values themselves if unnamed)."""
        v = self.label(key)
        known = list(self.label_names.get(key, []))
        n = int(v.max()) + 1 if v.size and np.issubdtype(v.dtype, np.integer) else 0
        return known + [str(i) for i in range(len(known), n)]

    def subset(self, index: Any) -> Embeddings:
        """The rows ``index`` (a boolean mask or integer indices)."""
        idx = np.asarray(index)
        return Embeddings(
            self.features[idx],
            {k: v[idx] for k, v in self.labels.items()},
            dict(self.label_names),
            dict(self.meta),
        )

    def with_label(self, key: str, values: Any, names: list[str] | None = None) -> Embeddings:
        """A copy with one more (or a replaced) label."""
        labels = dict(self.labels)
        labels[key] = np.asarray(values)
        label_names = dict(self.label_names)
        if names is not None:
            label_names[key] = list(names)
        else:
            label_names.pop(key, None)
        return Embeddings(self.features, labels, label_names, dict(self.meta))

    def binned(self, key: str, edges: list[float], new_key: str | None = None) -> Embeddings:
        """Add ``new_key`` (default ``<key>_bin``): label ``key`` cut at ``edges``
        (``v < edges[0]`` -> 0, ``edges[0] <= v < edges[1]`` -> 1, ...). Bin names use the
        value names of ``key`` where it has them (``"20-29..40-49"``), else the numbers
        (``"<30"``, ``"30-44"``, ``">=45"``)."""
        values, names = bin_values(self.label(key), edges, self.label_names.get(key))
        return self.with_label(new_key or f"{key}_bin", values, names)

    # -- files ----------------------------------------------------------------------------
    @staticmethod
    def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
        p = Path(path)
        stem = p.with_suffix("") if p.suffix in (".npz", ".json") else p
        return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")

    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``<stem>.npz`` and ``<stem>.json`` (``path`` may end in either or neither)."""
        npz, side = self._paths(path)
        npz.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"features": self.features}
        arrays.update({f"label__{k}": v for k, v in self.labels.items()})
        np.savez_compressed(npz, **arrays)
        sidecar = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "count": len(self),
            "dim": self.dim,
            "arrays": npz.name,
            "labels": {
                k: {"dtype": str(v.dtype), "names": self.label_names.get(k)}
                for k, v in self.labels.items()
            },
            "meta": self.meta,
        }
        side.write_text(json.dumps(sidecar, indent=1, default=str) + "\n")
        return npz, side

    @classmethod
    def load(cls, path: str | os.PathLike) -> Embeddings:
        """Read what :meth:`save` wrote (``<stem>``, ``<stem>.npz`` or ``<stem>.json``)."""
        npz, side = cls._paths(path)
        for p in (npz, side):
            if not p.is_file():
                raise FileNotFoundError(f"embeddings file not found: {p}")
        info = json.loads(side.read_text())
        if info.get("format") != FORMAT:
            raise ValueError(f"{side} is not a facecore embeddings sidecar (format {FORMAT!r})")
        if info.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{side} has format_version {info.get('format_version')!r}; this facecore "
                f"reads {FORMAT_VERSION}"
            )
        with np.load(npz, allow_pickle=False) as z:
            features = z["features"]
            labels = {k[len("label__"):]: z[k] for k in z.files if k.startswith("label__")}
        names = {k: v["names"] for k, v in info.get("labels", {}).items() if v.get("names")}
        return cls(features, labels, names, info.get("meta", {}))


# ----------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    """An eager facecore model in eval mode, its preprocessing and where it came from."""

    model: nn.Module
    preprocess: Any  # facecore.data.transforms.PreprocessConfig or None
    source: str
    kind: str  # module | model_checkpoint | training_checkpoint | export
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return str(getattr(self.model, "task", "unknown"))


def _is_export_archive(path: Path) -> bool:
    if path.suffix == ".pt2":
        return True
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/")[-1] == "metadata.json" or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _preprocess_from(value: Any) -> Any:
    from facecore.data.transforms import PreprocessConfig

    if value is None or isinstance(value, PreprocessConfig):
        return value
    if isinstance(value, dict):
        return PreprocessConfig.from_dict(value)
    raise TypeError(f"preprocess must be a PreprocessConfig or a dict, got {type(value).__name__}")


def _from_export(path: Path) -> LoadedModel:
    from facecore.models import build_model
    from facecore.serving import load as load_export

    predictor = load_export(path)  # checks the op-set version first
    meta = predictor.metadata
    config = (meta.get("model") or {}).get("config")
    if not isinstance(config, dict):
        raise ValueError(
            f"{path}: the export records no model config (a user backbone?), so its features "
            "cannot be rebuilt; extract from the eager model instead"
        )
    model = build_model(config)
    state = {
        k[len("model."):]: v for k, v in predictor.module.state_dict().items()
        if k.startswith("model.")
    }
    model.load_state_dict(state, strict=True)
    pre = {k: v for k, v in meta["preprocess"].items()}
    return LoadedModel(
        model.eval(), _preprocess_from(pre), str(path), "export",
        {"age_offset": float(meta.get("age_offset") or 0.0), "class_names": meta.get("class_names")},
    )


def training_preprocess(dataset: str, image_size: int) -> Any:
    """The preprocessing ``facecore train`` uses for ``image_size`` on this kind of data:
    the synthetic one for ``"synthetic"``, the real-image one (CORAL's) otherwise."""
    from facecore.train.config import DataConfig

    name = "synthetic" if dataset == "synthetic" else "folders"
    from facecore.train.datasets import preprocess_for

    return preprocess_for(DataConfig(name=name, image_size=int(image_size)))


def load_analysis_model(source: Any, *, preprocess: Any = None) -> LoadedModel:
    """Any facecore model as a :class:`LoadedModel` (see the module doc for what
    ``source`` may be). ``preprocess`` overrides the recorded preprocessing and is required
    for an ``nn.Module`` or a bare model checkpoint."""
    from facecore.models import model_from_checkpoint

    pre = _preprocess_from(preprocess)
    if isinstance(source, LoadedModel):
        return source if pre is None else LoadedModel(source.model, pre, source.source, source.kind, source.info)
    if isinstance(source, nn.Module):
        if pre is None:
            raise ValueError("an nn.Module needs preprocess= (the PreprocessConfig it was trained with)")
        return LoadedModel(source.eval(), pre, type(source).__name__, "module")
    if isinstance(source, dict):
        ckpt, path = source, "checkpoint dict"
    else:
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(f"model not found: {p}")
        if p.is_dir():
            if (p / "metadata.json").is_file():
                loaded = _from_export(p)
                return loaded if pre is None else LoadedModel(loaded.model, pre, loaded.source, loaded.kind, loaded.info)
            if (p / "checkpoint.pt").is_file():
                p = p / "checkpoint.pt"
            else:
                raise FileNotFoundError(
                    f"{p} holds neither an export (metadata.json) nor a training checkpoint "
                    "(checkpoint.pt)"
                )
        if _is_export_archive(p):
            loaded = _from_export(p)
            return loaded if pre is None else LoadedModel(loaded.model, pre, loaded.source, loaded.kind, loaded.info)
        from facecore.formats import load_torch_file

        ckpt, path = load_torch_file(p, "facecore checkpoint"), str(p)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a facecore checkpoint")
    from facecore.formats import format_name

    if ckpt.get("format") == format_name("model"):
        if pre is None:
            raise ValueError(
                f"{path} is a bare model checkpoint without preprocessing: pass preprocess= "
                "(or use the training checkpoint / export, which record it)"
            )
        return LoadedModel(model_from_checkpoint(ckpt), pre, path, "model_checkpoint")
    if ckpt.get("format") == format_name("train"):
        from facecore.train.checkpoints import load_checkpoint

        if path != "checkpoint dict":
            ckpt = load_checkpoint(path)  # the one reader-side check of training checkpoints
        export = ckpt.get("export") or {}
        model = model_from_checkpoint(ckpt["model"])
        info = {"train_config": ckpt["train_config"], "epoch": ckpt.get("epoch")}
        if "age_offset" in export:
            info["age_offset"] = float(export["age_offset"])
        if export.get("class_names"):
            info["class_names"] = list(export["class_names"])
        recorded = _preprocess_from(export.get("preprocess"))
        return LoadedModel(model, pre or recorded, path, "training_checkpoint", info)
    raise ValueError(
        f"{path} is neither a facecore model checkpoint nor a training checkpoint (format "
        f"{ckpt.get('format')!r})"
    )


def _layer_fn(model: nn.Module, layer: str):
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {list(LAYERS)}, got {layer!r}")
    task = getattr(model, "task", None)
    if layer == "auto":
        layer = "embedding" if task == "embedding" else "features"
    if layer == "embedding":
        if task != "embedding":
            raise ValueError(
                f"layer='embedding' needs a FaceEmbedder; this is a {task!r} model: use "
                "layer='features' (its backbone's output)"
            )
        return layer, model
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"{type(model).__name__} has no backbone module for layer='features'")
    return layer, backbone


def extract_embeddings(
    model: Any,
    dataset: Dataset,
    *,
    layer: str = "auto",
    batch_size: int = 64,
    preprocess: Any = None,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
) -> Embeddings:
    """Run a facecore model over ``dataset`` (batched, no gradients, eval mode) and return
    its embeddings with every label of the dataset; see the module doc."""
    loaded = load_analysis_model(model, preprocess=preprocess)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    layer, fn = _layer_fn(loaded.model, layer)
    fn = fn.to(device).eval()
    labels, names = dataset_labels(dataset)
    parts = []
    with swap_transform(dataset, loaded.preprocess.eval_transform()):
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        with torch.no_grad():
            for images, _ in loader:
                parts.append(fn(images.to(device)).float().cpu())
    feats = torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)
    meta = {
        "source": loaded.source,
        "source_kind": loaded.kind,
        "task": loaded.task,
        "layer": layer,
        "model_config": getattr(loaded.model, "config", None),
        "preprocess": loaded.preprocess.to_dict(),
        "dataset": type(dataset).__name__,
    }
    return Embeddings(feats, labels, names, meta)


def pixel_embeddings(
    dataset: Dataset, *, size: int = 32, grayscale: bool = False, batch_size: int = 128
) -> Embeddings:
    """The raw-pixel baseline: each image resized (shorter side) and centre-cropped to
    ``size x size``, values in [0, 1], flattened (``3 size^2`` values, or ``size^2`` with
    ``grayscale``)."""
    from facecore.data.transforms import PreprocessConfig, eval_pipeline

    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    labels, names = dataset_labels(dataset)
    parts = []
    spec = PreprocessConfig(input_size=size, mean=(0.0,), std=(1.0,), grayscale=grayscale)
    with swap_transform(dataset, eval_pipeline(spec)):
        for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x = images[:, :1] if grayscale else images
            parts.append(x.flatten(1).float())
    feats = torch.cat(parts).numpy()
    meta = {"source": "pixels", "source_kind": "pixels", "layer": "pixels", "size": size,
            "grayscale": grayscale, "dataset": type(dataset).__name__}
    return Embeddings(feats, labels, names, meta)
