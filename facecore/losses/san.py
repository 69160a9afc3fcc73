r"""Losses of the semi-adversarial network (SAN, Mirjalili et al., ICB 2018) and the
training objective that holds the autoencoder and its frozen auxiliaries.

For a grayscale face ``X`` with gender ``g`` (0 male, 1 female) the autoencoder
(:class:`facecore.models.SANAutoencoder`) gives ``X'_SM`` / ``X'_OP`` (same / opposite
gender prototype). With a frozen gender classifier ``f_G`` (logit of P(female)) and a
frozen matcher ``F_M`` (descriptors ``[N, D]``):

.. math::
    J_D &= \mathrm{rec}(X, X'_{SM}) \quad (\texttt{l1}: \mathrm{mean}|X - X'|,\;
           \texttt{mse}: \mathrm{mean}(X - X')^2,\; \texttt{bce}: \mathrm{BCE}(X', X))\\
    J_G &= \mathrm{BCE}(f_G(X'_{SM}), g) + \mathrm{BCE}(f_G(X'_{OP}), 1 - g)\\
    J_M &= \frac1N \sum_i \lVert F_M(X'_i) - F_M(X_i) \rVert_2^2, \quad
           X'_i = X'_{SM,i}\ (\texttt{match\_target="sm"})\ \text{or}\
           F_M(X'_i) := \tfrac12 (F_M(X'_{SM,i}) + F_M(X'_{OP,i}))\ (\texttt{"mean"})\\
    J &= \lambda_{rec} J_D + \lambda_G J_G + \lambda_M J_M

(every mean is over the batch; ``J_M`` sums over the descriptor dimensions; ``F_M(X)`` is
a constant target, as the code's ``vgg(x).data``).

**Mapping from the authors' code** (iPRoBe-lab/semi-adversarial-networks, ``src/main.py``:
Adam lr 2e-4, batch 8, 20 epochs at 224 px): ``loss_rec = mean|x - rec_sm|`` (so
``reconstruction="l1"``, ``lambda_rec = 1``); ``cross_entropy`` on the two-logit gender
predictor for SM (target g) and OP (target 1 - g), each a batch mean (= ``J_G`` with
``lambda_gender = 1``); ``8.0 * F.mse_loss(mean(vgg(rec_sm), vgg(rec_op)), vgg(x).data,
size_average=False)``, a *sum* over the 8-image batch and the descriptor dimensions with
weight 8, i.e. ``lambda_match = 8 * 8 = 64`` in this module's per-image mean, with
``match_target="mean"``; ``J_M`` only from epoch 5 (``match_warmup_epochs=5``; before that
the code adds ``loss_rec`` a second time, which this module does not copy). The slides'
pre-training stage (reconstruction only) is ``pretrain_epochs``. Note that the authors'
VGG-Face descriptors are not normalised, facecore's matchers give unit vectors
(``||a - b||^2 = 2 - 2 cos``), so the same ``lambda_match`` weighs matching differently.

Schedule (epochs counted from 0; :meth:`SANObjective.set_epoch`): epochs
``< pretrain_epochs`` use ``J_D`` only; from ``pretrain_epochs`` on ``J_G`` is added, and
``J_M`` from ``pretrain_epochs + match_warmup_epochs`` on.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "RECONSTRUCTIONS",
    "MATCH_TARGETS",
    "SANObjective",
    "file_sha256",
    "gender_loss",
    "matching_loss",
    "reconstruction_loss",
]

RECONSTRUCTIONS = ("l1", "mse", "bce")
MATCH_TARGETS = ("sm", "mean")


def reconstruction_loss(x: torch.Tensor, x_rec: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """``J_D``: mean over all pixels of ``|x - x_rec|`` (``l1``), ``(x - x_rec)^2`` (``mse``)
    or the binary cross-entropy of ``x_rec`` (probabilities) against ``x`` (``bce``)."""
    if x.shape != x_rec.shape:
        raise ValueError(f"x and x_rec must have the same shape, got {list(x.shape)} and {list(x_rec.shape)}")
    if kind == "l1":
        return (x - x_rec).abs().mean()
    if kind == "mse":
        return ((x - x_rec) ** 2).mean()
    if kind == "bce":
        return F.binary_cross_entropy(x_rec.clamp(1e-6, 1 - 1e-6), x)
    raise ValueError(f"reconstruction must be one of {list(RECONSTRUCTIONS)}, got {kind!r}")


def gender_loss(
    logits_sm: torch.Tensor, logits_op: torch.Tensor, gender: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(BCE(logits_sm, g), BCE(logits_op, 1 - g))``, each a batch mean (``J_G`` is their sum)."""
    g = gender.to(logits_sm.dtype).reshape(-1)
    keep = F.binary_cross_entropy_with_logits(logits_sm.reshape(-1), g)
    flip = F.binary_cross_entropy_with_logits(logits_op.reshape(-1), 1.0 - g)
    return keep, flip


def matching_loss(
    emb_perturbed: torch.Tensor, emb_original: torch.Tensor
) -> torch.Tensor:
    """``J_M``: squared Euclidean distance summed over the descriptor dimensions, mean over
    the batch; ``emb_original`` is a constant target (detached)."""
    if emb_perturbed.shape != emb_original.shape or emb_perturbed.dim() != 2:
        raise ValueError(
            f"descriptors must both be [N, D], got {list(emb_perturbed.shape)} and "
            f"{list(emb_original.shape)}"
        )
    return ((emb_perturbed - emb_original.detach()) ** 2).sum(1).mean()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (how a SAN run references its auxiliary checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _frozen(module: nn.Module, name: str) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(module).__name__}")
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class SANObjective(nn.Module):
    """The SAN training objective: ``loss, outputs, terms = objective(images, gender)``.

    Holds the trainable autoencoder as ``self.model`` (its parameters are the only ones
    with ``requires_grad``) and the frozen auxiliaries ``gender_classifier`` (grayscale
    ``[N, 1, S, S]`` in [0, 1] -> logit ``[N]``) and ``matcher`` (-> descriptors ``[N, D]``),
    e.g. facecore models wrapped in :class:`facecore.models.GrayscaleAdapter`.

    The auxiliaries are kept **outside** the module tree: they are not in
    ``state_dict()``, ``parameters()`` or ``buffers()`` (a checkpoint holds the autoencoder
    only and references them by path + SHA-256, see :attr:`auxiliaries`), ``train()``
    never switches them out of ``eval()``, and ``.to()`` / ``.cuda()`` / ``.half()``
    move them with the objective. Gradients flow *through* them into the autoencoder.

    Args:
        model: the :class:`facecore.models.SANAutoencoder`.
        gender_classifier, matcher: the frozen auxiliaries (put in ``eval()``,
            ``requires_grad_(False)``).
        reconstruction: ``'l1'`` (the authors' code), ``'mse'`` (the slides) or ``'bce'``.
        lambda_rec, lambda_gender, lambda_match: the weights of ``J_D``, ``J_G``, ``J_M``.
        match_target: ``'sm'`` (``F_M(X'_SM)``) or ``'mean'`` (mean of the SM and OP
            descriptors, as the code).
        pretrain_epochs, match_warmup_epochs: the schedule (module docstring).
        auxiliaries: optional metadata (e.g. ``{"gender_classifier": {"path", "sha256"}}``)
            kept in :attr:`auxiliaries` for checkpoints.

    ``images``: ``[N, 1 | 3, S, S]`` in [0, 1] (RGB is converted to luma; no
    normalisation); ``gender``: ``[N]`` 0 / 1. ``outputs``: ``{"sm", "op"}`` perturbed
    images. ``terms``: ``rec``, ``gender``, ``gender_sm``, ``gender_op``, ``match``
    (0 while switched off), ``aux_acc_sm``, ``aux_acc_op`` (the auxiliary classifier's
    accuracy on SM against ``g`` and on OP against ``1 - g``), all detached scalars.
    """

    def __init__(
        self,
        model: nn.Module,
        gender_classifier: nn.Module,
        matcher: nn.Module,
        *,
        reconstruction: str = "l1",
        lambda_rec: float = 1.0,
        lambda_gender: float = 1.0,
        lambda_match: float = 64.0,
        match_target: str = "sm",
        pretrain_epochs: int = 0,
        match_warmup_epochs: int = 0,
        auxiliaries: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {list(RECONSTRUCTIONS)}, got {reconstruction!r}")
        if match_target not in MATCH_TARGETS:
            raise ValueError(f"match_target must be one of {list(MATCH_TARGETS)}, got {match_target!r}")
        for name, value in (("lambda_rec", lambda_rec), ("lambda_gender", lambda_gender),
                            ("lambda_match", lambda_match)):
            if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name, value in (("pretrain_epochs", pretrain_epochs),
                            ("match_warmup_epochs", match_warmup_epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        self.model = model
        # plain attributes, not submodules: out of state_dict / parameters / train()
        object.__setattr__(self, "_aux", (_frozen(gender_classifier, "gender_classifier"),
                                          _frozen(matcher, "matcher")))
        self.reconstruction = reconstruction
        self.lambda_rec = float(lambda_rec)
        self.lambda_gender = float(lambda_gender)
        self.lambda_match = float(lambda_match)
        self.match_target = match_target
        self.pretrain_epochs = pretrain_epochs
        self.match_warmup_epochs = match_warmup_epochs
        self.auxiliaries = dict(auxiliaries or {})
        self.epoch = 0

    @property
    def gender_classifier(self) -> nn.Module:
        return self._aux[0]

    @property
    def matcher(self) -> nn.Module:
        return self._aux[1]

    def _apply(self, fn, recurse: bool = True):  # .to() / .cuda() / .double() move the auxiliaries too
        super()._apply(fn, recurse)
        for m in self._aux:
            m._apply(fn, recurse)
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the schedule phase for ``epoch`` (0-based); the training loop calls it at
        each epoch start."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch

    @property
    def gender_on(self) -> bool:
        """Whether ``J_G`` is in the loss this epoch."""
        return self.epoch >= self.pretrain_epochs and self.lambda_gender > 0

    @property
    def match_on(self) -> bool:
        """Whether ``J_M`` is in the loss this epoch."""
        return (self.epoch >= self.pretrain_epochs + self.match_warmup_epochs
                and self.lambda_match > 0)

    def config(self) -> dict[str, Any]:
        """The loss settings (JSON-able), for run records."""
        return {
            "reconstruction": self.reconstruction,
            "lambda_rec": self.lambda_rec,
            "lambda_gender": self.lambda_gender,
            "lambda_match": self.lambda_match,
            "match_target": self.match_target,
            "pretrain_epochs": self.pretrain_epochs,
            "match_warmup_epochs": self.match_warmup_epochs,
            "auxiliaries": self.auxiliaries,
        }

    def forward(
        self, images: torch.Tensor, gender: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        from facecore.models.san import to_grayscale

        x = to_grayscale(images)
        g = gender.reshape(-1).to(x.dtype)
        model = self.model
        h = model.encode(x, g)
        x_sm = model.combine(h, g, "sm")
        x_op = model.combine(h, g, "op")
        j_d = reconstruction_loss(x, x_sm, self.reconstruction)
        loss = self.lambda_rec * j_d
        f_g, f_m = self._aux
        gender_on = self.gender_on
        with torch.set_grad_enabled(torch.is_grad_enabled() and gender_on):
            logit_sm = f_g(x_sm).reshape(-1)
            logit_op = f_g(x_op).reshape(-1)
            keep, flip = gender_loss(logit_sm, logit_op, g)
        j_g = keep + flip
        if gender_on:
            loss = loss + self.lambda_gender * j_g
        if self.match_on:
            with torch.no_grad():
                target = f_m(x)
            e = f_m(x_sm)
            if self.match_target == "mean":
                e = 0.5 * (e + f_m(x_op))
            j_m = matching_loss(e, target)
            loss = loss + self.lambda_match * j_m
        else:
            j_m = torch.zeros((), dtype=x.dtype, device=x.device)
        terms = {
            "rec": j_d.detach(),
            "gender": j_g.detach(),
            "gender_sm": keep.detach(),
            "gender_op": flip.detach(),
            "match": j_m.detach(),
            "aux_acc_sm": ((logit_sm > 0).to(x.dtype) == g).to(x.dtype).mean().detach(),
            "aux_acc_op": ((logit_op > 0).to(x.dtype) == 1.0 - g).to(x.dtype).mean().detach(),
        }
        return loss, {"sm": x_sm, "op": x_op}, terms
