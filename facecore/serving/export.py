"""Export trained facecore models for serving: TorchScript ``model.pt``, torch.export
``model.pt2`` and ``metadata.json`` (layout: :mod:`facecore.serving.format`).

What gets exported is a :class:`ServingModule`: the model wrapped with its
preprocessing constants. It takes float images ``[N, 3, S, S]`` with values in
``[0, 1]`` (already resized / center-cropped to ``S = preprocess.input_size``,
RGB channel order), normalises them and returns ``model.serve(x)``'s dict:

.. math::
    x' = (g(x) - \\mu) / \\sigma, \\qquad
    g(x) = \\begin{cases} x & \\text{colour} \\\\
    0.299 R + 0.587 G + 0.114 B \\text{ (repeated per channel)} & \\text{grayscale}
    \\end{cases}

(the ITU-R 601-2 luma of Pillow's ``convert("L")``, :data:`facecore.data.transforms.LUMA`;
it maps an image that is already gray to itself).

Output dicts by task: ``"age"``: ``label`` int64 ``[N]``, ``cum_probs`` ``[N, K-1]``,
``class_probs`` ``[N, K]``, ``expected`` ``[N]``; ``"gender"`` / ``"binary"``:
``prob`` (calibrated P(class 1)) ``[N]`` and ``label`` ``[N]``; ``"embedding"``:
``embedding`` ``[N, D]``.

The TorchScript module carries ``task``, ``input_size``, ``resize``, ``resize_mode``,
``crop_fraction``, ``grayscale``, ``class_names``, ``age_offset``, ``age_unit``,
``op_version`` and ``metadata_json`` as attributes and a ``check_op_version()`` method (C++
services call it after ``torch::jit::load``); a C++ service that resizes images itself
applies ``crop_fraction`` -> ``resize`` -> centre crop, as the Python predictor does
(``csrc/examples/predict_age``).
Load with :func:`facecore.load`.
"""

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import facecore.ops  # noqa: F401  (the compiled ops the models call)
from facecore.data.transforms import LUMA, PreprocessConfig, as_preprocess
from facecore.extension import OP_VERSION
from facecore.serving.format import (
    EXPORT_FILE,
    FILE_FORMATS,
    FILES_KEY,
    METADATA_FILE,
    TORCHSCRIPT_FILE,
    build_metadata,
    file_checksums,
    model_task,
)

__all__ = ["ServingModule", "export_model", "serving_module"]


class ServingModule(nn.Module):
    """``model`` with its preprocessing: ``forward(images [N,3,S,S] in [0,1]) -> dict``.

    Scriptable and exportable (dynamic batch). Attributes readable from Python,
    TorchScript and C++ (``module.attr("age_offset")``): ``task``, ``input_size``,
    ``crop_fraction`` (the centred square of that fraction of the shorter side is kept
    first; 1.0: none), ``resize`` and ``resize_mode`` (before the center crop),
    ``grayscale``, ``class_names``, ``age_offset``, ``age_unit`` (``""`` when unknown or
    not an age model), ``op_version``, ``metadata_json``.
    """

    task: str
    input_size: int
    resize: int
    resize_mode: str
    crop_fraction: float
    grayscale: bool
    class_names: list[str]
    age_offset: float
    age_unit: str
    op_version: int
    metadata_json: str

    def __init__(
        self,
        model: nn.Module,
        *,
        task: str,
        preprocess: PreprocessConfig | Mapping[str, Any],
        class_names: Sequence[str] | None = None,
        age_offset: float = 0.0,
        age_unit: str | None = None,
        metadata_json: str = "{}",
    ) -> None:
        super().__init__()
        pre = as_preprocess(preprocess)
        self.model = model
        self.task = task
        self.input_size = pre.input_size
        self.resize = int(pre.resize)
        self.resize_mode = pre.resize_mode
        self.crop_fraction = float(pre.crop_fraction)
        self.grayscale = pre.grayscale
        self.class_names = [str(c) for c in (class_names or [])]
        self.age_offset = float(age_offset)
        self.age_unit = str(age_unit or "")
        self.op_version = OP_VERSION
        self.metadata_json = metadata_json
        c = pre.channels
        self.register_buffer("mean", torch.tensor(pre.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(pre.std, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("luma", torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dim() != 4 or images.size(1) != 3:
            raise ValueError(
                "images must be a float tensor of shape [N, 3, S, S] with values in [0, 1], got "
                f"shape {list(images.shape)}"
            )
        if images.size(2) != self.input_size or images.size(3) != self.input_size:
            raise ValueError(
                f"images must be {self.input_size}x{self.input_size} pixels (resize and "
                f"center-crop them first), got {images.size(2)}x{images.size(3)}"
            )
        x = images.to(self.mean.dtype)
        channels = self.mean.size(1)
        if self.grayscale or channels == 1:
            x = (x * self.luma).sum(dim=1, keepdim=True)
            if channels != 1:
                x = x.expand(-1, channels, -1, -1)
        x = (x - self.mean) / self.std
        return self.model.serve(x)

    @torch.jit.export
    def library_op_version(self) -> int:
        """Op-set version of the facecore library loaded in this process."""
        return torch.ops.facecore._op_version()

    @torch.jit.export
    def check_op_version(self) -> None:
        """Raise when the loaded facecore library implements another op-set version."""
        lib = self.library_op_version()
        if lib != self.op_version:
            raise RuntimeError(
                f"this model was exported with facecore op version {self.op_version}, but the "
                f"loaded facecore library implements op version {lib}: re-export the model with "
                "the installed "
                "facecore, or install the facecore release it was exported with"
            )


def serving_module(
    model: nn.Module,
    *,
    preprocess: PreprocessConfig | Mapping[str, Any],
    class_names: Sequence[str] | None = None,
    age_offset: float | None = None,
    age_unit: str | None = None,
) -> tuple[ServingModule, dict[str, Any]]:
    """Wrap a copy of ``model`` (in eval mode) as a :class:`ServingModule` and build its metadata."""
    model_task(model)
    pre = as_preprocess(preprocess)
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    module = ServingModule(model, task=model.task, preprocess=pre).eval()
    example = _example_input(pre.input_size)
    try:
        with torch.no_grad():
            outputs = module(example)
    except Exception as e:
        raise ValueError(
            f"{type(model).__name__} failed on an example batch of shape {list(example.shape)} "
            f"normalised with preprocess {pre.to_dict()}: {e}"
        ) from e
    meta = build_metadata(
        model, outputs, preprocess=pre, class_names=class_names, age_offset=age_offset,
        age_unit=age_unit,
    )
    module.class_names = list(meta["class_names"])
    module.age_offset = float(meta["age_offset"])
    module.age_unit = str(meta.get("age_unit") or "")
    module.metadata_json = json.dumps(meta, sort_keys=True)
    return module, meta


def _example_input(size: int, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, size, size, generator=g)


def _check_same(name: str, got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor]):
    for key, w in want.items():
        try:
            torch.testing.assert_close(got[key], w, rtol=1e-4, atol=1e-5)
        except (AssertionError, KeyError) as e:
            raise RuntimeError(f"the {name} model's output {key!r} differs from eager: {e}") from e


def export_model(
    model: nn.Module,
    directory: str | Path,
    *,
    preprocess: PreprocessConfig | Mapping[str, Any],
    class_names: Sequence[str] | None = None,
    age_offset: float | None = None,
    age_unit: str | None = None,
    formats: Iterable[str] = tuple(FILE_FORMATS),
    verify: bool = True,
) -> dict[str, Path]:
    """Export ``model`` with its preprocessing and labels to ``directory``.

    Args:
        model: a facecore model (``task`` attribute, ``serve(x)`` method taking the
            normalised batch); a copy in eval mode is exported, ``model`` is unchanged.
        directory: created if missing; existing export files are replaced.
        preprocess: a :class:`~facecore.data.transforms.PreprocessConfig` (or its
            ``to_dict()`` form); recorded in the metadata as ``to_dict()``.
        class_names: label names; defaults to ``model.class_names`` when present,
            else for age models the ages ``age_offset + k`` (``"15"``, ``"16"``, ...).
        age_offset: age of class 0 (``age = expected + age_offset``); age models only.
            Take it from the dataset that produced the training labels (its reader's
            ``age_offset``; training does this for you).
        age_unit: what the classes count, ``"year"`` or ``"group"`` (the reader's
            ``age_unit``); recorded in the metadata; age models only.
        formats: any of ``"torchscript"`` (``model.pt``) and ``"export"``
            (``model.pt2``, batch dimension ``Dim("batch")`` dynamic).
        verify: run each exported program on an example batch and check it equals eager.

    Returns:
        ``{"torchscript": path, "export": path, "metadata": path}`` for what was written.

    ``metadata.json`` records the SHA-256 of each file written (``files``);
    :func:`facecore.load` refuses a file that no longer matches it. The files are written
    into ``directory`` only (nothing else is created or read). Exported files contain
    code (TorchScript / a torch.export program): hand them only to people who trust you,
    and load only exports you trust (:mod:`facecore.serving.predictor`).
    """
    formats = tuple(formats)
    bad = [f for f in formats if f not in FILE_FORMATS]
    if bad or not formats:
        raise ValueError(
            f"formats must be a non-empty subset of {list(FILE_FORMATS)}, got {formats}"
        )
    module, meta = serving_module(
        model, preprocess=preprocess, class_names=class_names, age_offset=age_offset,
        age_unit=age_unit,
    )
    meta_json = json.dumps(meta, indent=2, sort_keys=True)
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = module.input_size
    example = _example_input(size, batch=3)
    with torch.no_grad():
        want = module(example)

    paths: dict[str, Path] = {}
    if "torchscript" in formats:
        scripted = torch.jit.script(module)
        path = out_dir / TORCHSCRIPT_FILE
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: meta_json})
        if verify:
            with torch.no_grad():
                _check_same("TorchScript", scripted(example), want)
        paths["torchscript"] = path
    if "export" in formats:
        batch = torch.export.Dim("batch")
        try:
            ep = torch.export.export(
                module, (_example_input(size),), dynamic_shapes=({0: batch},)
            )
        except Exception as e:
            raise RuntimeError(
                f"torch.export of {type(model).__name__} with a dynamic batch dimension failed: {e}"
            ) from e
        path = out_dir / EXPORT_FILE
        torch.export.save(ep, str(path), extra_files={METADATA_FILE: meta_json})
        if verify:
            with torch.no_grad():
                _check_same("torch.export", ep.module()(example), want)
        paths["export"] = path
    # The folder's metadata adds the SHA-256 of every file written (checked by load()).
    folder_meta = {**meta, FILES_KEY: file_checksums(out_dir, [p.name for p in paths.values()])}
    meta_path = out_dir / METADATA_FILE
    meta_path.write_text(json.dumps(folder_meta, indent=2, sort_keys=True) + "\n")
    paths["metadata"] = meta_path
    return paths
