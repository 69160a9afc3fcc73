"""Serving: ``facecore.load(path)`` -> :class:`Predictor` -> typed predictions.

::

    import facecore
    predictor = facecore.load("exported/age")          # dir, model.pt or model.pt2
    [p] = predictor.predict("face.jpg")
    p.age, p.class_probs, p.to_dict()

The predictor decodes images (see :mod:`facecore.serving.inputs` for what it
accepts), applies the recorded evaluation transform
(:func:`facecore.data.transforms.eval_pipeline` of the metadata's
:class:`~facecore.data.transforms.PreprocessConfig`: shorter side to ``resize``, center
crop ``input_size``, Pillow bilinear), batches them and runs the exported module, which
normalises and calls the model's ``serve``. With ``detect=True`` it first crops the
largest face found by OpenCV's Haar cascade (:mod:`facecore.serving.detect`); when none
is found it uses the whole image and says so in the result (``face_detected=False``).

Loading checks the file's recorded op-set version against the installed
library's and refuses a mismatch (:class:`ModelVersionError`): a model exported
against other operator semantics must not silently compute something else.

Security: **loading a model runs code from the file; load only models you trust.** A
TorchScript ``model.pt`` carries TorchScript code that runs when it loads (e.g. a
``__setstate__``) and when it predicts, and can call any operator registered in the
process. A torch.export ``model.pt2`` is not data-only either: torch 2.13's
``torch.export.load`` unpickles parts of the archive with ``pickle`` /
``torch.load(weights_only=False)`` (its example inputs fall back to it, weights and
constants may request it), so a crafted ``.pt2`` runs arbitrary Python when it is loaded
(``tests/test_security.py`` checks this). What facecore adds: before deserialising, the
file's SHA-256 is checked against the one :func:`~facecore.serving.export_model` recorded
in the folder's ``metadata.json`` (or the ``sha256`` you pass), so a file changed after
export is refused (:class:`~facecore.serving.format.ChecksumError`). That protects against
corruption and tampering with the model file alone, not against someone who can rewrite
the whole folder: get exports from a source you trust, and pass ``sha256=`` from a trusted
channel when you load a lone file.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facecore.data.transforms import PreprocessConfig, eval_pipeline
from facecore.formats import FormatError
from facecore.serving import inputs
from facecore.serving.export import serving_module
from facecore.serving.format import (
    FILE_FORMATS,
    METADATA_FILE,
    OUTPUT_KEYS,
    check_compatibility,
    check_same_metadata,
    read_export_metadata,
)

__all__ = [
    "AgePrediction",
    "BinaryPrediction",
    "EmbeddingPrediction",
    "Predictor",
    "load",
]

Box = tuple[int, int, int, int]


class _Result:
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples and arrays become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


@dataclass(frozen=True)
class AgePrediction(_Result):
    """``label``: predicted class (rank) ``k``; ``age = expected + age_offset`` (in years,
    or in groups for a model of age groups: ``Predictor.age_unit``);
    ``class_probs[k] = P(y = k)``; ``cum_probs[k] = P(y > k)``; ``expected = sum_k k P(y=k)``.
    ``face_detected`` / ``face_box`` (``(left, top, right, bottom)`` of the crop) are set
    with ``detect=True``."""

    label: int
    age: float
    class_name: str | None
    class_probs: tuple[float, ...]
    cum_probs: tuple[float, ...]
    expected: float
    face_detected: bool | None = None
    face_box: Box | None = None


@dataclass(frozen=True)
class BinaryPrediction(_Result):
    """``prob`` = calibrated P(class 1) (gender: P(female)); ``label = prob > 0.5``."""

    label: int
    class_name: str
    prob: float
    face_detected: bool | None = None
    face_box: Box | None = None


@dataclass(frozen=True, eq=False)
class EmbeddingPrediction(_Result):
    """L2-normalised face embedding ``[D]`` (read-only float32 array); compare two with the
    dot product (cosine similarity)."""

    embedding: np.ndarray
    face_detected: bool | None = None
    face_box: Box | None = None


Prediction = AgePrediction | BinaryPrediction | EmbeddingPrediction


def _resolve(path: Path, format: str | None) -> Path:
    if format is not None and format not in FILE_FORMATS:
        raise ValueError(
            f"format must be None or one of {' | '.join(FILE_FORMATS)}, got {format!r}"
        )
    if not path.exists():
        raise FileNotFoundError(f"no such facecore model: {str(path)!r}")
    if not path.is_dir():
        if path.suffix not in (".pt", ".pt2"):
            raise ValueError(f"expected an export directory, a .pt or a .pt2 file, got {path}")
        return path
    names = [FILE_FORMATS[format]] if format else list(FILE_FORMATS.values())
    for name in names:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path} contains none of {names}")


def load(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    format: str | None = None,
    sha256: str | None = None,
) -> Predictor:
    """Load an exported model (directory, ``model.pt`` or ``model.pt2``) as a :class:`Predictor`.

    **Loading runs code stored in the file (TorchScript and torch.export alike; see the
    module doc): load only models you trust.**

    A directory loads ``model.pt`` (TorchScript) when present, else ``model.pt2``;
    ``format="torchscript"`` / ``"export"`` chooses explicitly. Before the file is
    deserialised its SHA-256 is checked against ``sha256`` (hex, when given) or the one
    recorded in the ``metadata.json`` beside it (:class:`~facecore.serving.format.ChecksumError`
    when it differs), the folder's ``metadata.json`` must equal the copy inside the file,
    and the op-set version must match the installed library's (:class:`ModelVersionError`).
    A lone file without a ``metadata.json`` beside it is verified only with ``sha256=``.
    """
    path = Path(path)
    file = _resolve(path, format)
    source = str(file)
    # Everything is checked before the program is deserialised (its ops may not exist here,
    # and deserialising runs code from the file).
    meta, inside = read_export_metadata(file, sha256=sha256)
    folder = inside is None or inside is not meta  # meta is the folder's metadata.json
    meta_source = str(file.parent / METADATA_FILE) if folder else source
    pre_size = check_compatibility(meta, source=meta_source).input_size
    if inside is not None and folder:
        check_compatibility(inside, source=source)
        check_same_metadata(meta, inside, file)
    if file.suffix == ".pt2":
        program = _deserialize(file, lambda: torch.export.load(str(file)))
        _check_program_input(program, pre_size, file)
        run: Callable = program.module()
        if _minor(meta.get("torch_version", "")) != _minor(torch.__version__):
            warnings.warn(
                f"{file} was exported with torch {meta.get('torch_version')}; torch "
                f"{torch.__version__} is installed (torch.export files are not guaranteed to "
                "load across torch releases; re-export if results look wrong)",
                stacklevel=2,
            )
        run = run.to(device)
    else:
        run = _deserialize(file, lambda: torch.jit.load(str(file), map_location=device))
        run.eval()
        size = getattr(run, "input_size", pre_size)
        if size != pre_size:
            raise FormatError(
                f"{file}: the model takes {size}x{size} images but its metadata says input_size "
                f"{pre_size}: the metadata was edited or belongs to another model; re-export it"
            )
    return Predictor(run, meta, device=device, source=source)


def _deserialize(file: Path, fn: Callable[[], Any]) -> Any:
    """Run torch's loader quietly (torch.export logs tracebacks of its own) and turn its
    failures into one line naming the file."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torch.export", "torch._export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        raise FormatError(
            f"{file} could not be loaded (truncated, corrupt or not exported by facecore): "
            f"{type(e).__name__}{': ' + lines[-1][:300] if lines else ''}"
        ) from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _check_program_input(program: Any, size: int, file: Path) -> None:
    """The torch.export program's image input must be ``[N, 3, size, size]``."""
    try:
        node = next(n for n in program.graph.nodes if n.op == "placeholder"
                    and n.name in program.graph_signature.user_inputs)
        shape = [int(d) if isinstance(d, int) else None for d in node.meta["val"].shape]
    except (StopIteration, KeyError, AttributeError, TypeError):
        return  # not a program facecore exported: nothing to compare
    if len(shape) == 4 and shape[2:] != [size, size]:
        raise FormatError(
            f"{file}: the program takes {shape[2]}x{shape[3]} images but its metadata says "
            f"input_size {size}: the metadata was edited or belongs to another model; re-export it"
        )


def _minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


class Predictor:
    """Runs an exported (or in-memory) facecore model on images; see :func:`load`.

    Attributes: ``task`` (``"age"``, ``"gender"``, ``"binary"``, ``"embedding"``),
    ``metadata``, ``preprocess_config`` (the metadata's
    :class:`~facecore.data.transforms.PreprocessConfig`, applied by :meth:`preprocess`
    with its ``crop_fraction``), ``input_size``, ``class_names``, ``age_offset``,
    ``age_unit`` (``"year"`` | ``"group"`` | ``None``: what ``age`` counts).
    """

    def __init__(
        self,
        module: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
        metadata: Mapping[str, Any],
        *,
        device: str | torch.device = "cpu",
        source: str = "model",
        min_size: int = 16,
        face_margin: float = 0.25,
    ) -> None:
        self.preprocess_config: PreprocessConfig = check_compatibility(metadata, source)
        self.module = module
        self.metadata = dict(metadata)
        self.device = torch.device(device)
        self.source = source
        self.task: str = metadata["task"]
        self.input_size = self.preprocess_config.input_size
        self._transform = eval_pipeline(self.preprocess_config)
        self.class_names: list[str] = list(metadata.get("class_names") or [])
        self.age_offset = float(metadata.get("age_offset") or 0.0)
        self.age_unit: str | None = metadata.get("age_unit")
        self.min_size = int(min_size)
        self.face_margin = float(face_margin)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        *,
        preprocess: Any,
        class_names: Sequence[str] | None = None,
        age_offset: float | None = None,
        age_unit: str | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> Predictor:
        """A predictor on an eager model (no export), with the same preprocessing."""
        module, meta = serving_module(
            model, preprocess=preprocess, class_names=class_names, age_offset=age_offset,
            age_unit=age_unit,
        )
        return cls(module.to(device), meta, device=device, source=type(model).__name__, **kwargs)

    def __repr__(self) -> str:
        return (
            f"Predictor(task={self.task!r}, input_size={self.input_size}, source={self.source!r})"
        )

    # -- preprocessing --------------------------------------------------------------------
    def preprocess(
        self, images: Any, detect: bool = False
    ) -> tuple[torch.Tensor, list[tuple[bool | None, Box | None]]]:
        """Decode, (detect and crop,) resize and center-crop: ``[N, 3, S, S]`` in [0, 1]."""
        items = inputs.as_image_list(images)
        tensors, faces = [], []
        for i, item in enumerate(items):
            img = inputs.to_rgb(item, i)
            w, h = inputs.image_size(img)
            if min(w, h) < self.min_size:
                raise ValueError(
                    f"image {i} is {w}x{h} pixels, smaller than min_size={self.min_size}: "
                    "pass a face crop of reasonable resolution"
                )
            face: tuple[bool | None, Box | None] = (None, None)
            if detect:
                from facecore.serving.detect import face_crop_box, largest_face

                box = largest_face(img)
                if box is None:
                    face = (False, None)
                else:
                    crop_box = face_crop_box(box, (w, h), self.face_margin)
                    img = inputs.crop(img, crop_box)
                    face = (True, crop_box)
            tensors.append(self._transform(img))
            faces.append(face)
        if not tensors:
            return torch.empty(0, 3, self.input_size, self.input_size), []
        return torch.stack(tensors, 0), faces

    # -- inference ------------------------------------------------------------------------
    def run(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """The module's raw output dict for a preprocessed batch ``[N, 3, S, S]``."""
        with torch.no_grad():
            try:
                out = self.module(batch.to(self.device))
            except torch.jit.Error as e:  # the real message is the last line, not the first
                lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
                raise RuntimeError(f"{self.source}: {lines[-1] if lines else e}") from None
        missing = [k for k in OUTPUT_KEYS[self.task] if k not in out]
        if missing:
            raise RuntimeError(f"{self.source} returned no {missing} for task {self.task!r}")
        return {k: v.detach().cpu() for k, v in out.items()}

    def predict(self, images: Any, batch_size: int = 32, detect: bool = False) -> list[Prediction]:
        """Predict for one image or a list / batch of them; returns one result per image.

        Args:
            images: see :mod:`facecore.serving.inputs` (PIL images, paths, numpy
                arrays, tensors, or lists of these); an empty list gives ``[]``.
            batch_size: images per forward pass.
            detect: crop the largest face (OpenCV Haar cascade) first.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        items = inputs.as_image_list(images)
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            batch, faces = self.preprocess(items[start : start + batch_size], detect)
            out = self.run(batch)
            results.extend(self._results(out, faces))
        return results

    __call__ = predict

    def _results(self, out: dict[str, torch.Tensor], faces) -> list[Prediction]:
        n = len(faces)
        if self.task == "age":
            labels = out["label"].tolist()
            expected = out["expected"].double().tolist()
            cls = out["class_probs"].double().tolist()
            cum = out["cum_probs"].double().tolist()
            return [
                AgePrediction(
                    label=int(labels[i]),
                    age=expected[i] + self.age_offset,
                    class_name=self._name(labels[i]),
                    class_probs=tuple(cls[i]),
                    cum_probs=tuple(cum[i]),
                    expected=expected[i],
                    face_detected=faces[i][0],
                    face_box=faces[i][1],
                )
                for i in range(n)
            ]
        if self.task in ("gender", "binary"):
            labels = out["label"].tolist()
            probs = out["prob"].double().tolist()
            return [
                BinaryPrediction(
                    label=int(labels[i]),
                    class_name=self._name(labels[i]) or str(int(labels[i])),
                    prob=probs[i],
                    face_detected=faces[i][0],
                    face_box=faces[i][1],
                )
                for i in range(n)
            ]
        emb = out["embedding"].float().numpy()
        results = []
        for i in range(n):
            e = emb[i].copy()
            e.flags.writeable = False
            results.append(EmbeddingPrediction(e, faces[i][0], faces[i][1]))
        return results

    def _name(self, label: int) -> str | None:
        return self.class_names[label] if 0 <= label < len(self.class_names) else None
