"""Gender prototypes for the SAN from synthetic faces; the pose-jitter switch of
SyntheticFaces that sharpens them."""

from __future__ import annotations

import pytest
import torch

from facecore.data import SyntheticFaces, compute_gender_prototypes
from facecore.models import SANAutoencoder


def _sharpness(img: torch.Tensor) -> float:
    return float((img[:, 1:, :] - img[:, :-1, :]).abs().mean() + (img[:, :, 1:] - img[:, :, :-1]).abs().mean())


def test_pose_jitter_changes_only_the_pose_and_sharpens_prototypes():
    a = SyntheticFaces(96, image_size=32, seed=4)
    b = SyntheticFaces(96, image_size=32, seed=4, pose_jitter=0.0)
    for key in ("gender", "identity", "age", "race"):
        assert torch.equal(a.targets(key), b.targets(key))
    xa, _ = a.batch()
    xb, _ = b.batch()
    assert not torch.equal(xa, xb)
    pa = compute_gender_prototypes(a)
    pb = compute_gender_prototypes(b)
    for key in ("male", "female"):
        assert _sharpness(pb[key]) > 1.1 * _sharpness(pa[key])
    # the same faces at the default pose spread, whatever the keyword
    xc, _ = SyntheticFaces(96, image_size=32, seed=4, pose_jitter=1.0).batch()
    assert torch.equal(xa, xc)
    with pytest.raises(ValueError, match="pose_jitter"):
        SyntheticFaces(8, pose_jitter=-0.5)


def test_san_takes_the_computed_prototypes():
    ds = SyntheticFaces(64, image_size=32, seed=1, pose_jitter=0.3)
    protos = compute_gender_prototypes(ds)
    m = SANAutoencoder(protos, image_size=32, decoder_channels=(4, 4))
    torch.testing.assert_close(m.prototype_female, protos["female"])
    torch.testing.assert_close(m.prototype(torch.tensor([0.0]), "op")[0], protos["female"])
    small = SANAutoencoder(protos, image_size=16, decoder_channels=(4, 4), prototype_channels=1)
    assert small.prototype_neutral.shape == (1, 16, 16)
