"""SANAutoencoder: prototypes, the latent-once structure, configuration, TorchScript (fresh
process) and torch.export with a dynamic batch, the embedded gender classifier."""

from __future__ import annotations

import json

import pytest
import torch

import facecore
from facecore.models import GenderClassifier, GrayscaleAdapter, SANAutoencoder, san_from_config
from facecore.models.san import to_grayscale


def _protos(size: int = 16, channels: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    m, f = torch.rand(channels, size, size, generator=gen), torch.rand(channels, size, size, generator=gen)
    return {"male": m, "female": f, "neutral": 0.5 * (m + f)}


def _san(size: int = 16, seed: int = 0, **kw) -> SANAutoencoder:
    torch.manual_seed(seed)
    kw.setdefault("decoder_channels", (6, 5))
    return SANAutoencoder(_protos(size), image_size=size, **kw).eval()


def _x(n: int, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_prototypes_follow_the_gender_convention():
    m = _san()
    g = torch.tensor([0.0, 1.0, 0.25])
    pm, pf, pn = m.prototype_male, m.prototype_female, m.prototype_neutral
    sm, nt, op = (m.prototype(g, k) for k in ("sm", "nt", "op"))
    torch.testing.assert_close(sm[0], pm)
    torch.testing.assert_close(sm[1], pf)
    torch.testing.assert_close(sm[2], 0.75 * pm + 0.25 * pf)
    torch.testing.assert_close(op[0], pf)
    torch.testing.assert_close(op[1], pm)
    torch.testing.assert_close(op[2], 0.25 * pm + 0.75 * pf)
    for i in range(3):
        torch.testing.assert_close(nt[i], pn)
    with pytest.raises(ValueError, match="mode must be"):
        m.prototype(g, "xx")


def test_latent_is_computed_once_from_the_same_gender_prototype():
    m = _san()
    x, g = _x(3), torch.tensor([0, 1, 1])
    sm, nt, op = m(x, g)
    h = m.decoder(m.encoder(torch.cat([x, m.prototype(g.float(), "sm")], 1)))
    for out, mode in ((sm, "sm"), (nt, "nt"), (op, "op")):
        p = m.prototype(g.float(), mode)
        want = torch.sigmoid(m.combiner(torch.cat([h, p], 1)))
        torch.testing.assert_close(out, want)
        torch.testing.assert_close(m.anonymize(x, mode, g), want)
    assert sm.shape == (3, 1, 16, 16) and bool(((sm > 0) & (sm < 1)).all())
    # SM and OP differ only in the prototype term of the 1x1 combiner (pre-sigmoid)
    w = m.combiner.weight[0, -3:, 0, 0]
    diff = torch.logit(op.double()) - torch.logit(sm.double())
    dp = (m.prototype(g.float(), "op") - m.prototype(g.float(), "sm")).double()
    torch.testing.assert_close(diff[:, 0], (w.double().view(1, 3, 1, 1) * dp).sum(1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reference", ["neutral", "same"])
def test_prototype_gain_and_reference_feed_the_combiner_only(reference):
    base = _san(seed=4)
    m = _san(seed=4, prototype_gain=5.0, prototype_reference=reference)
    x, g = _x(2), torch.tensor([1.0, 0.0])
    torch.testing.assert_close(m.encoder(torch.zeros(1, 4, 16, 16)), base.encoder(torch.zeros(1, 4, 16, 16)))
    h = m.decoder(m.encoder(torch.cat([x, m.prototype(g, "sm")], 1)))
    ref = m.prototype_neutral if reference == "neutral" else m.prototype(g, "sm")
    for mode in ("sm", "nt", "op"):
        p = 5.0 * (m.prototype(g, mode) - ref)
        want = torch.sigmoid(m.combiner(torch.cat([h, p], 1)))
        torch.testing.assert_close(m.anonymize(x, mode, g), want)
    if reference == "same":  # X'_SM is the plain autoencoder output
        zero = torch.zeros(2, 3, 16, 16)
        torch.testing.assert_close(m.anonymize(x, "sm", g), torch.sigmoid(m.combiner(torch.cat([h, zero], 1))))
    assert m.config["prototype_gain"] == 5.0 and m.config["prototype_reference"] == reference
    with pytest.raises(ValueError, match="prototype_gain"):
        _san(prototype_gain=0.0)
    with pytest.raises(ValueError, match="prototype_reference"):
        _san(prototype_reference="centre")


@pytest.mark.parametrize("levels", [0, 1, 2])
def test_pool_levels_set_the_bottleneck(levels):
    m = _san(pool_levels=levels)
    z = m.encoder(torch.zeros(1, 4, 16, 16))
    assert z.shape[-1] == 16 // 2**levels
    assert m(_x(1), torch.tensor([0]))[0].shape == (1, 1, 16, 16)


def test_authors_architecture_and_configuration():
    m = SANAutoencoder(image_size=32, decoder_channels=(256, 128), pool_levels=2)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (4, 8, (3, 3)), (8, 12, (3, 3)), (12, 256, (3, 3)), (256, 128, (3, 3)), (131, 1, (1, 1))
    ]
    for bad, msg in (
        (dict(pool_levels=3), "pool_levels"),
        (dict(image_size=30, pool_levels=2), "multiple of"),
        (dict(decoder_channels=(4,)), "same length"),
        (dict(encoder_channels=(0, 3)), "positive ints"),
        (dict(prototype_channels=2), "prototype_channels"),
    ):
        with pytest.raises(ValueError, match=msg):
            SANAutoencoder(**bad)


def test_input_checks_and_rgb_conversion():
    m = _san()
    with pytest.raises(ValueError, match="grayscale"):
        m(torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="image_size"):
        m(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="gender must be"):
        m(_x(2), torch.tensor([0]))
    with pytest.raises(ValueError, match="gender is required"):
        m.anonymize(_x(2))
    rgb = torch.rand(2, 3, 16, 16)
    luma = 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
    torch.testing.assert_close(to_grayscale(rgb), luma)
    g = torch.tensor([1, 0])
    torch.testing.assert_close(m.anonymize(rgb, "op", g), m.anonymize(luma, "op", g))


def test_prototypes_are_buffers_resized_and_validated():
    m = SANAutoencoder(_protos(32), image_size=16, decoder_channels=(4, 4))
    assert m.prototype_male.shape == (3, 16, 16)
    assert {"prototype_male", "prototype_female", "prototype_neutral"} <= set(m.state_dict())
    assert not any("prototype" in n for n, _ in m.named_parameters())
    with pytest.raises(KeyError, match="neutral"):
        m.set_prototypes({"male": torch.rand(3, 16, 16), "female": torch.rand(3, 16, 16)})


def test_config_round_trip(tmp_path):
    clf = GrayscaleAdapter(GenderClassifier("small_cnn", width=4, in_channels=1), 0.5, 0.25)
    m = SANAutoencoder(_protos(16), image_size=16, decoder_channels=(6, 5), pool_levels=2,
                       prototype_gain=3.0, prototype_reference="same", gender_classifier=clf).eval()
    cfg = json.loads(json.dumps(m.config))
    from facecore.models import build_model

    with pytest.raises(ValueError, match="needs build="):
        san_from_config(cfg)
    again = san_from_config(cfg, build=build_model)
    again.load_state_dict(m.state_dict())
    again.eval()
    x = _x(3)
    with torch.no_grad():
        want, got = m.serve(x), again.serve(x)
    assert set(got) == {"sm", "nt", "op", "gender", "gender_prob"}
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    assert build_model(cfg).config == m.config
    with pytest.raises(ValueError, match="unknown SAN config keys"):
        san_from_config({**cfg, "widths": 3})


class _Anon(torch.nn.Module):
    def __init__(self, m: SANAutoencoder, mode: str) -> None:
        super().__init__()
        self.m, self.mode = m, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m.anonymize(x, self.mode)


class _Serve(torch.nn.Module):
    def __init__(self, m: SANAutoencoder) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.m.serve(x, g)


def _with_classifier() -> SANAutoencoder:
    torch.manual_seed(3)
    clf = GrayscaleAdapter(GenderClassifier("small_cnn", width=4, in_channels=3), 0.5, 0.25)
    clf.train()
    with torch.no_grad():
        clf(torch.rand(8, 1, 16, 16))  # non-trivial batch-norm statistics
    return SANAutoencoder(_protos(16), image_size=16, decoder_channels=(6, 5), gender_classifier=clf).eval()


@pytest.mark.slow
def test_torch_export_dynamic_batch():
    m = _with_classifier()
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(_Anon(m, "op"), (torch.rand(2, 3, 16, 16),), dynamic_shapes=({0: batch},))
    ep2 = torch.export.export(_Serve(m), (_x(2), torch.tensor([0.0, 1.0])),
                              dynamic_shapes=({0: batch}, {0: batch}))
    for n in (1, 5):
        x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(n))
        g = (torch.arange(n) % 2).float()
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(x), m.anonymize(x, "op"))
            got, want = ep2.module()(to_grayscale(x), g), m.serve(x, g)
        for k in want:
            torch.testing.assert_close(got[k], want[k])


@pytest.mark.slow
def test_script_save_and_load_in_a_fresh_process(tmp_path, fresh_python):
    m = _with_classifier()
    scripted = torch.jit.script(m)
    scripted.save(str(tmp_path / "san.pt"))
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    g = torch.tensor([1.0, 0.0, 1.0])
    with torch.no_grad():
        want = {"given": m.serve(x, g), "auto": m.serve(x)}
        torch.testing.assert_close(scripted.anonymize(x, "nt", g), m.anonymize(x, "nt", g))
    torch.save((x, g), tmp_path / "xg.pt")
    out = fresh_python(
        f"""
        import json, torch
        torch.ops.load_library({facecore.library_path()!r})
        m = torch.jit.load("san.pt")
        x, g = torch.load("xg.pt")
        with torch.no_grad():
            r = {{"given": m.serve(x, g), "auto": m.serve(x), "op": m.anonymize(x, "op", None)}}
        print(json.dumps({{k: {{kk: vv.tolist() for kk, vv in v.items()}} if isinstance(v, dict)
                          else v.tolist() for k, v in r.items()}}))
        """
    )
    got = json.loads(out.strip().splitlines()[-1])
    for case in ("given", "auto"):
        assert set(got[case]) == set(want[case])
        for k, v in want[case].items():
            torch.testing.assert_close(torch.tensor(got[case][k]), v, rtol=1e-5, atol=1e-6)
    assert "gender_prob" in got["auto"] and "gender_prob" not in got["given"]
    torch.testing.assert_close(torch.tensor(got["op"]), want["auto"]["op"], rtol=1e-5, atol=1e-6)
