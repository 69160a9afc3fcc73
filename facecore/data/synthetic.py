r"""Synthetic faces: a procedural, seeded generator of face-like RGB images with known labels.

**These are synthetic cartoons, not photographs of people.** They exist so that training,
the demo and the tests run on a fresh machine with no download, and so that the data have a
*known* ground truth. Results on them say nothing about accuracy on real faces.

Each item ``i`` is rendered on the fly (vectorised numpy, ~0.3-0.5 ms at 64 px on one core)
and depends only on ``(seed, i, image_size, num_classes, num_identities, age_range)``.

Labels (all deterministic functions of ``seed`` and ``i``; counter-based hashing, so
:meth:`SyntheticFaces.targets` needs no rendering):

* ``identity = i mod num_identities`` (balanced: every identity has ``N / num_identities``
  images, taken at different ages like a longitudinal face database);
* ``gender`` (0 = male, 1 = female) and ``race`` (skin-tone group 0 = light, 1 = medium,
  2 = dark) are per-identity traits drawn with probability 1/2 and 1/3;
* ``age_years`` is uniform on the integers of ``age_range = (lo, hi)`` (inclusive) and
  ``age = floor((age_years - lo) * num_classes / (hi - lo + 1))``, equal-width ordinal bins.

What is drawn:

* identity traits (stable per person): face width / height and jaw taper, skin tone, eye
  spacing / size / iris colour, nose width / length, mouth width / lip fullness, hair colour,
  hair length, hairline, stubble, the age at which the hair greys, wrinkle propensity, and a
  "looks older / younger" offset;
* **age** (monotone in the *apparent* age ``a = t + identity offset + N(0, 0.05)``,
  ``t = (age_years - lo) / (hi - lo)``): forehead lines, crow's feet and nasolabial folds
  (strength ~ ``max(0, a - 0.25)``), under-eye shadows, hair (and brow / stubble) greying
  (logistic in ``a`` around the identity's onset), receding hairline (mostly men), thinner
  lips, narrower eyes, longer nose, lower brows, sagging jaw, blotchier, less saturated skin;
* **gender**: hair length (long mostly for women), jaw taper and face width, brow thickness,
  lip colour, stubble (men only);
* **nuisance** (per image): pose (rotation ~ N(0, 6 deg), scale, shift), background colour
  and gradient, lighting direction / strength, exposure, colour cast, sensor noise.

The age signal is deliberately noisy (identity offset, per-image jitter, identity-dependent
greying onset), so a model beats the median baseline clearly but cannot be perfect.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from facecore.data.base import FaceDataset
from facecore.data.splits import split_indices

__all__ = ["SyntheticFaces", "render_face"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _hash_uniform(seed: int, idx: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) float64 per (seed, idx, stream), independent of array length."""
    base = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        x = _mix64(idx.astype(np.uint64) ^ _mix64(np.array([base + np.uint64(stream)]))[0])
        x = _mix64(x ^ base)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def synthetic_labels(
    seed: int,
    indices: np.ndarray,
    *,
    num_classes: int,
    num_identities: int,
    age_range: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Labels of generator items ``indices`` (no rendering)."""
    lo, hi = age_range
    idx = np.asarray(indices, dtype=np.int64)
    identity = idx % num_identities
    gender = (_hash_uniform(seed, identity, 1) < 0.5).astype(np.int64)
    race = np.minimum((_hash_uniform(seed, identity, 2) * 3).astype(np.int64), 2)
    span = hi - lo + 1
    age_years = lo + np.minimum((_hash_uniform(seed, idx, 3) * span).astype(np.int64), span - 1)
    age = (age_years - lo) * num_classes // span
    return {
        "age": age,
        "age_years": age_years,
        "gender": gender,
        "race": race,
        "identity": identity,
    }


_SKIN = np.array([[0.93, 0.78, 0.67], [0.78, 0.58, 0.43], [0.47, 0.32, 0.23]], np.float32)
_IRIS = np.array(
    [[0.30, 0.18, 0.08], [0.18, 0.10, 0.05], [0.25, 0.45, 0.70], [0.30, 0.45, 0.25]], np.float32
)


def _identity_traits(seed: int, identity: int, gender: int, race: int) -> dict[str, Any]:
    r = np.random.default_rng([seed & 0xFFFFFFFF, 0x1D, identity])
    female = gender == 1
    skin = _SKIN[race] * r.uniform(0.93, 1.07, 3).astype(np.float32)
    dark_hair = race == 2 or r.random() < 0.55
    hair_l = r.uniform(0.04, 0.18) if dark_hair else r.uniform(0.2, 0.55)
    hair = np.array([hair_l * 1.25, hair_l, hair_l * 0.72], np.float32) + r.uniform(0, 0.04, 3)
    return {
        "skin": np.clip(skin, 0, 1).astype(np.float32),
        "hair": np.clip(hair, 0, 1).astype(np.float32),
        "iris": _IRIS[0 if race == 2 else r.integers(0, 4)],
        "face_w": r.uniform(0.50, 0.58) + (0.0 if female else 0.035),
        "face_h": r.uniform(0.66, 0.76),
        "jaw": r.uniform(0.28, 0.42) if female else r.uniform(0.08, 0.22),
        "eye_dx": r.uniform(0.19, 0.25),
        "eye_size": r.uniform(0.85, 1.15) * (1.06 if female else 1.0),
        "nose_w": r.uniform(0.8, 1.25),
        "nose_len": r.uniform(0.85, 1.15),
        "mouth_w": r.uniform(0.85, 1.2),
        "lips": r.uniform(0.9, 1.3) * (1.2 if female else 1.0),
        "lip_col": np.array([0.75, 0.28, 0.32] if female else [0.62, 0.36, 0.34], np.float32),
        "brow": r.uniform(0.8, 1.1) * (1.0 if female else 1.8),
        "hair_len": r.uniform(0.55, 1.0) if female else r.uniform(0.0, 0.2) * (r.random() < 0.3),
        "recede": 0.0 if female else r.uniform(0.0, 1.0),
        "stubble": 0.0 if female else r.uniform(0.0, 0.6) * (r.random() < 0.5),
        "grey_onset": r.normal(0.55, 0.12),
        "wrinkle": r.uniform(0.7, 1.3),
        "age_offset": r.normal(0.0, 0.05),
    }


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}
_GRID_LOCK = threading.Lock()


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    with _GRID_LOCK:
        g = _GRIDS.get(size)
        if g is None:
            c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
            g = (
                np.ascontiguousarray(np.broadcast_to(c[None, :], (size, size))),
                np.ascontiguousarray(np.broadcast_to(c[:, None], (size, size))),
            )
            _GRIDS[size] = g
    return g


def _ramp(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] in place (cheaper than ``np.clip``'s wrapper on small arrays)."""
    np.maximum(x, 0.0, out=x)
    return np.minimum(x, 1.0, out=x)


def _ellipse(u, v, cx, cy, rx, ry, edge):
    """Soft mask of the ellipse ((u-cx)/rx)^2 + ((v-cy)/ry)^2 <= 1 (edge ~ pixels / radius)."""
    du = (u - cx) * (1.0 / rx)
    dv = (v - cy) * (1.0 / ry)
    du *= du
    dv *= dv
    du += dv
    np.sqrt(du, out=du)
    k = min(rx, ry) / edge
    du -= 1.0
    du *= -k
    return _ramp(du)


def _blend(img: np.ndarray, mask: np.ndarray, color) -> None:
    d = np.asarray(color, np.float32).reshape(3, 1, 1) - img
    d *= mask
    img += d


def _shade(img: np.ndarray, amount: np.ndarray) -> None:
    img *= 1.0 - amount


def _line(x: np.ndarray, width: float) -> np.ndarray:
    """Soft line profile ``max(0, 1 - (x / width)^2)^2`` (a cheap Gaussian stand-in)."""
    y = x * (1.0 / width)
    y *= y
    np.subtract(1.0, y, out=y)
    np.maximum(y, 0.0, out=y)
    y *= y
    return y


_NOISE: dict[int, np.ndarray] = {}


def _noise_bank(size: int) -> np.ndarray:
    """A fixed ``[3, 2S, 2S]`` standard-normal field; images take a random ``S x S`` window
    (drawing 3 S^2 fresh normals per image would dominate the rendering time)."""
    with _GRID_LOCK:
        b = _NOISE.get(size)
        if b is None:
            b = np.random.default_rng(0x4E01).standard_normal((3, 2 * size, 2 * size), dtype=np.float32)
            _NOISE[size] = b
    return b


_UPS: dict[int, np.ndarray] = {}


def _upsample_matrix(size: int, n: int = 8) -> np.ndarray:
    """``[size, n]`` linear-interpolation matrix (pixel centres, edge-clamped)."""
    m = _UPS.get(size)
    if m is None:
        pos = np.clip((np.arange(size) + 0.5) / size * n - 0.5, 0, n - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        f = pos - i0
        m = np.zeros((size, n), np.float32)
        m[np.arange(size), i0] += 1 - f
        m[np.arange(size), i1] += f
        _UPS[size] = m
    return m


class _Canvas:
    """Pose-transformed face coordinates ``(u, v)`` of every pixel plus region lookup, so
    small features are drawn only inside their bounding box."""

    def __init__(self, size: int, th: float, sc: float, tx: float, ty: float) -> None:
        X, Y = _grid(size)
        self.size, self.sc, self.tx, self.ty = size, sc, tx, ty
        self.ct, self.st = math.cos(th), math.sin(th)
        Xs, Ys = X - np.float32(tx), Y - np.float32(ty)
        self.u = ((self.ct * Xs + self.st * Ys) / sc).astype(np.float32)
        self.v = ((-self.st * Xs + self.ct * Ys) / sc).astype(np.float32)

    def box(self, cu: float, cv: float, r: float) -> tuple[slice, slice]:
        """Pixel slices covering the disc of radius ``r`` around face point ``(cu, cv)``."""
        x = self.tx + self.sc * (self.ct * cu - self.st * cv)
        y = self.ty + self.sc * (self.st * cu + self.ct * cv)
        h = self.size / 2.0
        cx, cy, rp = (x + 1.0) * h - 0.5, (y + 1.0) * h - 0.5, r * self.sc * h + 2.0
        n = self.size
        x0, x1 = max(0, int(cx - rp)), min(n, int(cx + rp) + 2)
        y0, y1 = max(0, int(cy - rp)), min(n, int(cy + rp) + 2)
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def render_face(
    traits: dict[str, Any], t: float, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Render one face, float32 ``[3, size, size]`` (RGB, channels first) in [0, 1]; ``t`` in [0, 1] is the
    normalised age, ``rng`` draws the nuisance (pose, light, background, noise)."""
    X, Y = _grid(size)
    px = 2.0 / size  # one pixel in coordinate units
    edge = 1.2 * px
    a = float(np.clip(t + traits["age_offset"] + rng.normal(0.0, 0.05), -0.1, 1.1))
    ap = max(a, 0.0)
    w_age = max(0.0, a - 0.25) / 0.75 * traits["wrinkle"]

    th = math.radians(rng.normal(0.0, 6.0))
    sc = rng.uniform(0.88, 1.08)
    tx, ty = rng.normal(0.0, 0.04, 2)
    cv = _Canvas(size, th, sc, float(tx), float(ty))
    u, v = cv.u, cv.v

    # background: colour with a linear gradient
    bg = rng.uniform(0.15, 0.9, 3).astype(np.float32)
    gdir = rng.normal(0.0, 1.0, 2)
    gdir = 0.18 * gdir / (np.linalg.norm(gdir) + 1e-6)
    grad = float(gdir[0]) * X + float(gdir[1]) * Y
    grad += 1.0
    img = grad[None] * bg.reshape(3, 1, 1)

    fw, fh = traits["face_w"] * (1.0 + 0.05 * a), traits["face_h"]
    grey = 1.0 / (1.0 + math.exp(-(a - traits["grey_onset"]) / 0.08))
    silver = np.array([0.78, 0.78, 0.76], np.float32)
    hair_col = (1.0 - grey) * traits["hair"] + grey * silver

    # neck and long hair (behind the face)
    neck = _ramp((0.24 - np.abs(u)) * (1 / edge)) * _ramp((v - 0.3) * (1 / edge))
    _blend(img, neck, traits["skin"] * 0.8)
    hl = traits["hair_len"]
    if hl > 0.05:
        bottom = -0.1 + 1.15 * hl
        side = _ramp((fw * 1.22 - np.abs(u)) * (1 / edge)) * _ramp((bottom - v) * (1 / edge))
        side *= _ramp((v + 0.2) * (1 / edge))
        _blend(img, side, hair_col * 0.92)
    cap = _ellipse(u, v, 0.0, -0.08, fw * 1.13, fh * 1.06, edge)
    cap *= _ramp((-0.05 - v) * (1 / edge))
    _blend(img, cap, hair_col)

    # face: ellipse whose lower half tapers towards the chin (jaw), sagging with age
    vv = v * (1.0 / fh)
    taper = np.minimum(np.maximum(vv, 0.0), 1.0)
    taper *= taper
    taper *= -(traits["jaw"] - 0.06 * a)
    taper += 1.0
    d = u / (fw * taper)
    d *= d
    d += vv * vv
    np.sqrt(d, out=d)
    face = _ramp((1.0 - d) * (fw / edge))
    skin = traits["skin"]
    skin = skin.mean() + (1.0 - 0.25 * ap) * (skin - skin.mean())
    # smooth blotchy skin texture, stronger with age
    up = _upsample_matrix(size)
    blot = up @ rng.normal(0.0, 1.0, (8, 8)).astype(np.float32) @ up.T
    blot *= 0.015 + 0.05 * ap
    blot += 1.0
    face_img = blot[None] * skin.astype(np.float32).reshape(3, 1, 1)
    face_img -= img
    face_img *= face
    img += face_img

    # fringe: hair over the forehead above the (age-receding) hairline
    hairline = -fh * (0.58 - 0.22 * traits["recede"] * ap)
    _blend(img, face * _ramp((hairline - v) * (1 / edge)), hair_col)

    eye_y = -0.06 * fh
    brow_y = eye_y - 0.11 + 0.03 * a
    lw = 0.018 + 0.4 * px  # wrinkle line half-width
    if w_age > 0:  # forehead lines between hairline and brows
        sl = cv.box(0.0, brow_y - 0.16, fw * 0.75)
        uu, vr = u[sl], v[sl]
        lines = np.zeros_like(uu)
        for k in range(3):
            yk = brow_y - 0.09 - 0.065 * k
            lines += _line(vr - yk - 0.012 * np.sin(uu * 9.0 + k), lw)
        lines *= _ramp((fw * 0.55 - np.abs(uu)) * (1 / (4 * px)))
        lines *= _ramp((vr - hairline) * (1 / (2 * px)))
        lines *= face[sl]
        _shade(img[:, sl[0], sl[1]], 0.22 * w_age * lines)

    ex = traits["eye_dx"] * fw / 0.55
    es = traits["eye_size"]
    erx, ery = 0.085 * es, 0.05 * es * (1.0 - 0.3 * ap)
    brow_col = (1.0 - grey) * traits["hair"] * 0.8 + grey * np.array([0.7, 0.7, 0.68], np.float32)
    for s in (-1.0, 1.0):
        cx = s * ex
        sl = cv.box(cx, eye_y - 0.03, 0.2)
        uu, vr, im = u[sl], v[sl], img[:, sl[0], sl[1]]
        if im.size == 0:
            continue
        _shade(im, 0.08 * ap * _ellipse(uu, vr, cx, eye_y + 0.06, erx * 1.05, 0.04, 2 * px))
        if w_age > 0:  # crow's feet: three short rays at the outer corner
            du = s * (uu - cx) - erx * 1.1
            dv = vr - eye_y
            ray = _line(dv + 0.5 * du, lw) + _line(dv, lw) + _line(dv - 0.5 * du, lw)
            ray *= _ramp(du * (1 / (2 * px))) * _ramp((0.07 - du) * (1 / (2 * px)))
            _shade(im, 0.2 * w_age * ray)
        sclera = _ellipse(uu, vr, cx, eye_y, erx, ery, edge)
        _blend(im, sclera, (0.94, 0.93, 0.9))
        _blend(im, _ellipse(uu, vr, cx, eye_y, ery * 1.05, ery * 1.05, edge) * sclera, traits["iris"])
        _blend(im, _ellipse(uu, vr, cx, eye_y, ery * 0.45, ery * 0.45, edge) * sclera, (0.03, 0.03, 0.03))
        brow = _ellipse(uu, vr, cx * 1.03, brow_y, erx * 1.35, 0.014 * traits["brow"] + 0.3 * px, edge)
        _blend(im, brow, brow_col)

    # nose: a shaded ridge and nostrils, slowly lengthening with age
    nl = 0.16 * traits["nose_len"] * (1.0 + 0.15 * ap)
    nose_y = eye_y + 0.05 + nl / 2
    nose_tip = nose_y + nl / 2
    sl = cv.box(0.0, nose_y + 0.01, nl / 2 + 0.05)
    uu, vr, im = u[sl], v[sl], img[:, sl[0], sl[1]]
    _shade(im, 0.12 * _ellipse(uu, vr, 0.025, nose_y, 0.035 * traits["nose_w"], nl / 2, edge))
    for s in (-1.0, 1.0):
        _shade(im, 0.35 * _ellipse(uu, vr, s * 0.04 * traits["nose_w"], nose_tip, 0.022, 0.012, edge))

    # nasolabial folds, stubble, mouth
    mouth_y = nose_tip + 0.13
    mw = 0.16 * traits["mouth_w"]
    mh = 0.032 * traits["lips"] * (1.0 - 0.35 * ap) + px
    sl = cv.box(0.0, mouth_y, mw + 0.1)
    uu, vr, im = u[sl], v[sl], img[:, sl[0], sl[1]]
    if w_age > 0:
        rel = (vr - nose_tip) * (1.0 / (mouth_y + 0.03 - nose_tip))
        inside = (rel > 0) & (rel < 1)
        relc = np.minimum(np.maximum(rel, 0.0), 1.0)
        fold = np.zeros_like(uu)
        for s in (-1.0, 1.0):
            ul = s * (0.07 * traits["nose_w"] + (mw + 0.02 - 0.07) * relc)
            fold += _line(uu - ul, lw)
        fold *= inside
        fold *= face[sl]
        _shade(im, 0.25 * w_age * fold)
    if traits["stubble"] > 0:
        beard = face * _ramp((v - (nose_tip + 0.04)) * (1 / (3 * px)))
        beard_col = (1.0 - grey) * traits["hair"] + grey * np.array([0.75, 0.75, 0.73], np.float32)
        _blend(img, beard * traits["stubble"], beard_col)
    _blend(im, _ellipse(uu, vr, 0.0, mouth_y, mw, mh, edge), traits["lip_col"] * (1.0 - 0.2 * ap))
    _shade(im, 0.5 * _ellipse(uu, vr, 0.0, mouth_y, mw * 0.9, 0.25 * px + 0.004, edge))

    # lighting on the head, exposure, colour cast, noise
    ldir = rng.normal(0.0, 1.0, 2)
    ldir = rng.uniform(0.0, 0.3) * ldir / (np.linalg.norm(ldir) + 1e-6)
    light = float(ldir[0]) * u + float(ldir[1]) * v
    light *= np.maximum(face, cap)
    light += 1.0
    gain = (rng.uniform(0.75, 1.15) * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    img *= light
    img *= gain.reshape(3, 1, 1)
    oy, ox = rng.integers(0, size, 2)
    noise = _noise_bank(size)[:, oy : oy + size, ox : ox + size] * rng.uniform(0.005, 0.03)
    img += noise
    return _ramp(img)


class SyntheticFaces(FaceDataset):
    """Procedural face images with known labels, generated on the fly (see module docstring).

    Args:
        num_samples: number of items of the full generator (before ``split``).
        image_size: side in pixels (square images; 32..256 sensible, 64 default).
        num_classes: number of ordinal age classes ``K``.
        num_identities: distinct people; default ``max(2, num_samples // 8)``.
        seed: generator seed.
        transform: applied to the float32 tensor ``[3, S, S]`` in [0, 1] (facecore's
            transforms accept tensors); ``None`` returns that tensor.
        age_range: inclusive integer age range ``(lo, hi)`` of ``age_years``.
        split: ``"train"`` / ``"valid"`` / ``"test"`` (by ``split_seed`` over
            ``range(num_samples)``, :func:`facecore.data.make_splits`) or ``None`` (all).
        cache: keep rendered images (uint8) in memory after the first access.

    Items are ``(image, {"age", "age_years", "gender", "race", "identity"})``.
    :meth:`batch` renders many items into one tensor (handy without a DataLoader).
    """

    race_names = ("light", "medium", "dark")
    gender_names = ("male", "female")

    def __init__(
        self,
        num_samples: int,
        *,
        image_size: int = 64,
        num_classes: int = 8,
        num_identities: int | None = None,
        seed: int = 0,
        transform: Callable[[Any], Any] | None = None,
        age_range: tuple[int, int] = (16, 75),
        split: str | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int | None = None,
        cache: bool = False,
    ) -> None:
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if not isinstance(image_size, int) or image_size < 16:
            raise ValueError(f"image_size must be an int >= 16, got {image_size!r}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        lo, hi = (int(x) for x in age_range)
        if hi - lo + 1 < num_classes:
            raise ValueError(
                f"age_range {tuple(age_range)} spans {hi - lo + 1} years, fewer than "
                f"num_classes={num_classes}"
            )
        if num_identities is None:
            num_identities = max(2, num_samples // 8)
        if not isinstance(num_identities, int) or num_identities < 1:
            raise ValueError(f"num_identities must be a positive int, got {num_identities!r}")
        self.num_samples = num_samples
        self.image_size = image_size
        self.num_classes = num_classes
        self.num_identities = num_identities
        self.num_races = 3
        self.seed = int(seed)
        self.transform = transform
        self.age_range = (lo, hi)
        self.split = split
        self.indices = np.asarray(
            split_indices(num_samples, split, split_fractions, self.seed if split_seed is None else split_seed),
            dtype=np.int64,
        )
        self._labels = synthetic_labels(
            self.seed, self.indices, num_classes=num_classes, num_identities=num_identities,
            age_range=self.age_range,
        )
        self._traits: dict[int, dict[str, Any]] = {}
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def _traits_of(self, identity: int, gender: int, race: int) -> dict[str, Any]:
        tr = self._traits.get(identity)
        if tr is None:
            tr = _identity_traits(self.seed, identity, gender, race)
            if len(self._traits) < 100_000:
                self._traits[identity] = tr
        return tr

    def render(self, index: int) -> np.ndarray:
        """Float32 ``[3, S, S]`` RGB image of item ``index`` of this dataset (split-relative)."""
        n = len(self.indices)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        index %= n
        if self.cache and index in self._cache:
            return self._cache[index].astype(np.float32) / 255.0
        g = int(self.indices[index])
        lab = self._labels
        traits = self._traits_of(int(lab["identity"][index]), int(lab["gender"][index]), int(lab["race"][index]))
        lo, hi = self.age_range
        t = (float(lab["age_years"][index]) - lo) / max(1, hi - lo)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x5A, g])
        img = render_face(traits, t, self.image_size, rng)
        if self.cache:
            q = np.rint(img * 255.0).astype(np.uint8)
            self._cache[index] = q
            img = q.astype(np.float32) / 255.0
        return img

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        img = torch.from_numpy(self.render(index))
        if self.transform is not None:
            img = self.transform(img)
        n = len(self.indices)
        return img, self._target(index % n)

    def batch(self, indices: Sequence[int] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Render ``indices`` (default: all) to ``([N, 3, S, S] float32, {key: [N] int64})``
        (no ``transform``)."""
        idx = list(range(len(self))) if indices is None else [int(i) for i in indices]
        out = np.empty((len(idx), 3, self.image_size, self.image_size), np.float32)
        for j, i in enumerate(idx):
            out[j] = self.render(i)
        x = torch.from_numpy(out)
        sel = np.asarray(idx, dtype=np.int64) % max(1, len(self))
        return x, {k: torch.from_numpy(v[sel].copy()) for k, v in self._labels.items()}

    def __repr__(self) -> str:
        return (
            f"SyntheticFaces(num_samples={self.num_samples}, split={self.split!r}, len={len(self)}, "
            f"image_size={self.image_size}, num_classes={self.num_classes}, "
            f"num_identities={self.num_identities}, seed={self.seed})"
        )
