"""Export trained facecore models for serving: TorchScript ``model.pt``, torch.export
``model.pt2`` and ``metadata.json``.

What gets exported is a :class:`ServingModule`: the model wrapped with its
preprocessing constants. It takes float images ``[N, 3, S, S]`` with values in
``[0, 1]`` (already resized / center-cropped to ``S = preprocess["input_size"]``,
RGB channel order), normalises them and returns ``model.serve(x)``'s dict:

.. math::
    x' = (g(x) - \\mu) / \\sigma, \\qquad
    g(x) = \\begin{cases} x & \\text{colour} \\\\
    0.299 R + 0.587 G + 0.114 B \\text{ (repeated per channel)} & \\text{grayscale}
    \\end{cases}

(the ITU-R 601-2 luma of Pillow's ``convert("L")``; it maps an image that is
already gray to itself).

Output dicts by task: ``"age"``: ``label`` int64 ``[N]``, ``cum_probs`` ``[N, K-1]``,
``class_probs`` ``[N, K]``, ``expected`` ``[N]``; ``"gender"`` / ``"binary"``:
``prob`` (calibrated P(class 1)) ``[N]`` and ``label`` ``[N]``; ``"embedding"``:
``embedding`` ``[N, D]``.

``metadata.json`` (format :data:`FORMAT_VERSION`) records the task, the facecore,
op-set and torch versions, the preprocessing, class names, age offset, output keys
and shapes and the model's config. The same JSON is stored inside ``model.pt``
(``_extra_files``) and ``model.pt2`` (``extra_files``), so either file alone is
self-describing; the TorchScript module also carries ``task``, ``resize``, ``class_names``,
``age_offset``, ``input_size``, ``op_version`` and ``metadata_json`` as attributes
and a ``check_op_version()`` method (C++ services call it after
``torch::jit::load``). Load with :func:`facecore.load`.
"""


import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facecore.extension import OP_VERSION, load_library

load_library()

__all__ = [
    "FORMAT_VERSION",
    "METADATA_FILE",
    "TORCHSCRIPT_FILE",
    "EXPORT_FILE",
    "TASKS",
    "OUTPUT_KEYS",
    "ServingModule",
    "export_model",
    "build_metadata",
    "normalize_preprocess",
]

#: Version of the layout of ``metadata.json``; readers refuse newer ones.
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
TORCHSCRIPT_FILE = "model.pt"
EXPORT_FILE = "model.pt2"
FORMATS = ("torchscript", "export")

#: Output keys every model of a task returns from ``serve``.
OUTPUT_KEYS: dict[str, tuple[str, ...]] = {
    "age": ("label", "cum_probs", "class_probs", "expected"),
    "gender": ("prob", "label"),
    "binary": ("prob", "label"),
    "embedding": ("embedding",),
}
TASKS = tuple(OUTPUT_KEYS)

# Pillow's "L" conversion (ITU-R 601-2 luma).
_LUMA = (0.299, 0.587, 0.114)


class ServingModule(nn.Module):
    """``model`` with its preprocessing: ``forward(images [N,3,S,S] in [0,1]) -> dict``.

    Scriptable and exportable (dynamic batch). Attributes readable from Python,
    TorchScript and C++ (``module.attr("age_offset")``): ``task``, ``input_size``,
    ``resize`` and ``resize_mode`` (before the center crop), ``class_names``,
    ``age_offset``, ``op_version``, ``metadata_json``.
    """

    task: str
    input_size: int
    resize: int
    resize_mode: str
    grayscale: bool
    class_names: list[str]
    age_offset: float
    op_version: int
    metadata_json: str

    def __init__(
        self,
        model: nn.Module,
        *,
        task: str,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        grayscale: bool = False,
        resize: int | None = None,
        resize_mode: str = "shorter",
        class_names: Sequence[str] | None = None,
        age_offset: float = 0.0,
        metadata_json: str = "{}",
    ) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.input_size = int(input_size)
        self.resize = int(resize or input_size)
        self.resize_mode = str(resize_mode)
        self.grayscale = bool(grayscale)
        self.class_names = [str(c) for c in (class_names or [])]
        self.age_offset = float(age_offset)
        self.op_version = OP_VERSION
        self.metadata_json = metadata_json
        c = len(mean)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("luma", torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1))

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


def normalize_preprocess(preprocess: Any) -> dict[str, Any]:
    """The preprocessing dict recorded in metadata, validated.

    Accepts a ``facecore.data.transforms.PreprocessConfig`` (anything with
    ``to_dict()``) or a mapping with ``input_size``, ``resize`` (size before the
    center crop; ``None`` means ``input_size``), ``mean``, ``std`` (1 or 3 values)
    and optional ``grayscale`` and ``resize_mode`` (``"shorter"``: shorter side to
    ``resize``, the default; ``"square"``: ``resize x resize``). Extra keys are kept.
    """
    if hasattr(preprocess, "to_dict"):
        preprocess = preprocess.to_dict()
    if not isinstance(preprocess, Mapping):
        raise TypeError(
            "preprocess must be a PreprocessConfig or a dict with input_size, resize, mean, std, "
            f"grayscale; got {type(preprocess).__name__}"
        )
    missing = [k for k in ("input_size", "mean", "std") if k not in preprocess]
    if missing:
        raise ValueError(f"preprocess is missing {missing}; it needs input_size, resize, mean, std")
    out = dict(preprocess)
    size = out["input_size"]
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"preprocess['input_size'] must be one int (square crop), got {size}")
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"preprocess['input_size'] must be a positive int, got {size!r}")
    resize = out.get("resize")
    resize = size if resize is None else resize
    if isinstance(resize, bool) or not isinstance(resize, int) or resize < size:
        raise ValueError(
            f"preprocess['resize'] must be an int >= input_size={size} (the shorter side before "
            f"the center crop), got {resize!r}"
        )
    mean = [float(v) for v in out["mean"]]
    std = [float(v) for v in out["std"]]
    if len(mean) not in (1, 3) or len(std) != len(mean):
        raise ValueError(
            f"preprocess mean and std must both have 1 or 3 values, got mean={mean}, std={std}"
        )
    if any(s <= 0 for s in std):
        raise ValueError(f"preprocess['std'] must be positive, got {std}")
    mode = out.get("resize_mode", "shorter")
    if mode not in ("shorter", "square"):
        raise ValueError(f"preprocess['resize_mode'] must be 'shorter' or 'square', got {mode!r}")
    out.update(
        input_size=size,
        resize=resize,
        mean=mean,
        std=std,
        grayscale=bool(out.get("grayscale")),
        resize_mode=mode,
    )
    return out


def _model_task(model: nn.Module) -> str:
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
    preprocess: Mapping[str, Any],
    class_names: Sequence[str] | None,
    age_offset: float | None,
) -> dict[str, Any]:
    """The ``metadata.json`` dict for ``model`` given its outputs on an example batch."""
    import facecore

    task = _model_task(model)
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
    return {
        "format": "facecore-model",
        "format_version": FORMAT_VERSION,
        "task": task,
        "facecore_version": facecore.__version__,
        "op_version": OP_VERSION,
        "torch_version": torch.__version__,
        "preprocess": dict(preprocess),
        "class_names": names,
        "age_offset": offset,
        "output_keys": list(expected_keys),
        "outputs": {
            key: {"shape": [-1, *map(int, t.shape[1:])], "dtype": str(t.dtype).replace("torch.", "")}
            for key, t in outputs.items()
        },
        "input": {"shape": [-1, 3, preprocess["input_size"], preprocess["input_size"]],
                  "dtype": "float32", "range": [0.0, 1.0], "channels": "RGB"},
        "model": {
            "class": type(model).__name__,
            "config": _json_safe(dict(config)) if isinstance(config, Mapping) else None,
        },
    }


def serving_module(
    model: nn.Module,
    *,
    preprocess: Any,
    class_names: Sequence[str] | None = None,
    age_offset: float | None = None,
) -> tuple[ServingModule, dict[str, Any]]:
    """Wrap a copy of ``model`` (in eval mode) as a :class:`ServingModule` and build its metadata."""
    _model_task(model)
    pre = normalize_preprocess(preprocess)
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    module = ServingModule(
        model,
        task=model.task,
        input_size=pre["input_size"],
        mean=pre["mean"],
        std=pre["std"],
        grayscale=pre["grayscale"],
        resize=pre["resize"],
        resize_mode=pre["resize_mode"],
    ).eval()
    example = _example_input(pre["input_size"])
    try:
        with torch.no_grad():
            outputs = module(example)
    except Exception as e:
        raise ValueError(
            f"{type(model).__name__} failed on an example batch of shape {list(example.shape)} "
            f"normalised with preprocess {pre}: {e}"
        ) from e
    meta = build_metadata(
        model, outputs, preprocess=pre, class_names=class_names, age_offset=age_offset
    )
    module.class_names = list(meta["class_names"])
    module.age_offset = float(meta["age_offset"])
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
    preprocess: Any,
    class_names: Sequence[str] | None = None,
    age_offset: float | None = None,
    formats: Iterable[str] = FORMATS,
    verify: bool = True,
) -> dict[str, Path]:
    """Export ``model`` with its preprocessing and labels to ``directory``.

    Args:
        model: a facecore model (``task`` attribute, ``serve(x)`` method taking the
            normalised batch); a copy in eval mode is exported, ``model`` is unchanged.
        directory: created if missing; existing export files are replaced.
        preprocess: ``PreprocessConfig`` or dict (see :func:`normalize_preprocess`).
        class_names: label names; defaults to ``model.class_names`` when present,
            else for age models the ages ``age_offset + k`` (``"15"``, ``"16"``, ...).
        age_offset: age of class 0 (``age = expected + age_offset``); age models only.
        formats: any of ``"torchscript"`` (``model.pt``) and ``"export"``
            (``model.pt2``, batch dimension ``Dim("batch")`` dynamic).
        verify: run each exported program on an example batch and check it equals eager.

    Returns:
        ``{"torchscript": path, "export": path, "metadata": path}`` for what was written.
    """
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats must be a non-empty subset of {list(FORMATS)}, got {formats}")
    module, meta = serving_module(
        model, preprocess=preprocess, class_names=class_names, age_offset=age_offset
    )
    meta_json = json.dumps(meta, indent=2, sort_keys=True)
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    example = _example_input(meta["preprocess"]["input_size"], batch=3)
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
                module, (_example_input(meta["preprocess"]["input_size"]),),
                dynamic_shapes=({0: batch},),
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
    meta_path = out_dir / METADATA_FILE
    meta_path.write_text(meta_json + "\n")
    paths["metadata"] = meta_path
    return paths
