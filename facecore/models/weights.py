r"""Task-importance weights for the K-1 binary tasks of an ordinal head.

CORAL paper (Cao, Mirjalili & Raschka, *Rank consistent ordinal regression for
neural networks with application to age estimation*, Pattern Recognition
Letters 140, 2020, section "task importance weighting"):

.. math::
    \lambda_k = \frac{\sqrt{m_k}}{\max_j \sqrt{m_j}}, \qquad
    m_k = \max\big(|\{n : y_n > k\}|,\ |\{n : y_n \le k\}|\big),

exactly as the authors' code computes it (``task_importance_weights`` in
``Raschka-research-group/coral-cnn/model-code/*-coral.py``: the larger of the
two sides of each binary split). ``rule="min"`` uses the smaller side instead
(weights down the tasks whose split is most unbalanced); it is not the paper's.
Labels are class indices ``0..K-1``; task ``k`` is ``y > k``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["importance_weights_from_labels"]


def importance_weights_from_labels(
    labels: Any, num_classes: int, *, rule: str = "max"
) -> torch.Tensor:
    """``[K-1]`` float32 weights ``lambda_k`` (max 1) from training labels (see module doc).

    Raises:
        ValueError: ``num_classes < 2``, labels not 1-D integers in ``[0, K-1]``,
            no labels, an unknown ``rule``, or (``rule="min"``) every ``m_k = 0``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if rule not in ("max", "min"):
        raise ValueError(f"rule must be 'max' (the CORAL paper) or 'min', got {rule!r}")
    y = torch.as_tensor(labels).detach().cpu()
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise ValueError(
            f"labels must be a 1-D integer tensor, got shape {tuple(y.shape)} and dtype {y.dtype}"
        )
    if y.numel() == 0:
        raise ValueError("labels is empty: need at least one label")
    bad = (y < 0) | (y >= num_classes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"labels must be in [0, {num_classes - 1}] for num_classes={num_classes}, "
            f"got labels[{i}] = {int(y[i])}"
        )
    counts = torch.bincount(y.long(), minlength=num_classes).double()
    at_most = torch.cumsum(counts, 0)[:-1]  # #{y <= k}, k = 0..K-2
    above = counts.sum() - at_most  # #{y > k}
    m = torch.maximum(above, at_most) if rule == "max" else torch.minimum(above, at_most)
    root = m.sqrt()
    if float(root.max()) == 0.0:
        raise ValueError(
            "every task has an empty side (all labels in one class): rule='min' weights undefined"
        )
    return (root / root.max()).float()
