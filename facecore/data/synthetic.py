r"""Synthetic faces: a procedural, seeded generator of face-like RGB images with known labels.

**These are synthetic cartoons, not photographs of people.** They exist so that training,
the demo and the tests run on a fresh machine with no download, and so that the data have a
*known* ground truth. Results on them say nothing about accuracy on real faces.

Items are rendered on the fly, a whole batch at once (numpy, vectorised over the batch:
coordinate grids ``[B, S, S]``, per-image parameters as ``[B]`` arrays, shapes composited
with soft masks; small features only inside batch-wide pixel windows). :meth:`batch`,
:meth:`SyntheticFaces.render_batch` and ``__getitems__`` (used by torch's ``DataLoader``)
render ~1,600 images/s at 64 px on one busy core (~500/s one at a time; the former
per-image renderer did ~600/s there). Item ``i`` depends only on ``(seed, i, image_size,
num_classes, num_identities, age_range, pose_jitter)`` and is bit-identical whether rendered alone or in
any batch: every parameter is a counter-based hash of ``(seed, i)`` or ``(seed, identity)``
and every pixel operation is element-wise (no reductions across pixels or images).

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
  (strength ``w = clip((a - 0.15) / 0.85, 0, 1)`` times an identity factor; forehead line
  ``k = 0..3`` fades in with ``1.6 w - 0.3 k``), under-eye shadows, age spots (more with
  ``a``), hair (and brow / stubble) greying (a smoothstep over ``a`` in
  ``[onset, onset + 0.45]``, onset per identity in [0.2, 0.55]), receding hairline (mostly
  men), thinner and paler lips, narrower eyes, longer nose, lower brows, sagging jaw,
  blotchier, darker, less saturated skin;
* **gender**: hair length (long mostly for women), jaw taper and face width, brow thickness,
  lip colour, stubble (men only);
* **nuisance** (per image): pose (rotation ~ N(0, 6 deg), scale, shift), background colour
  and gradient, lighting direction / strength, exposure, colour cast, sensor noise
  (normals are Irwin-Hall sums of four hashed uniforms, bounded at +-3.46 sd).

The age signal is deliberately noisy (identity offset and per-image jitter, each sd 0.05 in
``t``, about 0.4 classes of 8; identity-dependent greying onset and wrinkle strength), so a
model beats the median baseline clearly but cannot be perfect: on 64 px, 8 classes, a
``small_cnn`` CORAL model trained ~60 s on one thread reaches MAE ~1.0 vs ~2.0 for the
median baseline (ridge regression on 16 x 16 pixels: ~0.9).
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

__all__ = ["GENDER_CUES", "SyntheticFaces", "face_parameters", "render_face", "render_faces"]

#: The gender cues the renderer draws (``SyntheticFaces(gender_cues=...)`` can decouple each
#: from the gender label): ``hair`` (length, receding hairline), ``face`` (width, jaw taper,
#: eye size), ``brows`` (thickness), ``lips`` (fullness, colour), ``stubble``.
GENDER_CUES = ("hair", "face", "brows", "lips", "stubble")

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


_SKIN = np.array([[0.93, 0.78, 0.67], [0.78, 0.58, 0.43], [0.47, 0.32, 0.23]], np.float64)
_IRIS = np.array(
    [[0.30, 0.18, 0.08], [0.18, 0.10, 0.05], [0.25, 0.45, 0.70], [0.30, 0.45, 0.25]], np.float64
)
_SILVER = np.array([0.80, 0.80, 0.78])
_LIP = np.array([[0.62, 0.36, 0.34], [0.75, 0.28, 0.32]])  # male, female
_SPOT = np.array([0.55, 0.38, 0.25])  # age-spot pigment

# hashing domains of the rendering parameters (the label streams are 1, 2, 3)
_TRAIT_DOMAIN = 0x1D
_IMAGE_DOMAIN = 0x5A
_NUM_DRAWS = 48


def _hash_uniforms(seed: int, idx: np.ndarray, domain: int, n: int) -> np.ndarray:
    """``[len(idx), n]`` uniform [0, 1) float64; entry ``[b, j]`` depends only on
    ``(seed, idx[b], domain, j)`` (element-wise integer hashing, so a row is the same in
    any batch)."""
    with np.errstate(over="ignore"):
        key = np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ (np.uint64(domain) * np.uint64(0x632BE59BD9B4E019))
        base = _mix64(np.array([key], dtype=np.uint64))[0]
        cols = _mix64(np.arange(n, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03) + base)
        x = _mix64(np.asarray(idx).astype(np.uint64)[:, None] ^ base)
        x = _mix64(x + cols[None, :])
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class _Draws:
    """Hands out the columns of a ``[B, n]`` uniform matrix in a fixed order."""

    def __init__(self, u: np.ndarray) -> None:
        self._u, self._k = u, 0

    def u(self, lo: float = 0.0, hi: float = 1.0, n: int | None = None) -> np.ndarray:
        """Uniform on [lo, hi): ``[B]`` (or ``[B, n]``)."""
        m = 1 if n is None else n
        x = self._u[:, self._k : self._k + m]
        self._k += m
        x = lo + (hi - lo) * x
        return x[:, 0] if n is None else x

    def normal(self, sd: float = 1.0) -> np.ndarray:
        """Approximately normal ``[B]`` with mean 0 and sd ``sd`` (Irwin-Hall: the sum of
        four uniforms, standardised; bounded at +-3.46 sd; pure arithmetic, so exact)."""
        return (self.u(n=4).sum(axis=1) - 2.0) * (sd * math.sqrt(3.0))


def face_parameters(
    seed: int,
    index: np.ndarray,
    identity: np.ndarray,
    gender: np.ndarray,
    race: np.ndarray,
    t: np.ndarray,
    pose_jitter: float = 1.0,
    cue_gender: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Rendering parameters (float64 ``[B]`` or ``[B, 3]`` arrays) of generator items ``index``.

    Identity traits hash ``(seed, identity)``, nuisance hashes ``(seed, index)``; ``t`` in
    [0, 1] is the normalised true age. Row ``b`` depends only on row ``b`` of the inputs.
    ``pose_jitter`` scales the pose nuisance (rotation, shift, scale around its mean 0.98):
    1 is the default spread, 0 puts every face at the same pose (the same draws are used,
    so only the pose changes).
    ``cue_gender``: per gender cue (see :data:`GENDER_CUES`), the ``[B]`` gender that cue is
    drawn with instead of ``gender`` (the draws themselves are unchanged).
    """
    idx = np.asarray(index, dtype=np.int64)
    ident = np.asarray(identity, dtype=np.int64)
    cue_female = {
        c: np.asarray((cue_gender or {}).get(c, gender)) == 1 for c in GENDER_CUES
    }
    race = np.asarray(race, dtype=np.int64)
    d = _Draws(_hash_uniforms(seed, ident, _TRAIT_DOMAIN, _NUM_DRAWS))
    p: dict[str, np.ndarray] = {}
    # -- identity traits (stable per person) ----------------------------------------------
    p["skin"] = np.clip(_SKIN[race] * d.u(0.93, 1.07, 3), 0.0, 1.0)
    dark = (race == 2) | (d.u() < 0.55)
    hl = d.u()
    hair_l = np.where(dark, 0.04 + 0.14 * hl, 0.22 + 0.33 * hl)
    p["hair"] = np.clip(hair_l[:, None] * np.array([1.25, 1.0, 0.72]) + d.u(0, 0.04, 3), 0, 1)
    p["iris"] = _IRIS[np.where(race == 2, 0, np.minimum((d.u() * 4).astype(np.int64), 3))]
    p["face_w"] = d.u(0.50, 0.58) + np.where(cue_female["face"], 0.0, 0.035)
    p["face_h"] = d.u(0.66, 0.76)
    p["jaw"] = np.where(cue_female["face"], d.u(0.28, 0.42), d.u(0.08, 0.22))
    p["eye_dx"] = d.u(0.19, 0.25)
    p["eye_size"] = d.u(0.85, 1.15) * np.where(cue_female["face"], 1.06, 1.0)
    p["nose_w"] = d.u(0.8, 1.25)
    p["nose_len"] = d.u(0.85, 1.15)
    p["mouth_w"] = d.u(0.85, 1.2)
    p["lips"] = d.u(0.9, 1.3) * np.where(cue_female["lips"], 1.2, 1.0)
    p["lip_col"] = _LIP[cue_female["lips"].astype(np.int64)]
    p["brow"] = d.u(0.8, 1.1) * np.where(cue_female["brows"], 1.0, 1.8)
    long_m = d.u() < 0.3
    p["hair_len"] = np.where(cue_female["hair"], d.u(0.55, 1.0), d.u(0.0, 0.2) * long_m)
    p["recede"] = np.where(cue_female["hair"], 0.0, d.u())
    has_stubble = d.u() < 0.5
    p["stubble"] = np.where(cue_female["stubble"], 0.0, d.u(0.0, 0.6) * has_stubble)
    grey_onset = d.u(0.2, 0.55)
    wrinkle = d.u(0.75, 1.25)
    age_offset = d.normal(0.05)
    # -- per image: apparent age and nuisance --------------------------------------------
    n = _Draws(_hash_uniforms(seed, idx, _IMAGE_DOMAIN, _NUM_DRAWS))
    a = np.clip(np.asarray(t, np.float64) + age_offset + n.normal(0.05), -0.1, 1.1)
    p["a"] = a
    g = np.clip((a - grey_onset) / 0.45, 0.0, 1.0)
    p["grey"] = g * g * (3.0 - 2.0 * g)  # smoothstep
    p["wrinkle"] = np.clip((a - 0.15) / 0.85, 0.0, 1.0) * wrinkle
    j = float(pose_jitter)
    th = n.normal(math.radians(6.0)) * j
    p["cos"] = np.array([math.cos(x) for x in th])
    p["sin"] = np.array([math.sin(x) for x in th])
    scale = n.u(0.88, 1.08)
    p["scale"] = scale if j == 1.0 else 0.98 + (scale - 0.98) * j  # j = 1: bit-identical
    p["tx"], p["ty"] = n.normal(0.04) * j, n.normal(0.04) * j
    p["bg"] = n.u(0.15, 0.9, 3)
    gx, gy = n.normal(), n.normal()
    gn = 0.18 / (np.sqrt(gx * gx + gy * gy) + 1e-6)
    p["bg_gx"], p["bg_gy"] = gx * gn, gy * gn
    lx, ly = n.normal(), n.normal()
    ln = n.u(0.0, 0.3) / (np.sqrt(lx * lx + ly * ly) + 1e-6)
    p["light_x"], p["light_y"] = lx * ln, ly * ln
    p["gain"] = n.u(0.75, 1.15)[:, None] * n.u(0.93, 1.07, 3)
    p["noise"] = n.u(0.005, 0.03)
    p["noise_at"] = n.u(n=2)  # window offsets into the noise banks
    p["blot_at"] = n.u(n=2)
    p["spot_at"] = n.u(n=2)
    return p


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}
_BANKS: dict[tuple[str, int], np.ndarray] = {}
_CACHE_LOCK = threading.Lock()


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``X, Y`` in [-1, 1], float32 ``[S, S]``."""
    with _CACHE_LOCK:
        g = _GRIDS.get(size)
        if g is None:
            c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
            g = (
                np.ascontiguousarray(np.broadcast_to(c[None, :], (size, size))),
                np.ascontiguousarray(np.broadcast_to(c[:, None], (size, size))),
            )
            _GRIDS[size] = g
    return g


def _upsample(field: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of the last two axes of ``field`` to ``size`` (pixel centres)."""
    n = field.shape[-1]
    pos = np.clip((np.arange(size) + 0.5) / size * n - 0.5, 0, n - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w = pos - i0
    f = field[..., i0, :] * (1 - w)[:, None] + field[..., i1, :] * w[:, None]
    return f[..., i0] * (1 - w) + f[..., i1] * w


def _bank(kind: str, size: int) -> np.ndarray:
    """Fixed random fields of side ``2 * size`` from which every image takes an ``S x S``
    window at hashed offsets (fresh per-pixel random numbers would dominate the time):
    ``"noise"`` white N(0, 1); ``"blot"`` smooth N(0, 1)-ish (features
    ~S/8 wide); ``"spot"`` small blobs (~S/20 wide), unit variance."""
    with _CACHE_LOCK:
        b = _BANKS.get((kind, size))
        if b is None:
            r = np.random.default_rng([0x4E01, len(kind), size])
            if kind == "noise":
                b = r.standard_normal((2 * size, 2 * size), dtype=np.float32)
            else:
                cells = 16 if kind == "blot" else 40
                b = _upsample(r.standard_normal((cells, cells)), 2 * size)
                b = ((b - b.mean()) / b.std()).astype(np.float32)
            _BANKS[(kind, size)] = b
    return b


def _windows(bank: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """``[..., B, S, S]`` windows of ``bank`` ``[..., 2S, 2S]`` at offsets ``at * S``."""
    off = np.minimum((at * size).astype(np.int64), size)
    view = np.lib.stride_tricks.sliding_window_view(bank, (size, size), axis=(-2, -1))
    return view[..., off[:, 0], off[:, 1], :, :]


def _ramp(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] in place."""
    np.maximum(x, 0.0, out=x)
    return np.minimum(x, 1.0, out=x)


def _ellipse(u, v, cx, cy, rx, ry, edge: float) -> np.ndarray:
    """Soft mask of the ellipse ``d^2 = ((u-cx)/rx)^2 + ((v-cy)/ry)^2 <= 1``: 1 inside
    ``d^2 <= 1 - 2 edge / r``, 0 outside, ``(1 - d^2) r / (2 edge)`` between (``r = min(rx, ry)``;
    a rim ~``edge`` wide) (coordinates and parameters broadcast, e.g. ``[B, h, w]`` / ``[B, 1, 1]``)."""
    du = (u - cx) * (1.0 / rx)
    dv = (v - cy) * (1.0 / ry)
    du *= du
    dv *= dv
    du += dv
    du -= 1.0
    du *= -(np.minimum(rx, ry) * (0.5 / edge))  # d^2 - 1 ~ 2 (d - 1) at the rim
    return _ramp(du)


def _blend(img: np.ndarray, mask: np.ndarray, color: np.ndarray) -> None:
    """``img += mask * (color - img)`` channel by channel, with ``img`` ``[3, B, h, w]``
    (channels outermost: every operation is a contiguous or plain-strided numpy loop),
    ``mask`` ``[B, h, w]`` and ``color`` ``[B, 3]``."""
    c = np.asarray(color, np.float32)
    for ch in range(3):
        x = img[ch]
        d = c[:, ch].reshape(-1, 1, 1) - x
        d *= mask
        x += d


def _shade(img: np.ndarray, amount: np.ndarray) -> None:
    """Darken ``img`` ``[3, B, h, w]`` by the fraction ``amount`` ``[B, h, w]``."""
    f = 1.0 - amount
    for ch in range(3):
        img[ch] *= f


def _line(x: np.ndarray, width) -> np.ndarray:
    """Soft line profile ``max(0, 1 - (x / width)^2)^2`` (a compact Gaussian stand-in)."""
    y = x * (1.0 / width)
    y *= y
    np.subtract(1.0, y, out=y)
    np.maximum(y, 0.0, out=y)
    y *= y
    return y


def _cut(x: np.ndarray, sl: tuple[slice, slice]) -> np.ndarray:
    """Contiguous copy of the pixel window ``sl`` of ``x`` ``[B, S, S]`` (long inner loops)."""
    return np.ascontiguousarray(x[:, sl[0], sl[1]])


def _col(x: Any) -> np.ndarray:
    """A ``[B]`` parameter as float32 ``[B, 1, 1]`` (broadcasts against ``[B, h, w]``)."""
    return np.asarray(x, np.float32).reshape(-1, 1, 1)


def _affine(ax: np.ndarray, ay: np.ndarray, a0: np.ndarray, size: int) -> np.ndarray:
    """The per-image affine field ``ax X + ay Y + a0``, float32 ``[B, S, S]``, as one
    broadcast add of a row term and a column term."""
    c = _grid(size)[0][0]
    return (_col(ax) * c.reshape(1, 1, -1)) + (_col(ay) * c.reshape(1, -1, 1) + _col(a0))


class _Pose:
    """Per-image pose: face coordinates ``(u, v)`` ``[B, S, S]`` of every pixel, and
    batch-wide pixel windows / row bands, so a feature is drawn only where it can be
    non-zero (outside, its mask is exactly 0, so the window never changes a pixel)."""

    def __init__(self, p: dict[str, np.ndarray], size: int) -> None:
        self.size = size
        self.c, self.s = c, s = p["cos"], p["sin"]
        self.sc, self.tx, self.ty = sc, tx, ty = p["scale"], p["tx"], p["ty"]
        # u = (c (X - tx) + s (Y - ty)) / sc,  v = (c (Y - ty) - s (X - tx)) / sc
        self.u = _affine(c / sc, s / sc, -(c * tx + s * ty) / sc, size)
        self.v = _affine(-s / sc, c / sc, (s * tx - c * ty) / sc, size)

        vl, vr = self.v[:, :, 0], self.v[:, :, -1]  # v is linear along a row: extremes at the ends
        self._row_lo = np.minimum(vl, vr) - 1e-3
        self._row_hi = np.maximum(vl, vr) + 1e-3

    def box(self, u0: Any, u1: Any, v0: Any, v1: Any) -> tuple[slice, slice]:
        """Pixel slices covering, in every image, the face-coordinate rectangle
        ``[u0, u1] x [v0, v1]`` (per-image values or scalars) plus two pixels."""
        xs, ys = [], []
        for cu in (u0, u1):
            for cv in (v0, v1):
                xs.append(self.tx + self.sc * (self.c * cu - self.s * cv))
                ys.append(self.ty + self.sc * (self.s * cu + self.c * cv))
        h, n = self.size / 2.0, self.size
        x0 = max(0, math.floor((np.min(xs) + 1.0) * h - 2.5))
        x1 = min(n, math.ceil((np.max(xs) + 1.0) * h + 1.5) + 1)
        y0 = max(0, math.floor((np.min(ys) + 1.0) * h - 2.5))
        y1 = min(n, math.ceil((np.max(ys) + 1.0) * h + 1.5) + 1)
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))

    def rows(self, lo: float = -math.inf, hi: float = math.inf) -> slice:
        """Rows in which a pixel of some image has ``lo < v < hi`` (a contiguous band)."""
        ok = ((self._row_hi > lo) & (self._row_lo < hi)).any(axis=0)
        nz = np.flatnonzero(ok)
        return slice(int(nz[0]), int(nz[-1]) + 1) if len(nz) else slice(0, 0)


def render_faces(
    p: dict[str, np.ndarray], size: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Render a batch of faces, float32 ``[B, 3, size, size]`` (RGB, channels first; a
    transposed view of a ``[3, B, size, size]`` buffer) in [0, 1],
    from :func:`face_parameters`' dict. Every operation is element-wise per image, so an
    image does not depend on the rest of the batch (bit for bit)."""
    B = p["a"].shape[0]
    px = 2.0 / size  # one pixel in coordinate units
    edge = 1.2 * px
    ie = 1.0 / edge
    a = p["a"]
    ap = np.maximum(a, 0.0)
    AP = _col(ap)
    grey = p["grey"][:, None]
    w_age = p["wrinkle"]
    W = _col(w_age)
    pose = _Pose(p, size)
    u, v = pose.u, pose.v

    gain = p["gain"]  # exposure and colour cast, folded into every colour

    # background: a flat colour; the scene-wide linear gradient starts the shading field
    bg = (p["bg"] * gain).astype(np.float32)
    if out is None:
        out = np.empty((B, 3, size, size), np.float32)
    img = out.transpose(1, 0, 2, 3)
    for ch in range(3):
        img[ch] = bg[:, ch].reshape(B, 1, 1)
    shading = _affine(p["bg_gx"], p["bg_gy"], np.ones(B), size)

    fw = p["face_w"] * (1.0 + 0.05 * a)
    fh = p["face_h"]
    FW, FH = _col(fw), _col(fh)
    hair_col = ((1.0 - grey) * p["hair"] + grey * _SILVER) * gain

    # neck and long hair (behind the face)
    r = pose.rows(lo=0.3)
    ub, vb = u[:, r], v[:, r]
    neck = _ramp((0.24 - np.abs(ub)) * ie)
    neck *= _ramp((vb - 0.3) * ie)
    _blend(img[:, :, r], neck, p["skin"] * 0.8 * gain)
    hl = p["hair_len"]
    if np.any(hl > 0.05):
        r = pose.rows(lo=-0.2, hi=float(np.max(-0.1 + 1.15 * hl)))
        ub, vb = u[:, r], v[:, r]
        bottom = _col(-0.1 + 1.15 * hl)
        side = _ramp((FW * 1.22 - np.abs(ub)) * ie)
        side *= _ramp((bottom - vb) * ie)
        side *= _ramp((vb + 0.2) * ie)
        side *= _col(hl > 0.05)
        _blend(img[:, :, r], side, hair_col * 0.92)
    # hair cap above the forehead
    rc = pose.rows(hi=-0.05)
    cap = np.zeros_like(u)
    cap[:, rc] = _ellipse(u[:, rc], v[:, rc], 0.0, -0.08, FW * 1.13, FH * 1.06, edge)
    cap[:, rc] *= _ramp((-0.05 - v[:, rc]) * ie)
    _blend(img[:, :, rc], cap[:, rc], hair_col)

    # face: an ellipse whose lower half tapers towards the chin (jaw), sagging with age
    vv = v * (1.0 / FH)
    taper = np.minimum(np.maximum(vv, 0.0), 1.0)
    taper *= taper
    taper *= -_col(p["jaw"] - 0.06 * a)
    taper += 1.0
    taper *= FW
    d = u / taper
    d *= d
    d += vv * vv
    np.sqrt(d, out=d)
    np.subtract(1.0, d, out=d)
    d *= FW * ie
    face = _ramp(d)
    # skin: less saturated and slightly darker with age, blotchy texture stronger with age
    skin = p["skin"]
    mean = skin.mean(axis=1, keepdims=True)
    skin = (mean + (1.0 - 0.35 * ap)[:, None] * (skin - mean)) * (1.0 - 0.08 * ap)[:, None]
    blot = _windows(_bank("blot", size), p["blot_at"], size) * _col(0.015 + 0.05 * ap)
    _blend(img, face, skin * gain)
    # multiplicative shading applied at the end: blotches and age spots (darker where a
    # blob field exceeds an age-dependent threshold) on the face, lighting on the head
    spots = _windows(_bank("spot", size), p["spot_at"], size) - _col(2.8 - 1.4 * ap)
    spots *= 3.0
    spots = _ramp(spots)
    spots *= -0.25
    blot += spots
    blot *= face
    blot += 1.0
    shading *= blot

    # fringe: hair over the forehead above the (age-receding) hairline
    hairline = -fh * (0.58 - 0.22 * p["recede"] * ap)
    HL = _col(hairline)
    r = pose.rows(hi=float(np.max(hairline)))
    fringe = _ramp((HL - v[:, r]) * ie)
    fringe *= face[:, r]
    _blend(img[:, :, r], fringe, hair_col)

    # forehead lines between the hairline and the brows, more and deeper with age
    eye_y = -0.06 * fh
    brow_y = eye_y - 0.11 + 0.03 * a
    lw = 0.018 + 0.4 * px  # wrinkle line half-width
    if np.any(w_age > 0):
        # line k = 0..3 (from the brows up) follows v = y0 - 0.055 k + 0.06 u^2 and
        # fades in as 1.6 w - 0.3 k grows: one pass with the nearest line's index
        y0 = brow_y - 0.08
        sl = pose.box(-fw * 0.56, fw * 0.56, y0 - 0.055 * 3 - 2 * lw, y0 + 0.06 * 0.1 + 2 * lw)
        uu, vr, fc = _cut(u, sl), _cut(v, sl), _cut(face, sl)
        z = uu * uu
        z *= 0.06
        z += _col(y0)
        z -= vr
        z *= 1.0 / 0.055
        k = np.rint(z)
        valid = (k >= 0) & (k <= 3)
        z -= k
        z *= 0.055
        lines = _line(z, lw)
        k *= -0.3
        k += _col(1.6 * w_age)
        strength = _ramp(k)
        strength *= valid
        lines *= strength
        lines *= _ramp((FW * 0.55 - np.abs(uu)) * (1 / (4 * px)))
        lines *= _ramp((vr - HL) * (1 / (2 * px)))
        lines *= fc
        lines *= 0.3
        _shade(img[:, :, sl[0], sl[1]], lines)

    # eyes (narrower with age), under-eye shadows, crow's feet, brows (greying)
    ex = p["eye_dx"] * fw / 0.55
    es = p["eye_size"]
    erx, ery = 0.085 * es, 0.05 * es * (1.0 - 0.3 * ap)
    ERX, ERY, EY, BY = _col(erx), _col(ery), _col(eye_y), _col(brow_y)
    brow_col = ((1.0 - grey) * p["hair"] * 0.8 + grey * (_SILVER * 0.9)) * gain
    sclera_col = np.array([0.94, 0.93, 0.9]) * gain
    pupil_col = np.array([0.03, 0.03, 0.03]) * gain
    iris_col = p["iris"] * gain
    # both eyes at once: the face is mirror-symmetric in u, so draw at u = +ex with |u|
    reach = ex + erx * 1.1 + 0.08 + lw
    sl = pose.box(-reach, reach, brow_y - 0.03, eye_y + 0.1 + edge)
    uu, vr, im = np.abs(u[:, sl[0], sl[1]]), _cut(v, sl), img[:, :, sl[0], sl[1]]
    if uu.size:
        cx = _col(ex)
        _shade(im, (0.12 * AP) * _ellipse(uu, vr, cx, EY + 0.06, ERX * 1.05, 0.04, 2 * px))
        if np.any(w_age > 0):  # crow's feet: three short rays at the outer corner
            du = (uu - cx) - ERX * 1.1
            dv = vr - EY
            ray = _line(dv + 0.5 * du, lw)
            ray += _line(dv, lw)
            ray += _line(dv - 0.5 * du, lw)
            ray *= _ramp(du * (1 / (2 * px)))
            ray *= _ramp((0.08 - du) * (1 / (2 * px)))
            ray *= 0.3 * W
            _shade(im, ray)
        sclera = _ellipse(uu, vr, cx, EY, ERX, ERY, edge)
        _blend(im, sclera, sclera_col)
        _blend(im, _ellipse(uu, vr, cx, EY, ERY * 1.05, ERY * 1.05, edge) * sclera, iris_col)
        pupil = _ellipse(uu, vr, cx, EY, ERY * 0.45, ERY * 0.45, edge) * sclera
        _blend(im, pupil, pupil_col)
        bh = _col(0.014 * p["brow"] + 0.3 * px)
        _blend(im, _ellipse(uu, vr, cx * 1.03, BY, ERX * 1.35, bh, edge), brow_col)

    # nose: a shaded ridge and nostrils, slowly lengthening with age
    nl = 0.16 * p["nose_len"] * (1.0 + 0.15 * ap)
    nose_y = eye_y + 0.05 + nl / 2
    nose_tip = nose_y + nl / 2
    sl = pose.box(-0.12 * p["nose_w"], 0.12 * p["nose_w"], nose_y - nl / 2 - edge, nose_tip + 0.02)
    uu, vr, im = _cut(u, sl), _cut(v, sl), img[:, :, sl[0], sl[1]]
    NW, NT = _col(p["nose_w"]), _col(nose_tip)
    _shade(im, 0.12 * _ellipse(uu, vr, 0.025, _col(nose_y), 0.035 * NW, _col(nl / 2), edge))
    for s in (-1.0, 1.0):
        _shade(im, 0.35 * _ellipse(uu, vr, s * 0.04 * NW, NT, 0.022, 0.012, edge))

    # nasolabial folds, stubble, mouth
    mouth_y = nose_tip + 0.13
    mw = 0.16 * p["mouth_w"]
    mh = 0.032 * p["lips"] * (1.0 - 0.35 * ap) + px
    MY, MW = _col(mouth_y), _col(mw)
    sl = pose.box(-(mw + 0.03 + lw), mw + 0.03 + lw, nose_tip - edge, mouth_y + mh + 0.04 + edge)
    uu, vr, im = _cut(u, sl), _cut(v, sl), img[:, :, sl[0], sl[1]]
    if np.any(w_age > 0):
        rel = (vr - NT) * _col(1.0 / (mouth_y + 0.03 - nose_tip))
        inside = ((rel > 0) & (rel < 1)).astype(np.float32)
        relc = np.minimum(np.maximum(rel, 0.0), 1.0)
        fold = np.zeros_like(uu)
        for s in (-1.0, 1.0):
            ul = s * (0.07 * NW + (MW + 0.02 - 0.07) * relc)
            fold += _line(uu - ul, lw)
        fold *= inside
        fold *= face[:, sl[0], sl[1]]
        _shade(im, (0.35 * W) * fold)
    if np.any(p["stubble"] > 0):
        r = pose.rows(lo=float(np.min(nose_tip)) + 0.04)
        beard = _ramp((v[:, r] - (NT + 0.04)) * (1 / (3 * px)))
        beard *= face[:, r]
        beard *= _col(p["stubble"])
        beard_col = ((1.0 - grey) * p["hair"] + grey * (_SILVER * 0.95)) * gain
        _blend(img[:, :, r], beard, beard_col)
    lip_col = p["lip_col"] * (1.0 - 0.25 * ap)[:, None] * gain
    _blend(im, _ellipse(uu, vr, 0.0, MY, MW, _col(mh), edge), lip_col)
    _shade(im, 0.5 * _ellipse(uu, vr, 0.0, MY, MW * 0.9, 0.25 * px + 0.004, edge))

    # directional lighting on the head (lx u + ly v, affine in X, Y), then sensor noise
    # (multiplicative, luminance only)
    lx, ly = p["light_x"], p["light_y"]
    light = _affine(
        (lx * p["cos"] - ly * p["sin"]) / p["scale"],
        (lx * p["sin"] + ly * p["cos"]) / p["scale"],
        -(lx * (p["cos"] * p["tx"] + p["sin"] * p["ty"]) + ly * (p["cos"] * p["ty"] - p["sin"] * p["tx"])) / p["scale"],
        size,
    )
    light *= np.maximum(face, cap)
    light += 1.0
    shading *= light
    noise = _windows(_bank("noise", size), p["noise_at"], size)  # [B, S, S]
    noise *= _col(p["noise"])
    noise += 1.0
    shading *= noise
    for ch in range(3):
        img[ch] *= shading
    np.clip(out, 0.0, 1.0, out=out)
    return out


def render_face(p: dict[str, np.ndarray], size: int) -> np.ndarray:
    """One face, float32 ``[3, size, size]``, from a batch-of-one :func:`face_parameters`
    dict (a thin wrapper of :func:`render_faces`)."""
    return render_faces(p, size)[0]


def _check_gender_cues(cues: Any) -> dict[int, tuple[str, ...]] | None:
    if cues is None:
        return None
    if not isinstance(cues, dict):
        raise ValueError(f"gender_cues must be a dict {{race: cues}} or None, got {cues!r}")
    out = {}
    for race, names in cues.items():
        if isinstance(race, bool) or not isinstance(race, int | np.integer) or not 0 <= race < 3:
            raise ValueError(f"gender_cues keys must be skin-tone groups 0, 1, 2, got {race!r}")
        names = (names,) if isinstance(names, str) else tuple(names)
        bad = [c for c in names if c not in GENDER_CUES]
        if bad:
            raise ValueError(f"gender_cues[{race}] has unknown cues {bad}; known: {list(GENDER_CUES)}")
        out[int(race)] = names
    return out


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
        pose_jitter: scale of the per-image pose nuisance (rotation, shift, scale); 1 is
            the default, smaller values align the faces (sharper mean faces, e.g. for the
            gender prototypes of :mod:`facecore.privacy`), 0 fixes the pose.
        gender_cues: plant a group-dependent gender cue (a known bias): ``{race: cues}``
            maps a skin-tone group to the subset of :data:`GENDER_CUES` that follow the
            gender label for its identities; the other cues of that group are drawn with an
            independent per-identity coin (same marginal look, no information about gender).
            Groups not in the mapping keep every cue. ``None`` (default): every cue follows
            gender everywhere (images are unchanged). Labels never change.

    Items are ``(image, {"age", "age_years", "gender", "race", "identity"})``.
    :meth:`batch` renders many items into one tensor (handy without a DataLoader);
    ``__getitems__`` makes a ``DataLoader`` fetch each batch with one vectorised render.
    """

    render_chunk: int = 16
    """Images rendered per vectorised call (bounds the temporaries; does not change pixels)."""
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
        pose_jitter: float = 1.0,
        gender_cues: dict[int, Sequence[str]] | None = None,
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
        if not isinstance(pose_jitter, int | float) or not 0.0 <= float(pose_jitter) <= 2.0:
            raise ValueError(f"pose_jitter must be a number in [0, 2], got {pose_jitter!r}")
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
        self.pose_jitter = float(pose_jitter)
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
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self.gender_cues = _check_gender_cues(gender_cues)

    def __len__(self) -> int:
        return len(self.indices)

    def _positions(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Split-relative ``indices`` as non-negative int64 positions (IndexError if out of range)."""
        pos = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self.indices)
        bad = (pos < -n) | (pos >= n)
        if bad.any():
            raise IndexError(
                f"index {int(pos[bad][0])} out of range for a dataset of {n} items"
            )
        return pos % n

    def _render_positions(self, pos: np.ndarray) -> np.ndarray:
        """Render split-relative positions ``pos`` (in chunks of :attr:`render_chunk`)."""
        S = self.image_size
        out = np.empty((len(pos), 3, S, S), np.float32)
        lab = self._labels
        lo, hi = self.age_range
        for c0 in range(0, len(pos), self.render_chunk):
            q = pos[c0 : c0 + self.render_chunk]
            t = (lab["age_years"][q] - lo) / max(1, hi - lo)
            p = face_parameters(
                self.seed, self.indices[q], lab["identity"][q], lab["gender"][q], lab["race"][q], t,
                self.pose_jitter,
                self._cue_gender(q),
            )
            render_faces(p, S, out[c0 : c0 + len(q)])
        return out

    def _cue_gender(self, q: np.ndarray) -> dict[str, np.ndarray] | None:
        """Per cue, the gender it is drawn with for positions ``q`` (``gender_cues``)."""
        if self.gender_cues is None:
            return None
        lab = self._labels
        coin = (_hash_uniform(self.seed, lab["identity"][q], 4) < 0.5).astype(np.int64)
        out = {}
        for cue in GENDER_CUES:
            follows = np.array(
                [cue in self.gender_cues.get(int(r), GENDER_CUES) for r in lab["race"][q]], bool
            )
            out[cue] = np.where(follows, lab["gender"][q], coin)
        return out

    def render_batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Float32 ``[B, 3, S, S]`` RGB images of items ``indices`` (split-relative), rendered
        together; each image is bit-identical to rendering it alone."""
        pos = self._positions(indices)
        if not self.cache:
            return self._render_positions(pos)
        missing = np.array([i for i in dict.fromkeys(pos.tolist()) if i not in self._cache], np.int64)
        if len(missing):
            q = np.rint(self._render_positions(missing) * 255.0).astype(np.uint8)
            for i, img in zip(missing.tolist(), q):
                self._cache[i] = img
        return np.stack([self._cache[i] for i in pos.tolist()]).astype(np.float32) / 255.0

    def render(self, index: int) -> np.ndarray:
        """Float32 ``[3, S, S]`` RGB image of item ``index`` of this dataset (split-relative)."""
        return self.render_batch([index])[0]

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        img = torch.from_numpy(self.render(index))
        if self.transform is not None:
            img = self.transform(img)
        n = len(self.indices)
        return img, self._target(index % n)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, dict[str, Any]]]:
        """Items ``indices`` rendered as one batch (torch's ``DataLoader`` calls this for
        batched fetching); ``transform`` is applied per item."""
        pos = self._positions(indices)
        x = torch.from_numpy(self.render_batch(pos))
        items = []
        for j, i in enumerate(pos.tolist()):
            img = x[j] if self.transform is None else self.transform(x[j])
            items.append((img, self._target(i)))
        return items

    def batch(self, indices: Sequence[int] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Render ``indices`` (default: all) to ``([N, 3, S, S] float32, {key: [N] int64})``
        (no ``transform``)."""
        pos = np.arange(len(self)) if indices is None else self._positions(list(indices))
        x = torch.from_numpy(self.render_batch(pos))
        return x, {k: torch.from_numpy(v[pos].copy()) for k, v in self._labels.items()}

    def __repr__(self) -> str:
        return (
            f"SyntheticFaces(num_samples={self.num_samples}, split={self.split!r}, len={len(self)}, "
            f"image_size={self.image_size}, num_classes={self.num_classes}, "
            f"num_identities={self.num_identities}, seed={self.seed})"
        )
