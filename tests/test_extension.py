"""Loading the compiled library: path, idempotence, version checks, clear failures."""

from __future__ import annotations

import os

import pytest
import torch

import facecore
from facecore import extension


def test_library_is_loaded_and_exposed():
    path = facecore.library_path()
    assert os.path.isfile(path) and os.path.basename(path).startswith("_C")
    assert extension.load_library() == path  # idempotent
    assert extension.op_version() == extension.OP_VERSION
    assert torch.ops.facecore._build_torch_version().split("+")[0] == torch.__version__.split("+")[0]


def test_every_op_has_cpu_autograd_and_fake_kernels():
    from torch._library.simple_registry import singleton as registry

    names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("facecore::")]
    ops = [n for n in names if n not in extension_metadata_ops()]
    assert "facecore::coral_loss" in ops and "facecore::corn_loss" in ops
    for name in ops:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU"), name
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "Autograd"), name
        assert registry.find(name).fake_impl.kernel is not None, name


def extension_metadata_ops():
    return {"facecore::_op_version", "facecore::_cuda_version", "facecore::_build_torch_version"}


def test_cuda_kernels_reported_consistently():
    assert extension.has_cuda_kernels() == (extension.cuda_version() is not None)


def test_missing_library_fails_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(extension, "_PKG_DIR", str(tmp_path))
    with pytest.raises(extension.ExtensionError, match=r"was not found .*pip install --no-build-isolation -e \."):
        extension.library_path()


def test_library_built_for_another_torch_fails_clearly(monkeypatch):
    monkeypatch.setattr(extension, "_loaded", None)
    monkeypatch.setattr(
        extension, "_build_info", lambda: {"torch": "2.1.0", "cuda": None, "with_cuda": False}
    )
    with pytest.raises(extension.ExtensionError, match=r"built against torch 2\.1\.0, but torch .* is installed"):
        extension.load_library()


def test_stale_library_fails_clearly(monkeypatch):
    monkeypatch.setattr(extension, "_loaded", None)
    monkeypatch.setattr(extension, "OP_VERSION", extension.OP_VERSION + 1)
    with pytest.raises(extension.ExtensionError, match=r"op version .* the build is stale"):
        extension.load_library()
