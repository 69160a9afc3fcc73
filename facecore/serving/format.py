"""The export format: file names, output keys per task, and ``metadata.json`` (written by
:mod:`facecore.serving.export`, read and checked here before anything is deserialised).

``metadata.json`` (:mod:`facecore.formats` kind ``export``)::

    {"format": "facecore.export", "format_version": 1, "facecore_version": "0.1.0",
     "task": "age", "op_version": 2, "torch_version": "2.13.0+cpu",
     "preprocess": PreprocessConfig.to_dict(), "class_names": [...], "age_offset": 15.0,
     "age_unit": "year",   # age models: "year" | "group" | null (unknown), from the reader
     "output_keys": [...], "outputs": {key: {"shape": [-1, ...], "dtype": ...}},
     "input": {"shape": [-1, 3, S, S], "dtype": "float32", "range": [0, 1], "channels": "RGB"},
     "model": {"class": "AgeEstimator", "config": model.config}}

The same JSON is stored inside ``model.pt`` (``_extra_files``) and ``model.pt2``
(``extra_files``), so either file alone is self-describing. The folder's ``metadata.json``
adds one key the archives cannot hold (a file cannot contain its own digest)::

    "files": {"model.pt": {"sha256": "<64 hex>", "bytes": N}, "model.pt2": {...}}

Loading (:func:`read_export_metadata`) checks, before anything is deserialised: the
SHA-256 of the file about to be loaded against ``files`` (or a digest the caller passes),
that a folder's ``metadata.json`` equals the copy inside the archive (apart from
``files``), then the format and op-set versions (:func:`check_compatibility`). Every
problem is one line naming the file (:class:`ChecksumError`,
:class:`~facecore.formats.FormatError`, :class:`~facecore.formats.ModelVersionError`).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facecore._version import __version__
from facecore.data.readers import AGE_UNITS
from facecore.data.transforms import PreprocessConfig, as_preprocess
from facecore.extension import OP_VERSION, op_version
from facecore.formats import FormatError, ModelVersionError, check_format, header

__all__ = [
    "EXPORT_FILE",
    "FILES_KEY",
    "FILE_FORMATS",
    "METADATA_FILE",
    "OUTPUT_KEYS",
    "TASKS",
    "TORCHSCRIPT_FILE",
    "ChecksumError",
    "ModelVersionError",
    "build_metadata",
    "check_compatibility",
    "check_same_metadata",
    "file_checksums",
    "model_task",
    "read_export_metadata",
    "read_metadata",
    "sha256_file",
]

METADATA_FILE = "metadata.json"
TORCHSCRIPT_FILE = "model.pt"
EXPORT_FILE = "model.pt2"
#: ``export_model(formats=...)`` / ``load(format=...)`` names and their files.
FILE_FORMATS: dict[str, str] = {"torchscript": TORCHSCRIPT_FILE, "export": EXPORT_FILE}
#: The folder metadata's key recording each exported file's SHA-256 and size.
FILES_KEY = "files"


class ChecksumError(ValueError):
    """An export file is not the file that was exported (its SHA-256 differs from the one
    recorded, or it is not listed): changed, corrupted or from another export."""

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
    age_unit: str | None = None,
) -> dict[str, Any]:
    """The ``metadata.json`` dict for ``model`` given its outputs on an example batch.
    Age models also get ``age_unit`` (``"year"`` | ``"group"``: what the classes count,
    as the training reader said; ``null`` when not given)."""
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
    if age_unit is not None and (task != "age" or age_unit not in AGE_UNITS):
        raise ValueError(
            f"age_unit must be one of {' | '.join(AGE_UNITS)} for an age model, got {age_unit!r} "
            f"(task {task!r})"
        )
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
        **({"age_unit": age_unit} if task == "age" else {}),
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


def _parse_json(text: str | bytes, source: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise FormatError(
            f"{source} is not valid JSON ({e}): not a readable facecore export metadata file "
            "(re-export the model)"
        ) from None


def _read_json_file(path: Path) -> Any:
    try:
        text = path.read_bytes()
    except OSError as e:
        raise FormatError(f"{path} cannot be read: {e.strerror or e}") from None
    return _parse_json(text, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an export directory, ``model.pt`` or ``model.pt2`` (without loading it)."""
    path = Path(path)
    if path.is_dir():
        meta_file = path / METADATA_FILE
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path} has no {METADATA_FILE}: not a facecore export")
        return _read_json_file(meta_file)
    if not path.is_file():
        raise FileNotFoundError(f"no such facecore model: {str(path)!r}")
    text = _archive_metadata(path)
    if text:
        return _parse_json(text, f"{path} (its {METADATA_FILE})")
    if (path.parent / METADATA_FILE).is_file():
        return _read_json_file(path.parent / METADATA_FILE)
    raise ValueError(f"{path} carries no facecore metadata: export it with export_model()")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_checksums(directory: str | Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256", "bytes"}}`` of files in ``directory`` (the ``files`` entry)."""
    d = Path(directory)
    return {n: {"sha256": sha256_file(d / n), "bytes": (d / n).stat().st_size} for n in names}


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _verify_checksum(file: Path, folder_meta: Any, sha256: str | None) -> None:
    if sha256 is not None:
        want, where = str(sha256).strip().lower(), "the sha256 passed to load"
        if not _HEX64.fullmatch(want):
            raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    else:
        files = folder_meta.get(FILES_KEY) if isinstance(folder_meta, Mapping) else None
        if files is None:
            return  # a lone file, or an export written before checksums were recorded
        entry = files.get(file.name) if isinstance(files, Mapping) else None
        want = entry.get("sha256") if isinstance(entry, Mapping) else None
        where = str(file.parent / METADATA_FILE)
        if not isinstance(want, str) or not _HEX64.fullmatch(want):
            raise ChecksumError(
                f"{file} has no SHA-256 recorded in {where}: it is not part of that export "
                "(a leftover of an earlier export?); re-export the model or load another file"
            )
    got = sha256_file(file)
    if got != want:
        raise ChecksumError(
            f"{file} does not match its SHA-256 recorded in {where} (recorded {want[:16]}..., "
            f"file {got[:16]}...): the file was changed or corrupted after export; refusing "
            "to load it (re-export the model or restore the original file)"
        )


def read_export_metadata(
    file: str | Path, *, sha256: str | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(metadata, metadata inside the archive or None)`` for the export file ``file``
    (``model.pt`` / ``model.pt2``) about to be loaded, after checking its SHA-256 against
    ``sha256`` or the ``files`` record of the ``metadata.json`` beside it. ``metadata`` is
    that folder file when present (the archive's copy otherwise). Nothing is deserialised.

    Raises :class:`ChecksumError`, :class:`~facecore.formats.FormatError` (unreadable
    JSON, not an archive) or ``ValueError`` (no metadata at all), naming the file.
    """
    file = Path(file)
    folder_file = file.parent / METADATA_FILE
    folder = _read_json_file(folder_file) if folder_file.is_file() else None
    _verify_checksum(file, folder, sha256)
    text = _archive_metadata(file)
    inside = _parse_json(text, f"{file} (its {METADATA_FILE})") if text else None
    if folder is None and inside is None:
        raise ValueError(f"{file} carries no facecore metadata: export it with export_model()")
    return (folder if folder is not None else inside), inside


def check_same_metadata(folder: Mapping[str, Any], inside: Mapping[str, Any], file: Path) -> None:
    """Refuse a folder ``metadata.json`` that differs from the copy inside ``file``."""
    a = {k: v for k, v in folder.items() if k != FILES_KEY}
    b = {k: v for k, v in inside.items() if k != FILES_KEY}
    if a != b:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise FormatError(
            f"{file.parent / METADATA_FILE} differs from the metadata inside {file} (keys "
            f"{keys}): the folder was edited or mixes two exports; re-export the model"
        )


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
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise FormatError(
            f"{path} is not a TorchScript / torch.export archive (truncated, corrupt or another "
            f"kind of file: {e})"
        ) from None
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
