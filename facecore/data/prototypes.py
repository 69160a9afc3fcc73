r"""Gender prototypes for semi-adversarial networks (SAN, Mirjalili et al. 2018).

For a dataset with ``gender`` labels (0 = male, 1 = female) and equally sized image
tensors, the prototypes are per-class mean images

.. math::
    P_m = \frac{1}{n_m}\sum_{g_i = 0} x_i, \qquad P_f = \frac{1}{n_f}\sum_{g_i = 1} x_i,
    \qquad P_n = \frac{n_m P_m + n_f P_f}{n_m + n_f},

the neutral prototype being the class means weighted by class frequency (i.e. the mean
of all images). Saved with ``torch.save`` as a plain dict of tensors, so
``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from facecore.formats import load_torch_file

__all__ = ["compute_gender_prototypes", "load_prototypes", "save_prototypes"]

_KEYS = ("male", "female", "neutral", "counts")


def compute_gender_prototypes(
    dataset: Dataset,
    *,
    image_size: int | None = None,
    max_samples: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
) -> dict[str, torch.Tensor]:
    """Mean ``male`` / ``female`` images, the frequency-weighted ``neutral`` one, and
    ``counts = [n_male, n_female]`` (int64).

    Images are the dataset's ``[C, H, W]`` tensors (after its transform); ``image_size``
    resizes each batch bilinearly to ``image_size x image_size`` first (needed when image
    sizes differ). ``max_samples`` uses the first that many items. Sums are float64.
    """
    n = len(dataset)
    if max_samples is not None:
        n = min(n, int(max_samples))
    if n == 0:
        raise ValueError("compute_gender_prototypes: the dataset is empty")
    sub = torch.utils.data.Subset(dataset, range(n)) if n < len(dataset) else dataset
    loader = DataLoader(sub, batch_size=batch_size,
                        num_workers=num_workers, collate_fn=_collate(image_size))
    sums: list[torch.Tensor | None] = [None, None]
    counts = [0, 0]
    for x, g in loader:
        for c in (0, 1):
            m = g == c
            if bool(m.any()):
                s = x[m].double().sum(0)
                sums[c] = s if sums[c] is None else sums[c] + s
                counts[c] += int(m.sum())
    missing = [name for name, k in zip(("male", "female"), counts) if k == 0]
    if missing:
        raise ValueError(f"compute_gender_prototypes: no {' or '.join(missing)} images in the dataset")
    male = sums[0] / counts[0]
    female = sums[1] / counts[1]
    neutral = (counts[0] * male + counts[1] * female) / (counts[0] + counts[1])
    return {
        "male": male.float(),
        "female": female.float(),
        "neutral": neutral.float(),
        "counts": torch.tensor(counts, dtype=torch.int64),
    }


def _collate(image_size: int | None):
    def collate(items: list[tuple[Any, dict[str, Any]]]) -> tuple[torch.Tensor, torch.Tensor]:
        xs = []
        for x, t in items:
            if not isinstance(x, torch.Tensor) or x.dim() != 3:
                raise TypeError("compute_gender_prototypes needs [C, H, W] tensor images")
            if "gender" not in t:
                raise KeyError("compute_gender_prototypes needs datasets with a 'gender' target")
            if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size):
                x = F.interpolate(x[None].float(), size=(image_size, image_size), mode="bilinear",
                                  align_corners=False, antialias=True)[0]
            xs.append(x.float())
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1:
            raise ValueError(f"images differ in size {sorted(shapes)}; pass image_size=")
        return torch.stack(xs), torch.tensor([int(t["gender"]) for _, t in items])

    return collate


def save_prototypes(prototypes: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """``torch.save`` the prototype dict (keys ``male``, ``female``, ``neutral``, ``counts``)."""
    missing = [k for k in _KEYS if k not in prototypes]
    if missing:
        raise KeyError(f"prototypes lack keys {missing}; expected {list(_KEYS)}")
    torch.save({k: prototypes[k].detach().cpu().clone() for k in _KEYS}, path)


def load_prototypes(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load prototypes saved by :func:`save_prototypes` (``weights_only=True``)."""
    d = load_torch_file(path, "prototype file")
    if not isinstance(d, dict) or any(k not in d for k in _KEYS):
        raise ValueError(f"{str(path)!r} is not a prototype file (keys {list(_KEYS)})")
    return d
