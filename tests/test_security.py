"""What loading trusts (issue 15, item 4).

* Every ``torch.load`` in facecore uses ``weights_only=True`` and nothing else unpickles
  (an AST guard over the package, checked to catch a violation).
* Loading an export runs code from the file, in both formats (checked here, so the README
  and docstrings state what is true): a TorchScript ``__setstate__`` hook runs on load, and
  torch 2.13's ``torch.export.load`` unpickles a crafted ``.pt2`` with full ``pickle``.
* ``export_model`` records each file's SHA-256 in ``metadata.json``; ``facecore.load``
  verifies it before deserialising, so a changed file is refused and its code never runs.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from serving_cases import make_model

import facecore
from facecore.data.transforms import PreprocessConfig
from facecore.formats import FormatError
from facecore.serving import export_model, load
from facecore.serving.format import ChecksumError

PACKAGE = Path(facecore.__file__).resolve().parent
CONFIG = PreprocessConfig(input_size=32, resize=36, mean=(0.5,) * 3, std=(0.25,) * 3)


# ------------------------------------------------------------------ unpickling guard


def unsafe_loads(source: str, filename: str = "<src>") -> list[str]:
    """Calls that can unpickle arbitrary objects: ``torch.load`` without
    ``weights_only=True``, ``pickle`` / ``dill`` / ``joblib`` loads, ``np.load`` with
    ``allow_pickle=True``, ``torch.serialization.load``."""
    bad = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        where = f"{filename}:{node.lineno}: {name}"
        if name.endswith("torch.load") or name.endswith("serialization.load"):
            wo = kw.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                bad.append(where + " without weights_only=True")
        elif name.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle") and (
            name.endswith(".load") or name.endswith(".loads") or name.endswith("Unpickler")
        ):
            bad.append(where)
        elif name in ("np.load", "numpy.load"):
            ap = kw.get("allow_pickle")
            if isinstance(ap, ast.Constant) and ap.value is True:
                bad.append(where + " with allow_pickle=True")
    return bad


def test_the_guard_catches_unsafe_loads():
    src = (
        "import torch, pickle, numpy as np\n"
        "torch.load('a')\n"
        "torch.load('a', weights_only=False)\n"
        "torch.load('a', map_location='cpu', weights_only=True)\n"
        "pickle.loads(b'')\n"
        "np.load('x.npz', allow_pickle=True)\n"
        "np.load('x.npz', allow_pickle=False)\n"
    )
    assert [b.split(": ", 1)[0] for b in unsafe_loads(src)] == [
        "<src>:2", "<src>:3", "<src>:5", "<src>:6"]


def test_every_torch_load_in_facecore_is_weights_only():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    bad = [b for f in files for b in unsafe_loads(f.read_text(), str(f.relative_to(PACKAGE)))]
    assert bad == []
    # the one loader this guards is really there, and the readers go through it
    assert 'torch.load(p, map_location="cpu", weights_only=True)' in (PACKAGE / "formats.py").read_text()
    for module in ("train/checkpoints.py", "models/factory.py", "data/prototypes.py"):
        assert "load_torch_file(" in (PACKAGE / module).read_text(), module


# ------------------------------------------------------------------ exports and code


@pytest.fixture
def exported(tmp_path):
    d = tmp_path / "export"
    export_model(make_model("gender", seed=2), d, preprocess=CONFIG)
    return d


class _LoadHook(torch.nn.Module):
    """A TorchScript module whose __setstate__ runs code when the file is loaded."""

    def __init__(self):
        super().__init__()
        self.x = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"prob": x.mean((1, 2, 3)), "label": x.mean((1, 2, 3)).long()}

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.x, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        print("facecore-test: load hook ran")
        self.x = state[0]
        self.training = state[1]


def _hooked_pt(path: Path, meta_json: str) -> Path:
    torch.jit.save(torch.jit.script(_LoadHook()), str(path),
                   _extra_files={"metadata.json": meta_json})
    return path


def _metadata_inside(d: Path) -> str:
    with zipfile.ZipFile(d / "model.pt") as z:
        return z.read(next(n for n in z.namelist() if n.endswith("extra/metadata.json"))).decode()


def test_torchscript_load_runs_code_unless_the_checksum_refuses_it(exported, tmp_path, capfd):
    meta_json = _metadata_inside(exported)
    # a lone file (no metadata.json, no sha256): the hook runs, as in torch.jit.load
    lone = _hooked_pt(tmp_path / "model.pt", meta_json)
    capfd.readouterr()
    load(lone)
    assert "facecore-test: load hook ran" in capfd.readouterr().out
    # the same file swapped into an export folder: refused before it is deserialised
    _hooked_pt(exported / "model.pt", meta_json)
    with pytest.raises(ChecksumError, match=r"model.pt does not match its SHA-256 recorded in .*"
                       r"metadata.json .*changed or corrupted after export; refusing"):
        load(exported)
    with pytest.raises(ChecksumError):
        load(exported / "model.pt")  # the file path: the metadata.json beside it counts
    assert "load hook ran" not in capfd.readouterr().out
    # a digest from a trusted channel protects a lone file too
    with pytest.raises(ChecksumError, match="the sha256 passed to load"):
        load(lone, sha256="0" * 64)


def _evil_pt2(src: Path, dst: Path, marker: Path) -> Path:
    """``src`` with its example inputs replaced by a pickle whose loading creates ``marker``."""

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    torch.save(Payload(), buf)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        names = zin.namelist()
        assert any(n.endswith("sample_inputs/model.pt") for n in names)
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("sample_inputs/model.pt"):
                data = buf.getvalue()
            zout.writestr(info, data)
    return dst


def test_pt2_files_are_not_data_only_and_the_checksum_refuses_a_crafted_one(exported, tmp_path):
    import logging

    marker = tmp_path / "code-ran"
    evil = _evil_pt2(exported / "model.pt2", tmp_path / "evil.pt2", marker)
    # what torch 2.13 does with it: arbitrary Python runs inside torch.export.load
    logging.getLogger("torch._export").setLevel(logging.CRITICAL)
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises afterwards
        torch.export.load(str(evil))
    assert marker.exists(), "torch.export.load no longer unpickles: update the README"
    marker.unlink()
    # in an export folder facecore refuses it before torch sees it
    shutil.copy(evil, exported / "model.pt2")
    with pytest.raises(ChecksumError, match="model.pt2 does not match its SHA-256"):
        load(exported, format="export")
    assert not marker.exists()


def test_a_lone_file_loads_with_its_digest_and_untouched_exports_load(exported, tmp_path):
    lone = tmp_path / "lone.pt2"
    shutil.copy(exported / "model.pt2", lone)
    digest = hashlib.sha256(lone.read_bytes()).hexdigest()
    assert load(lone, sha256=digest.upper()).task == "gender"
    with pytest.raises(ValueError, match="sha256 must be 64 hexadecimal digits"):
        load(lone, sha256="abc")
    assert load(exported).task == load(exported, format="export").task == "gender"


def test_files_not_in_the_export_and_edited_metadata_are_refused(exported, tmp_path):
    # a later export of one format leaves the other format's old file: not listed
    export_model(make_model("gender", seed=5), exported, preprocess=CONFIG, formats=["torchscript"])
    with pytest.raises(ChecksumError, match="model.pt2 has no SHA-256 recorded .*not part of that export"):
        load(exported, format="export")
    assert load(exported).task == "gender"
    # an edited metadata.json (input size) no longer matches the archive's own copy
    meta = json.loads((exported / "metadata.json").read_text())
    meta["preprocess"]["input_size"] = 30
    (exported / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match=r"metadata.json differs from the metadata inside "
                       r".*model.pt \(keys \['preprocess'\]\)"):
        load(exported)
