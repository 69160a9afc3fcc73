"""One convention for every file facecore writes: ``{"format": "facecore.<kind>",
"format_version": N, "facecore_version": "x.y.z", ...}``.

=========  ==============================================  ==========================
kind       written by                                      read by
=========  ==============================================  ==========================
``model``  :func:`facecore.models.model_checkpoint`        ``model_from_checkpoint``
``train``  the training loop (``checkpoint_epoch_*/``)     resume, ``facecore eval``
``export`` :func:`facecore.export_model` (``metadata.json``) :func:`facecore.load`
=========  ==============================================  ==========================

:func:`load_torch_file` is the one way facecore reads a file written with ``torch.save``
(``torch.load(weights_only=True)``: tensors and plain containers, never code; a truncated,
corrupt or foreign file is one :class:`FormatError` line naming it).
:func:`header` stamps a dict, :func:`check_format` is the one reader-side check: the
``format`` must name the expected kind, and ``format_version`` must be an int no newer
than what this facecore writes (older versions are read; a newer one raises
:class:`ModelVersionError`, which says to upgrade). A leaf module: it imports nothing of
facecore but :mod:`facecore._version` (and torch only inside :func:`load_torch_file`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from typing import Any

from facecore._version import __version__

__all__ = [
    "FORMAT_VERSIONS",
    "FormatError",
    "ModelVersionError",
    "check_format",
    "format_name",
    "header",
    "load_torch_file",
]

#: Current version of each kind (bump when the layout changes; readers accept <= it).
FORMAT_VERSIONS: dict[str, int] = {"model": 1, "train": 1, "export": 1}

_WHAT = {"model": "model checkpoint", "train": "training checkpoint", "export": "export"}


class FormatError(ValueError):
    """Not a facecore file of the expected kind."""


class ModelVersionError(FormatError):
    """A file needs another facecore: a newer format version, or (exports) another op-set
    version of the compiled library."""


def format_name(kind: str) -> str:
    """``"facecore.<kind>"``."""
    if kind not in FORMAT_VERSIONS:
        raise KeyError(f"unknown facecore format kind {kind!r}; known: {list(FORMAT_VERSIONS)}")
    return f"facecore.{kind}"


def header(kind: str) -> dict[str, Any]:
    """``{"format", "format_version", "facecore_version"}`` for a new file of ``kind``."""
    return {
        "format": format_name(kind),
        "format_version": FORMAT_VERSIONS[kind],
        "facecore_version": __version__,
    }


def check_format(obj: Any, kind: str, source: str = "file") -> int:
    """Check that ``obj`` (a loaded dict) is a facecore ``kind`` file this facecore reads;
    returns its ``format_version``.

    Raises :class:`FormatError` (not a mapping, or another ``format``) or
    :class:`ModelVersionError` (a ``format_version`` that is not an int, or newer than
    :data:`FORMAT_VERSIONS` ``[kind]``), each one line naming ``source``.
    """
    name = format_name(kind)
    what = _WHAT[kind]
    if not isinstance(obj, Mapping):
        raise FormatError(
            f"{source} is not a facecore {what} (expected a mapping with format {name!r}, "
            f"got {type(obj).__name__})"
        )
    if obj.get("format") != name:
        raise FormatError(
            f"{source} is not a facecore {what} (format {obj.get('format')!r}, expected {name!r})"
        )
    version = obj.get("format_version")
    current = FORMAT_VERSIONS[kind]
    if isinstance(version, bool) or not isinstance(version, int) or version > current:
        raise ModelVersionError(
            f"{source} has {what} format_version {version!r}; this facecore ({__version__}) "
            f"reads versions up to {current}: upgrade facecore (the file was written by "
            f"facecore {obj.get('facecore_version')})"
        )
    return version


def load_torch_file(path: str | os.PathLike, what: str = "facecore file") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one-line errors:
    ``FileNotFoundError`` (no such file) or :class:`FormatError` naming the file and the
    problem (truncated, corrupt, not written by ``torch.save``, or holding objects other than
    tensors and plain containers). ``what`` names the expected kind in the message."""
    import torch

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"no such {what}: {p!r}")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; its directory is last
        raise FormatError(
            f"{p} is not a readable {what} (truncated, corrupt or not a file written by "
            "torch.save)"
        )
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged archives
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        reason = next((ln for ln in lines if ln.startswith("WeightsUnpickler error")), None)
        detail = reason or (lines[0][:200] if lines else "")
        raise FormatError(
            f"{p} is not a readable {what} ({type(e).__name__}{': ' + detail if detail else ''})"
        ) from None
