"""The export format: file names, output keys per task, and ``metadata.json`` (written by
:mod:`facecore.serving.export`, read and checked here before anything is deserialised).

``metadata.json`` (:mod:`facecore.formats` kind ``export``)::

    {"format": "facecore.export", "format_version": 1, "facecore_version": "0.1.0",
     "task": "age", "op_version": 2, "torch_version": "2.13.0+cpu",
     "preprocess": PreprocessConfig.to_dict(), "class_names": [...], "age_offset": 15.0,
     "output_keys": [...], "outputs": {key: {"shape": [-1, ...], "dtype": ...}},
     "input": {"shape": [-1, 3, S, S], "dtype": "float32", "range": [0, 1], "channels": "RGB"},
     "model": {"class": "AgeEstimator", "config": model.config}}

The same JSON is stored inside ``model.pt`` (``_extra_files``) and ``model.pt2``
(``extra_files``), so either file alone is self-describing.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facecore._version import __version__
from facecore.data.transforms import PreprocessConfig, as_preprocess
from facecore.extension import OP_VERSION, op_version
from facecore.formats import ModelVersionError, check_format, header

__all__ = [
    "EXPORT_FILE",
    "FILE_FORMATS",
    "METADATA_FILE",
    "OUTPUT_KEYS",
    "TASKS",
    "TORCHSCRIPT_FILE",
    "ModelVersionError",
    "build_metadata",
    "check_compatibility",
    "model_task",
    "read_metadata",
]

METADATA_FILE = "metadata.json"
TORCHSCRIPT_FILE = "model.pt"
EXPORT_FILE = "model.pt2"
#: ``export_model(formats=...)`` / ``load(format=...)`` names and their files.
FILE_FORMATS: dict[str, str] = {"torchscript": TORCHSCRIPT_FILE, "export": EXPORT_FILE}

#: Output keys every model of a task returns from ``serve``.
OUTPUT_KEYS: dict[str, tuple[str, ...]] = {
    "age": ("label", "cum_probs", "class_probs", "expected"),
    "gender": ("prob", "label"),
    "binary": ("prob", "label"),
    "embedding": ("embedding",),
}
TASKS = tuple(OUTPUT_KEYS)


def model_task(model: nn.Module) -> str:
    """``model.task``, checked to be an exportable task with a ``serve`` method."""
    task = getattr(model, "task", None)
    if task not in OUTPUT_KEYS:
        raise ValueError(
            f"model.task must be one of {list(TASKS)} (facecore's AgeEstimator, GenderClassifier, "
            f"BinaryAttributeClassifier, FaceEmbedder set it), got {task!r} for "
            f"{type(model).__name__}"
        )
    if not hasattr(model, "serve"):
        raise TypeError(f"{type(model).__name__} has no serve(x) -> Dict[str, Tensor] method")
    return task


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return json.loads(json.dumps(value, default=str))


def build_metadata(
    model: nn.Module,
    outputs: Mapping[str, torch.Tensor],
    *,
    preprocess: PreprocessConfig,
    class_names: Sequence[str] | None,
    age_offset: float | None,
) -> dict[str, Any]:
    """The ``metadata.json`` dict for ``model`` given its outputs on an example batch."""
    task = model_task(model)
    expected_keys = OUTPUT_KEYS[task]
    missing = [k for k in expected_keys if k not in outputs]
    if missing:
        raise ValueError(
            f"{type(model).__name__}.serve must return the keys {list(expected_keys)} for task "
            f"{task!r}; missing {missing} (got {sorted(outputs)})"
        )
    if age_offset is not None and task != "age":
        raise ValueError(f"age_offset applies to age models only, got task {task!r}")
    offset = float(age_offset or 0.0)
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    if task == "age":
        k = int(outputs["class_probs"].shape[1])
        if class_names is None:
            class_names = [f"{offset + i:g}" for i in range(k)]
    elif task in ("gender", "binary"):
        k = 2
    else:
        k = 0
        if class_names is not None:
            raise ValueError("class_names do not apply to embedding models")
    names = [str(c) for c in class_names] if class_names is not None else []
    if task != "embedding" and len(names) != k:
        raise ValueError(f"class_names must have {k} entries for this {task} model, got {names}")
    config = getattr(model, "config", None)
    size = preprocess.input_size
    return {
        **header("export"),
        "task": task,
        "op_version": OP_VERSION,
        "torch_version": torch.__version__,
        "preprocess": preprocess.to_dict(),
        "class_names": names,
        "age_offset": offset,
        "output_keys": list(expected_keys),
        "outputs": {
            key: {"shape": [-1, *map(int, t.shape[1:])], "dtype": str(t.dtype).replace("torch.", "")}
            for key, t in outputs.items()
        },
        "input": {"shape": [-1, 3, size, size], "dtype": "float32", "range": [0.0, 1.0],
                  "channels": "RGB"},
        "model": {
            "class": type(model).__name__,
            "config": _json_safe(dict(config)) if isinstance(config, Mapping) else None,
        },
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an export directory, ``model.pt`` or ``model.pt2`` (without loading it)."""
    path = Path(path)
    if path.is_dir():
        meta_file = path / METADATA_FILE
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path} has no {METADATA_FILE}: not a facecore export")
        return json.loads(meta_file.read_text())
    if not path.is_file():
        raise FileNotFoundError(f"no such facecore model: {str(path)!r}")
    text = _archive_metadata(path)
    if not text and (path.parent / METADATA_FILE).is_file():
        text = (path.parent / METADATA_FILE).read_text()
    if not text:
        raise ValueError(f"{path} carries no facecore metadata: export it with export_model()")
    return json.loads(text)


def _archive_metadata(path: Path) -> str:
    """``metadata.json`` stored in a ``.pt`` / ``.pt2`` zip archive ('' when absent).

    Read from the zip directly, before deserialising the program (whose ops may not
    exist in this facecore), so version checks come first.
    """
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                parts = name.split("/")
                if parts[-1] == METADATA_FILE and len(parts) >= 2 and parts[-2].startswith("extra"):
                    return z.read(name).decode()
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is not a TorchScript / torch.export archive: {e}") from e
    return ""


def check_compatibility(meta: Mapping[str, Any], source: str = "model") -> PreprocessConfig:
    """Check ``meta`` before anything is deserialised; returns its :class:`PreprocessConfig`.

    Raises :class:`~facecore.formats.FormatError` (not a facecore export),
    :class:`ModelVersionError` (a newer metadata format, or another op-set version of the
    compiled library) or ``ValueError`` (unknown task, invalid preprocessing spec).
    """
    check_format(meta, "export", source)
    recorded, lib = meta.get("op_version"), op_version()
    if recorded != lib:
        raise ModelVersionError(
            f"{source} was exported with facecore op version {recorded} (facecore "
            f"{meta.get('facecore_version')}), but the installed facecore library implements op "
            f"version {lib} (facecore {__version__}): re-export the model with the "
            f"installed facecore, or install a facecore release with op version {recorded}"
        )
    if meta.get("task") not in OUTPUT_KEYS:
        raise ValueError(f"{source} has an unknown task {meta.get('task')!r}")
    try:
        return as_preprocess(meta.get("preprocess"))
    except (TypeError, ValueError) as e:  # the one validator's message, with the source
        raise type(e)(f"{source}: {e}") from None
