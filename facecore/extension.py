"""facecore's compiled operator library (``facecore/_C*.so``).

Importing :mod:`facecore.ops` (which ``import facecore`` does) loads it, which registers
the ops under ``torch.ops.facecore``; every other module that needs the ops imports
:mod:`facecore.ops`.
Production services that load TorchScript or torch.export files containing
facecore ops without importing facecore (or from C++) need the path of the
library: :func:`library_path`. In C++, link it or ``dlopen`` it before
``torch::jit::load`` (see ``csrc/examples/predict_age``).
"""

from __future__ import annotations

import glob
import os

import torch

__all__ = [
    "OP_VERSION",
    "ExtensionError",
    "library_path",
    "load_library",
    "op_version",
    "cuda_version",
    "has_cuda_kernels",
]

# Must equal FACECORE_OP_VERSION in csrc/version.h; a difference means the
# compiled library is stale next to this Python code.
OP_VERSION = 3

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_REBUILD = (
    "Rebuild it in the facecore checkout with `pip install --no-build-isolation -e .` "
    "(or `make build`) after installing the torch you run."
)
_loaded: str | None = None


class ExtensionError(ImportError):
    """The compiled library is missing, stale, or built against another torch."""


def _base_version(v: str) -> str:
    return v.split("+", 1)[0]


def library_path() -> str:
    """Absolute path of the compiled operator library."""
    candidates = sorted(
        glob.glob(os.path.join(_PKG_DIR, "_C*.so")) + glob.glob(os.path.join(_PKG_DIR, "_C*.pyd"))
    )
    if not candidates:
        raise ExtensionError(
            f"facecore's compiled operator library (_C*.so) was not found in {_PKG_DIR}. "
            + _REBUILD
        )
    return candidates[0]


def _build_info() -> dict | None:
    try:
        from facecore._build_info import CUDA_VERSION, TORCH_VERSION, WITH_CUDA
    except ImportError:
        return None
    return {"torch": TORCH_VERSION, "cuda": CUDA_VERSION, "with_cuda": WITH_CUDA}


def load_library() -> str:
    """Load the library once (idempotent) and check it matches this torch and this code.

    Returns the library's path. Raises :class:`ExtensionError` with a message
    saying what to do when it is missing, stale or built against another torch.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    path = library_path()
    info = _build_info()
    running = torch.__version__
    if info is not None and _base_version(info["torch"]) != _base_version(running):
        raise ExtensionError(
            f"facecore's compiled library {path} was built against torch {info['torch']}, "
            f"but torch {running} is installed. " + _REBUILD
        )
    try:
        torch.ops.load_library(path)
    except OSError as e:  # typically undefined symbols from another torch
        built = info["torch"] if info else "an unknown torch"
        raise ExtensionError(
            f"facecore's compiled library {path} could not be loaded ({e}). It was built "
            f"against {built}; torch {running} is installed. " + _REBUILD
        ) from e
    built_torch = torch.ops.facecore._build_torch_version()
    if _base_version(built_torch) != _base_version(running):
        raise ExtensionError(
            f"facecore's compiled library {path} was built against torch {built_torch}, "
            f"but torch {running} is installed. " + _REBUILD
        )
    lib_ops = torch.ops.facecore._op_version()
    if lib_ops != OP_VERSION:
        raise ExtensionError(
            f"facecore's compiled library {path} implements op version {lib_ops}, but this "
            f"facecore Python package expects op version {OP_VERSION}: the build is stale. "
            + _REBUILD
        )
    _loaded = path
    return path


def op_version() -> int:
    """The op-set version of the loaded library (recorded in exported models)."""
    load_library()
    return int(torch.ops.facecore._op_version())


def cuda_version() -> int | None:
    """CUDA version the library's kernels were built with (e.g. 13000), or None."""
    load_library()
    v = int(torch.ops.facecore._cuda_version())
    return None if v < 0 else v


def has_cuda_kernels() -> bool:
    """True when the library was built with its CUDA kernels."""
    return cuda_version() is not None
