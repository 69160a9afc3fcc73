"""Fused ordinal-regression ops: CORAL / CORN losses and rank prediction.

Each function calls one op of ``torch.ops.facecore`` (CPU and CUDA kernels,
autograd in C++, fake kernels for torch.compile / torch.export). All are
TorchScript-compatible. The pure-PyTorch reference with the same semantics is
:mod:`facecore.reference.ordinal`.

Conventions
-----------
``logits``: ``[N, K-1]`` float32 / float64 / float16 / bfloat16 (any strides),
one binary task per rank threshold: task ``k`` models ``P(y > k)``.
``labels``: ``[N]`` int64 or int32 class indices in ``[0, K-1]``.
Half types are computed in float32 and returned in the input dtype.

Edge cases
----------
* ``N = 0``: losses are 0 (``'mean'`` and ``'sum'``) or empty (``'none'``);
  predictions are empty. Never NaN, never an error.
* Labels outside ``[0, K-1]``: ``ValueError`` on CPU naming the first bad
  entry; on CUDA a device-side assertion (like ``torch.nn.functional.nll_loss``),
  since checking on the host would synchronise every step.
* NaN logits are not an error: the loss of a row with a NaN logit in a task
  the row uses is NaN (so ``'mean'`` is NaN) and so are those gradient
  entries; CORN ignores NaN in the tasks a row does not use (k > y).
  Predictions: a NaN never exceeds the threshold (it does not count towards
  the rank; for CORN every later task of that row is NaN too), probabilities
  derived from it are NaN.
* ``importance_weights`` are constant: they must not require grad.
* Second derivatives (``create_graph=True``) raise ``RuntimeError``.
"""

from typing import NamedTuple

import torch

from facecore.extension import load_library

load_library()

__all__ = [
    "coral_loss",
    "corn_loss",
    "ordinal_labels",
    "ordinal_probs",
    "ordinal_predict",
    "OrdinalProbs",
    "OrdinalPrediction",
]


class OrdinalProbs(NamedTuple):
    """``cum_probs`` [N, K-1] = P(y > k); ``class_probs`` [N, K] = P(y = k);
    ``expected`` [N] = expected rank."""

    cum_probs: torch.Tensor
    class_probs: torch.Tensor
    expected: torch.Tensor


class OrdinalPrediction(NamedTuple):
    """Everything a head decodes from its logits in one object."""

    labels: torch.Tensor
    cum_probs: torch.Tensor
    class_probs: torch.Tensor
    expected: torch.Tensor


def coral_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    importance_weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""CORAL loss (Cao, Mirjalili & Raschka, *Pattern Recognition Letters* 2020).

    .. math::
        \ell_i = \sum_{k=0}^{K-2} w_k \,
        \mathrm{BCE}\big(\sigma(x_{ik}),\ [y_i > k]\big)
        = \sum_k w_k\, \mathrm{softplus}\big(\pm x_{ik}\big)

    computed from the integer labels directly (no ``levels`` matrix), in the
    numerically stable softplus form, with the gradient produced in the same
    pass when ``logits`` requires grad.

    Args:
        logits: ``[N, K-1]``.
        labels: ``[N]`` integer classes in ``[0, K-1]``.
        importance_weights: optional ``[K-1]`` task weights ``w_k`` (default 1).
        reduction: ``'mean'`` (mean over rows of the per-row sums, as
            ``coral_pytorch.losses.coral_loss``), ``'sum'``, or ``'none'``
            (the ``[N]`` per-row sums).
    """
    return torch.ops.facecore.coral_loss(logits, labels, importance_weights, reduction)


def corn_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    importance_weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""CORN loss (Shi, Cao & Raschka, *Pattern Analysis and Applications* 2023).

    Task ``k`` is a conditional binary classifier trained only on the rows with
    ``y >= k``, with target ``[y > k]``:

    .. math::
        \ell_i = \sum_{k \le y_i} w_k\, \mathrm{BCE}\big(\sigma(x_{ik}),\ [y_i > k]\big)

    Args:
        logits: ``[N, K-1]``.
        labels: ``[N]`` integer classes in ``[0, K-1]``.
        importance_weights: optional ``[K-1]`` task weights ``w_k`` (default 1;
            coral-pytorch has none).
        reduction: ``'mean'`` divides the total by the number of (row, task)
            pairs used, :math:`\sum_i \min(y_i + 1, K - 1)`, exactly as
            ``coral_pytorch.losses.corn_loss`` (version 1.4); ``'sum'`` the
            total; ``'none'`` the ``[N]`` unnormalised per-row sums.
    """
    return torch.ops.facecore.corn_loss(logits, labels, importance_weights, reduction)


def ordinal_labels(
    logits: torch.Tensor, head: str = "coral", threshold: float = 0.5
) -> torch.Tensor:
    """Predicted rank ``[N]`` (int64): the number of tasks with ``P(y > k) > threshold``.

    ``head='coral'`` (or ``'niu'``): ``P(y > k) = sigmoid(x_k)``, the same rule as
    ``coral_pytorch.dataset.proba_to_label`` (decided exactly, as
    ``x_k > logit(threshold)``). ``head='corn'``: ``P(y > k) =
    prod_{j <= k} sigmoid(x_j)``, as ``coral_pytorch.dataset.corn_label_from_logits``,
    but accumulated as a float32 sum of log-sigmoids, so half-precision inputs
    are labelled as accurately as float32 ones.
    Not differentiable (integer output).
    """
    return torch.ops.facecore.ordinal_labels(logits, head, threshold)


def ordinal_probs(logits: torch.Tensor, head: str = "coral") -> OrdinalProbs:
    """Cumulative probabilities, class probabilities and expected rank (differentiable).

    ``cum_probs[:, k] = P(y > k)`` as the head predicts it. The class
    probabilities are differences of its monotone envelope ``m`` (CORAL: the
    running minimum of ``cum_probs``, equal to it whenever the head is rank
    consistent; CORN: ``cum_probs`` itself): ``P(y=0) = 1 - m_0``,
    ``P(y=k) = m_{k-1} - m_k``, ``P(y=K-1) = m_{K-2}``; they are non-negative and
    sum to 1. ``expected = sum_k m_k = sum_k k P(y = k)``.
    """
    cum, cls, expected = torch.ops.facecore.ordinal_probs(logits, head)
    return OrdinalProbs(cum, cls, expected)


def ordinal_predict(
    logits: torch.Tensor,
    head: str = "coral",
    threshold: float = 0.5,
    labels: bool = True,
    cum_probs: bool = True,
    class_probs: bool = True,
    expected: bool = True,
) -> OrdinalPrediction:
    """:func:`ordinal_labels` and :func:`ordinal_probs` in one fused pass over the logits.

    One op call (``torch.ops.facecore.ordinal_predict``) computes the labels,
    ``P(y > k)``, ``P(y = k)`` and the expected rank together; set a flag to
    ``False`` to skip an output (it is then not computed and comes back as an
    empty tensor of shape ``[0]``), e.g. the labels alone:
    ``ordinal_predict(z, "coral", labels=True, cum_probs=False, class_probs=False,
    expected=False).labels``. (The flags here follow the fields of
    :class:`OrdinalPrediction`; the op itself returns and takes the integer
    labels last: ``(cum_probs, class_probs, expected, labels)``.) The labels alone need no sigmoid for
    CORAL (``x_k > logit(threshold)``). ``head``: ``'coral'``, ``'niu'``
    (OR-CNN, decoded exactly as CORAL) or ``'corn'``. Differentiable in the
    probabilities, like :func:`ordinal_probs`.
    """
    # the op returns the integer labels last (as torch.sort its indices)
    cum, cls, exp, lab = torch.ops.facecore.ordinal_predict(
        logits, head, threshold, cum_probs, class_probs, expected, labels
    )
    return OrdinalPrediction(lab, cum, cls, exp)
