r"""Semi-adversarial network (SAN) autoencoder for gender privacy.

Mirjalili, Raschka, Namboodiri & Ross, "Semi-Adversarial Networks: Convolutional
Autoencoders for Imparting Privacy to Face Images", ICB 2018. A convolutional autoencoder
perturbs a grayscale face so that gender classifiers fail while face matchers still match
it; it is trained against *frozen* auxiliary networks (see :mod:`facecore.losses.san`).

Architecture (the authors' ``src/convae.py``, made configurable)::

    input   [X, P_SM]                              4 x S x S  (grayscale face + RGB prototype)
    encoder Conv3x3(4 -> 8)   + LeakyReLU (+ AvgPool2)
            Conv3x3(8 -> 12)  + LeakyReLU (+ AvgPool2)
    decoder Conv3x3(12 -> 256)  + LeakyReLU (+ Upsample x2, nearest)
            Conv3x3(256 -> 128) + LeakyReLU (+ Upsample x2, nearest)
    proto-combiner  sigmoid(Conv1x1(128 + 3 -> 1)([h, P]))   for P in P_SM, P_NT, P_OP

The latent ``h`` is computed once from ``[X, P_SM]``; only the combiner sees P_NT / P_OP,
so ``X'_SM``, ``X'_NT``, ``X'_OP`` differ by the prototype term of one 1x1 convolution
inside the sigmoid. ``encoder_channels`` / ``decoder_channels`` set the widths (equal
lengths) and ``pool_levels`` how many encoder stages pool (the first ``pool_levels``) and
decoder stages upsample (the last ``pool_levels``); the authors' network is
``encoder_channels=(8, 12), decoder_channels=(256, 128), pool_levels=2`` at 224 px.
facecore's default (``pool_levels=0``, ``decoder_channels=(32, 16)``: no bottleneck) was
chosen by measurement on 64 px faces (README, privacy section): with one pooling level (a
32 x 32 bottleneck, decoder (64, 32)) the autoencoder-only baseline reached L1 0.028 and an
unseen matcher's AUC 0.973 on synthetic faces, without it 0.009 and 0.984 at 25% less CPU;
on London faces the bottleneck cost the baseline 8 points of unseen gender accuracy.

Prototypes (``prototype_male`` / ``_female`` / ``_neutral``, RGB ``[3, S, S]`` in [0, 1]) are
buffers, so they travel in the ``state_dict`` and in exports; compute them with
:func:`facecore.data.compute_gender_prototypes`. Gender convention: 0 = male, 1 = female;
for gender ``g`` (a number in [0, 1]) ``P_SM = (1 - g) P_male + g P_female`` and
``P_OP = g P_male + (1 - g) P_female``; ``P_NT = P_neutral``.

Inputs are grayscale ``[N, 1, S, S]`` in [0, 1] (``[N, 3, S, S]`` RGB is converted to
ITU-R 601 luma by :meth:`SANAutoencoder.serve` / :meth:`SANAutoencoder.anonymize`).
An optional embedded gender classifier (wrapped in :class:`GrayscaleAdapter`) picks the
gender when none is given, so an exported SAN anonymises a face on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GENDER_NAMES",
    "MODES",
    "PROTOTYPE_REFERENCES",
    "SAN_DEFAULTS",
    "GrayscaleAdapter",
    "SANAutoencoder",
    "check_mode",
    "san_from_config",
    "to_grayscale",
]

#: Anonymisation modes: same-gender, neutral and opposite-gender prototype.
MODES = ("sm", "nt", "op")

#: Gender convention of the SAN (and of facecore's gender models): value -> name.
GENDER_NAMES = ("male", "female")


def check_mode(mode: object) -> str:
    """``mode`` if it is one of :data:`MODES` (``'sm'``, ``'nt'``, ``'op'``); the one
    validator of mode names outside TorchScript (export, predictor, CLI)."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"mode must be one of {' | '.join(repr(m) for m in MODES)} (same-gender, neutral, "
            f"opposite-gender prototype), got {mode!r}"
        )
    return mode


#: facecore's default architecture (64 px): no pooling keeps identity (see module doc).
SAN_DEFAULTS: dict[str, Any] = {
    "image_size": 64,
    "encoder_channels": [8, 12],
    "decoder_channels": [32, 16],
    "pool_levels": 0,
    "negative_slope": 0.01,
    "prototype_channels": 3,
    "prototype_gain": 1.0,
    "prototype_reference": "none",
}

#: What the combiner subtracts from the prototype it is given (see SANAutoencoder).
PROTOTYPE_REFERENCES = ("none", "neutral", "same")


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """``[N, 1, H, W]``: ``x`` itself when it has one channel, ITU-R 601-2 luma
    ``0.299 R + 0.587 G + 0.114 B`` (the data package's :class:`Grayscale`) for three."""
    if x.dim() != 4:
        raise ValueError("images must be [N, C, H, W]")
    if x.size(1) == 1:
        return x
    if x.size(1) != 3:
        raise ValueError("images must have 1 (grayscale) or 3 (RGB) channels")
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


class GrayscaleAdapter(nn.Module):
    """Feed a facecore model grayscale ``[N, 1, S, S]`` images in [0, 1]: replicate to the
    model's ``in_channels`` (1 or 3, as ``PreprocessConfig(grayscale=True)`` does) and
    normalise with the model's training ``mean`` / ``std`` (one value, or one per channel).

    This is how the SAN's auxiliaries (gender classifier, matcher) and the embedded gender
    classifier see the autoencoder's outputs.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float] | float = 0.5,
        std: Sequence[float] | float = 0.25,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        if in_channels is None:
            backbone = getattr(model, "config", {}).get("backbone") or {}
            in_channels = int(backbone.get("in_channels", 3))
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels!r}")
        m = torch.as_tensor([mean] if isinstance(mean, int | float) else list(mean), dtype=torch.float32)
        s = torch.as_tensor([std] if isinstance(std, int | float) else list(std), dtype=torch.float32)
        if m.numel() not in (1, in_channels) or s.numel() != m.numel():
            raise ValueError(
                f"mean and std must have 1 or in_channels={in_channels} entries, got "
                f"{m.tolist()} and {s.tolist()}"
            )
        if not bool((s > 0).all()):
            raise ValueError(f"std must be positive, got {s.tolist()}")
        self.model = model
        self.in_channels = in_channels
        self.register_buffer("mean", m.view(1, -1, 1, 1))
        self.register_buffer("std", s.view(1, -1, 1, 1))
        self.config = {
            "model": dict(getattr(model, "config", {}) or {}),
            "mean": m.tolist(),
            "std": s.tolist(),
            "in_channels": in_channels,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's output on grayscale ``[N, 1, S, S]`` images in [0, 1]."""
        if x.dim() != 4 or x.size(1) != 1:
            raise ValueError("GrayscaleAdapter expects grayscale images [N, 1, H, W]")
        if self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def _check_channels(name: str, value: Any) -> list[int]:
    if isinstance(value, int | str) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence of positive ints, got {value!r}")
    out = []
    for c in value:
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"{name} must be a sequence of positive ints, got {list(value)!r}")
        out.append(int(c))
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


class SANAutoencoder(nn.Module):
    """The SAN autoencoder (see the module docstring).

    ``task = "san"`` (class attribute): what :func:`facecore.export_model` and
    :class:`facecore.Predictor` key on.

    Args:
        prototypes: ``{"male", "female", "neutral"}`` RGB ``[3, S, S]`` tensors (the output
            of :func:`facecore.data.compute_gender_prototypes`); ``None`` leaves zero
            buffers to be filled by ``load_state_dict``. Resized bilinearly when their
            size differs from ``image_size``.
        image_size: S (square inputs; a multiple of ``2 ** pool_levels``).
        encoder_channels, decoder_channels: widths of the 3x3 convolutions (equal lengths).
        pool_levels: number of AvgPool2 / Upsample x2 pairs (0 .. number of stages).
        negative_slope: of the LeakyReLUs (PyTorch's default 0.01, as the authors' code).
        prototype_channels: 3 (RGB prototypes, as the paper) or 1.
        prototype_gain, prototype_reference: the combiner sees
            ``prototype_gain * (P - R)`` with ``R = 0`` (``"none"``: the authors'
            network, with gain 1), ``P_NT`` (``"neutral"``) or the image's own ``P_SM``
            (``"same"``); the encoder always sees the plain ``P_SM``. These keep the
            function class (``-w R`` is a function of the encoder's input, which the decoder
            can represent) but change training: with Adam every weight moves ~``lr`` per
            step, so the 1x1 prototype weights -- the only difference between SM and OP --
            need thousands of steps to grow large enough to flip a gender, and while they
            grow they also shift X'_SM, which the reconstruction and matching losses resist
            until the decoder learns to cancel ``w P_SM``. A gain multiplies their effective
            step; ``"same"`` removes the prototype term from X'_SM altogether (X'_SM is the
            plain autoencoder output, X'_NT / X'_OP add ``w (P_NT - P_SM)`` /
            ``w (P_OP - P_SM)``).
        gender_classifier: optional module mapping grayscale ``[N, 1, S, S]`` in [0, 1] to
            a gender logit ``[N]`` (P(female) = sigmoid); wrap facecore classifiers with
            :class:`GrayscaleAdapter`. Used by :meth:`serve` / :meth:`anonymize` when no
            gender is given.
    """

    #: the export / serving task name (facecore.serving.format.OUTPUT_KEYS)
    task = "san"

    def __init__(
        self,
        prototypes: dict[str, torch.Tensor] | None = None,
        *,
        image_size: int = SAN_DEFAULTS["image_size"],
        encoder_channels: Sequence[int] = tuple(SAN_DEFAULTS["encoder_channels"]),
        decoder_channels: Sequence[int] = tuple(SAN_DEFAULTS["decoder_channels"]),
        pool_levels: int = SAN_DEFAULTS["pool_levels"],
        negative_slope: float = SAN_DEFAULTS["negative_slope"],
        prototype_channels: int = SAN_DEFAULTS["prototype_channels"],
        prototype_gain: float = SAN_DEFAULTS["prototype_gain"],
        prototype_reference: str = SAN_DEFAULTS["prototype_reference"],
        gender_classifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        enc = _check_channels("encoder_channels", encoder_channels)
        dec = _check_channels("decoder_channels", decoder_channels)
        if len(enc) != len(dec):
            raise ValueError(
                f"encoder_channels and decoder_channels must have the same length, got "
                f"{enc} and {dec}"
            )
        if isinstance(pool_levels, bool) or not isinstance(pool_levels, int) or not 0 <= pool_levels <= len(enc):
            raise ValueError(f"pool_levels must be an int in [0, {len(enc)}], got {pool_levels!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4:
            raise ValueError(f"image_size must be an int >= 4, got {image_size!r}")
        if image_size % (2**pool_levels):
            raise ValueError(
                f"image_size ({image_size}) must be a multiple of 2 ** pool_levels = {2**pool_levels}"
            )
        if prototype_channels not in (1, 3):
            raise ValueError(f"prototype_channels must be 1 or 3, got {prototype_channels!r}")
        gain = float(prototype_gain)
        if not gain > 0 or gain != gain or gain == float("inf"):
            raise ValueError(f"prototype_gain must be a positive finite number, got {prototype_gain!r}")
        if prototype_reference not in PROTOTYPE_REFERENCES:
            raise ValueError(
                f"prototype_reference must be one of {list(PROTOTYPE_REFERENCES)}, got {prototype_reference!r}"
            )
        slope = float(negative_slope)
        if not 0.0 <= slope < 1.0:
            raise ValueError(f"negative_slope must be in [0, 1), got {negative_slope!r}")
        layers: list[nn.Module] = []
        ch = 1 + prototype_channels
        for i, c in enumerate(enc):
            layers += [nn.Conv2d(ch, c, 3, padding=1), nn.LeakyReLU(slope)]
            if i < pool_levels:
                layers.append(nn.AvgPool2d(2))
            ch = c
        self.encoder = nn.Sequential(*layers)
        layers = []
        for j, c in enumerate(dec):
            layers += [nn.Conv2d(ch, c, 3, padding=1), nn.LeakyReLU(slope)]
            if j >= len(dec) - pool_levels:
                layers.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
            ch = c
        self.decoder = nn.Sequential(*layers)
        self.combiner = nn.Conv2d(ch + prototype_channels, 1, 1)
        self.image_size = image_size
        self.prototype_channels = prototype_channels
        self.prototype_gain = gain
        self.prototype_reference = prototype_reference
        shape = (prototype_channels, image_size, image_size)
        for key in ("male", "female", "neutral"):
            self.register_buffer(f"prototype_{key}", torch.zeros(shape))
        if prototypes is not None:
            self.set_prototypes(prototypes)
        self.gender_classifier = gender_classifier
        self.config = {
            "task": "san",
            "image_size": image_size,
            "encoder_channels": enc,
            "decoder_channels": dec,
            "pool_levels": pool_levels,
            "negative_slope": slope,
            "prototype_channels": prototype_channels,
            "prototype_gain": gain,
            "prototype_reference": prototype_reference,
            "gender_classifier": None
            if gender_classifier is None
            else dict(getattr(gender_classifier, "config", {}) or {}),
        }

    # ------------------------------------------------------------------ prototypes
    @torch.jit.ignore
    def set_prototypes(self, prototypes: dict[str, torch.Tensor]) -> None:
        """Copy ``prototypes["male" | "female" | "neutral"]`` into the buffers (resized to
        ``image_size``, converted to luma when ``prototype_channels == 1``)."""
        missing = [k for k in ("male", "female", "neutral") if k not in prototypes]
        if missing:
            raise KeyError(f"prototypes lack {missing}; expected male, female, neutral")
        for key in ("male", "female", "neutral"):
            p = torch.as_tensor(prototypes[key]).detach().float()
            if p.dim() != 3 or p.shape[0] not in (1, 3):
                raise ValueError(f"prototypes[{key!r}] must be [C, H, W] with C 1 or 3, got {list(p.shape)}")
            if p.shape[0] == 1 and self.prototype_channels == 3:
                p = p.expand(3, -1, -1)
            elif p.shape[0] == 3 and self.prototype_channels == 1:
                p = to_grayscale(p[None])[0]
            if tuple(p.shape[-2:]) != (self.image_size, self.image_size):
                p = F.interpolate(p[None], size=(self.image_size, self.image_size), mode="bilinear",
                                  align_corners=False, antialias=True)[0]
            with torch.no_grad():
                getattr(self, f"prototype_{key}").copy_(p.clamp(0.0, 1.0))

    def prototype(self, gender: torch.Tensor, mode: str = "sm") -> torch.Tensor:
        """``[N, C_p, S, S]`` prototypes for ``gender`` ``[N]`` (0 male .. 1 female) and
        ``mode`` ``'sm' | 'nt' | 'op'``."""
        g = gender.to(self.prototype_male.dtype).reshape(-1, 1, 1, 1)
        if mode == "nt":
            return self.prototype_neutral.unsqueeze(0).expand(g.size(0), -1, -1, -1)
        if mode == "op":
            g = 1.0 - g
        elif mode != "sm":
            raise ValueError("mode must be 'sm', 'nt' or 'op'")
        return (1.0 - g) * self.prototype_male.unsqueeze(0) + g * self.prototype_female.unsqueeze(0)

    # ------------------------------------------------------------------ network
    def _check_input(self, x: torch.Tensor, gender: torch.Tensor) -> None:
        if x.dim() != 4 or x.size(1) != 1:
            raise ValueError("SAN input must be grayscale images [N, 1, S, S] in [0, 1]")
        if x.size(2) != self.image_size or x.size(3) != self.image_size:
            raise ValueError("SAN input must be image_size x image_size (the prototypes' size)")
        if gender.dim() != 1 or gender.size(0) != x.size(0):
            raise ValueError("gender must be [N], one value per image")

    def encode(self, x: torch.Tensor, gender: torch.Tensor) -> torch.Tensor:
        """Decoder features ``h`` of ``[X, P_SM]`` (computed once per image)."""
        self._check_input(x, gender)
        p = self.prototype(gender, "sm").to(x.dtype)
        return self.decoder(self.encoder(torch.cat([x, p], dim=1)))

    def combine(self, h: torch.Tensor, gender: torch.Tensor, mode: str) -> torch.Tensor:
        """The proto-combiner for ``mode``: ``sigmoid(Conv1x1([h, gain * (P_mode - R)]))``,
        ``[N, 1, S, S]`` (``R`` per ``prototype_reference``)."""
        g = gender.to(h.dtype).reshape(-1)
        p = self.prototype(g, mode).to(h.dtype)
        if self.prototype_reference == "same":
            p = p - self.prototype(g, "sm").to(h.dtype)
        elif self.prototype_reference == "neutral":
            p = p - self.prototype_neutral.to(h.dtype).unsqueeze(0)
        if self.prototype_gain != 1.0:
            p = p * self.prototype_gain
        return torch.sigmoid(self.combiner(torch.cat([h, p], dim=1)))

    def forward(
        self, x: torch.Tensor, gender: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(X'_SM, X'_NT, X'_OP)``, each ``[N, 1, S, S]`` in (0, 1), for grayscale ``x``
        ``[N, 1, S, S]`` and the true ``gender`` ``[N]``."""
        h = self.encode(x, gender)
        return self.combine(h, gender, "sm"), self.combine(h, gender, "nt"), self.combine(h, gender, "op")

    # ------------------------------------------------------------------ serving
    def _gender(self, x: torch.Tensor, gender: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(gender used [N] float, P(female) [N] or empty)."""
        prob = torch.empty(0, dtype=x.dtype, device=x.device)
        if gender is not None:
            return gender.to(x.dtype).reshape(-1), prob
        clf = self.gender_classifier
        if clf is None:
            raise ValueError("gender is required: this SAN has no embedded gender classifier")
        prob = torch.sigmoid(clf(x).reshape(-1))
        return (prob > 0.5).to(x.dtype), prob

    @torch.jit.export
    def anonymize(
        self, x: torch.Tensor, mode: str = "op", gender: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Perturbed grayscale images ``[N, 1, S, S]`` for ``mode`` ``'op'`` (opposite-gender
        prototype: hides gender), ``'nt'`` (neutral) or ``'sm'`` (same gender: the
        utility reference). ``x``: ``[N, 1 | 3, S, S]`` in [0, 1]; ``gender`` ``[N]``
        (0 male, 1 female), or ``None`` to use the embedded classifier."""
        if mode != "sm" and mode != "nt" and mode != "op":
            raise ValueError("mode must be 'sm', 'nt' or 'op'")
        x = to_grayscale(x)
        g, _ = self._gender(x, gender)
        return self.combine(self.encode(x, g), g, mode)

    @torch.jit.export
    def serve(self, x: torch.Tensor, gender: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"sm", "nt", "op"}`` perturbed images ``[N, 1, S, S]``, ``"gender"`` (the gender
        used, float ``[N]``) and, when the embedded classifier picked it, ``"gender_prob"``
        (P(female) ``[N]``)."""
        x = to_grayscale(x)
        g, prob = self._gender(x, gender)
        sm, nt, op = self.forward(x, g)
        out = {"sm": sm, "nt": nt, "op": op, "gender": g}
        if prob.numel() > 0:
            out["gender_prob"] = prob
        return out


def san_from_config(config: dict[str, Any], build: Any = None) -> SANAutoencoder:
    """The (untrained, zero-prototype) :class:`SANAutoencoder` of ``model.config``; an
    embedded gender classifier (``config["gender_classifier"]``, a
    :class:`GrayscaleAdapter` config) is rebuilt with ``build`` (``facecore.models.build_model``,
    which passes itself: this module does not import the factory).
    Load the checkpoint's ``state_dict`` (weights and prototypes) into it."""
    if not isinstance(config, dict) or config.get("task") != "san":
        raise ValueError(f"san_from_config needs a config with task 'san', got {config!r}")
    known = set(SAN_DEFAULTS) | {"task", "gender_classifier"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown SAN config keys {unknown}; known: {sorted(known)}")
    kw = {k: config.get(k, v) for k, v in SAN_DEFAULTS.items()}
    clf = None
    spec = config.get("gender_classifier")
    if spec:
        if build is None:
            raise ValueError("san_from_config: a config with a gender_classifier needs build= "
                             "(facecore.models.build_model builds SANs with it)")
        if not isinstance(spec, dict) or "model" not in spec:
            raise ValueError("config['gender_classifier'] must be a GrayscaleAdapter config")
        clf = GrayscaleAdapter(
            build(spec["model"]), spec.get("mean", 0.5), spec.get("std", 0.25),
            in_channels=spec.get("in_channels"),
        )
    return SANAutoencoder(gender_classifier=clf, **kw)
