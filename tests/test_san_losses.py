"""SAN loss terms against hand computations, the objective's schedule, and the frozen
auxiliaries (only autoencoder parameters train; auxiliaries bit-identical, out of the
state_dict, never in train mode)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from facecore.losses import SANObjective
from facecore.losses.san import gender_loss, matching_loss, reconstruction_loss
from facecore.models import FaceEmbedder, GenderClassifier, GrayscaleAdapter, SANAutoencoder

S = 16


def test_reconstruction_terms_by_hand():
    x = torch.tensor([[0.0, 1.0], [0.5, 0.25]]).view(1, 1, 2, 2)
    r = torch.tensor([[0.5, 0.75], [0.5, 0.75]]).view(1, 1, 2, 2)
    assert float(reconstruction_loss(x, r, "l1")) == pytest.approx((0.5 + 0.25 + 0 + 0.5) / 4)
    assert float(reconstruction_loss(x, r, "mse")) == pytest.approx((0.25 + 0.0625 + 0 + 0.25) / 4)
    bce = [-(t * math.log(p) + (1 - t) * math.log(1 - p)) for t, p in
           zip([0.0, 1.0, 0.5, 0.25], [0.5, 0.75, 0.5, 0.75])]
    assert float(reconstruction_loss(x, r, "bce")) == pytest.approx(sum(bce) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="reconstruction must be one of"):
        reconstruction_loss(x, r, "l2")
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_loss(x, r[..., :1], "l1")


def test_gender_and_matching_terms_by_hand():
    zs, zo, g = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0]), torch.tensor([1, 0])

    def bce(z, t):
        p = 1 / (1 + math.exp(-z))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    keep, flip = gender_loss(zs, zo, g)
    assert float(keep) == pytest.approx((bce(2.0, 1) + bce(-1.0, 0)) / 2, rel=1e-6)
    assert float(flip) == pytest.approx((bce(0.5, 0) + bce(3.0, 1)) / 2, rel=1e-6)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    b = torch.tensor([[0.0, 0.0], [0.0, -1.0]], requires_grad=True)
    j = matching_loss(a, b)
    assert float(j.detach()) == pytest.approx((1.0 + 4.0) / 2)  # summed over dims, mean over the batch
    j.backward()
    assert b.grad is None  # the original's descriptor is a constant target
    torch.testing.assert_close(a.grad, (a - b).detach())


class _LinearGender(nn.Module):
    """logit = sum of pixels - 0.5 * numel (deterministic, differentiable)."""

    def forward(self, x):
        return x.flatten(1).sum(1) - 0.5 * x[0].numel()


class _Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :5] * 2.0


def _protos():
    gen = torch.Generator().manual_seed(0)
    m, f = torch.rand(3, S, S, generator=gen), torch.rand(3, S, S, generator=gen)
    return {"male": m, "female": f, "neutral": (m + f) / 2}


def _objective(**kw) -> SANObjective:
    torch.manual_seed(0)
    model = SANAutoencoder(_protos(), image_size=S, decoder_channels=(6, 5))
    return SANObjective(model, kw.pop("clf", _LinearGender()), kw.pop("matcher", _Flatten()), **kw)


def _batch(n: int = 4):
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, S, S, generator=gen), torch.tensor([0, 1, 1, 0])[:n]


@pytest.mark.parametrize("match_target", ["sm", "mean"])
@pytest.mark.parametrize("reconstruction", ["l1", "mse", "bce"])
def test_total_loss_and_terms_by_hand(reconstruction, match_target):
    obj = _objective(reconstruction=reconstruction, lambda_rec=2.0, lambda_gender=0.5,
                     lambda_match=3.0, match_target=match_target)
    x, g = _batch()
    loss, out, terms = obj(x, g)
    m = obj.model
    sm, _, op = m(x, g)
    torch.testing.assert_close(out["sm"], sm)
    torch.testing.assert_close(out["op"], op)
    j_d = reconstruction_loss(x, sm, reconstruction)
    f = _LinearGender()
    keep, flip = gender_loss(f(sm), f(op), g)
    e = sm.flatten(1)[:, :5] * 2
    if match_target == "mean":
        e = 0.5 * (e + op.flatten(1)[:, :5] * 2)
    j_m = ((e - x.flatten(1)[:, :5] * 2) ** 2).sum(1).mean()
    torch.testing.assert_close(loss, 2.0 * j_d + 0.5 * (keep + flip) + 3.0 * j_m)
    torch.testing.assert_close(terms["rec"], j_d)
    torch.testing.assert_close(terms["gender"], keep + flip)
    torch.testing.assert_close(terms["match"], j_m)
    acc_sm = ((f(sm) > 0).long() == g).float().mean()
    acc_op = ((f(op) > 0).long() == 1 - g).float().mean()
    torch.testing.assert_close(terms["aux_acc_sm"], acc_sm)
    torch.testing.assert_close(terms["aux_acc_op"], acc_op)
    assert all(not t.requires_grad and t.dim() == 0 for t in terms.values())


def test_schedule_switches_terms_on_at_the_right_epochs():
    obj = _objective(lambda_rec=1.0, lambda_gender=1.0, lambda_match=10.0,
                     pretrain_epochs=1, match_warmup_epochs=2)
    x, g = _batch()
    phases = []
    for epoch in range(5):
        obj.set_epoch(epoch)
        loss, _, t = obj(x, g)
        expect = t["rec"] + (t["gender"] if epoch >= 1 else 0) + (10.0 * t["match"] if epoch >= 3 else 0)
        torch.testing.assert_close(loss.detach(), torch.as_tensor(expect))
        phases.append((obj.gender_on, obj.match_on, float(t["match"]) > 0))
    assert phases == [(False, False, False), (True, False, False), (True, False, False),
                      (True, True, True), (True, True, True)]
    # the gender term is logged but carries no gradient while it is off
    obj.set_epoch(0)
    loss, _, t = obj(x, g)
    loss.backward()
    rec_only = reconstruction_loss(x, obj.model(x, g)[0], "l1")
    grads = torch.autograd.grad(rec_only, list(obj.model.parameters()))
    for p, gr in zip(obj.model.parameters(), grads):
        torch.testing.assert_close(p.grad, gr)
    with pytest.raises(ValueError, match="epoch must be"):
        obj.set_epoch(-1)


def _real_auxiliaries():
    torch.manual_seed(5)
    clf = GrayscaleAdapter(GenderClassifier("small_cnn", width=4, in_channels=1, dropout=0.2))
    emb = GrayscaleAdapter(FaceEmbedder("small_cnn", 8, width=4, in_channels=3, dropout=0.2))
    for m in (clf, emb):  # non-trivial batch-norm statistics
        m.train()
        with torch.no_grad():
            m(torch.rand(8, 1, S, S))
    return clf, emb


def test_only_autoencoder_parameters_change_and_auxiliaries_stay_bit_identical():
    clf, emb = _real_auxiliaries()
    before = {k: v.clone() for m in (clf, emb) for k, v in
              [(f"{id(m)}.{n}", t) for n, t in m.state_dict().items()]}
    obj = _objective(clf=clf, matcher=emb, lambda_match=5.0)
    assert not clf.training and not emb.training
    assert all(k.startswith("model.") for k in obj.state_dict())
    trainable = [p for p in obj.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in obj.model.parameters()}
    assert not any(p.requires_grad for m in (clf, emb) for p in m.parameters())
    ae_before = {n: p.detach().clone() for n, p in obj.model.named_parameters()}
    opt = torch.optim.Adam(trainable, lr=1e-2)
    obj.train()
    assert not clf.training and not emb.training  # train() leaves the auxiliaries in eval
    x, g = _batch()
    for _ in range(3):
        loss, _, _ = obj(x, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = {k: v for m in (clf, emb) for k, v in
             [(f"{id(m)}.{n}", t) for n, t in m.state_dict().items()]}
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert all(p.grad is None for m in (clf, emb) for p in m.parameters())
    changed = [n for n, p in obj.model.named_parameters() if not torch.equal(p, ae_before[n])]
    assert set(changed) == set(ae_before)


def test_gradients_flow_through_the_frozen_auxiliaries():
    clf, emb = _real_auxiliaries()
    for kw in (dict(lambda_rec=0.0, lambda_gender=1.0, lambda_match=0.0),
               dict(lambda_rec=0.0, lambda_gender=0.0, lambda_match=1.0)):
        obj = _objective(clf=clf, matcher=emb, **kw)
        x, g = _batch()
        loss, _, _ = obj(x, g)
        loss.backward()
        assert obj.model.combiner.weight.grad.abs().sum() > 0
        assert obj.model.encoder[0].weight.grad.abs().sum() > 0


def test_to_moves_the_auxiliaries_and_validation():
    clf, emb = _real_auxiliaries()
    obj = _objective(clf=clf, matcher=emb).double()
    assert next(clf.parameters()).dtype == torch.float64
    x, g = _batch()
    loss, _, _ = obj(x.double(), g)
    assert loss.dtype == torch.float64
    for bad, msg in ((dict(reconstruction="l2"), "reconstruction"), (dict(match_target="op"), "match_target"),
                     (dict(lambda_gender=-1.0), "lambda_gender"), (dict(pretrain_epochs=1.5), "pretrain_epochs")):
        with pytest.raises(ValueError, match=msg):
            _objective(**bad)
    with pytest.raises(TypeError, match="matcher must be an nn.Module"):
        _objective(matcher=lambda x: x)
    cfg = _objective(auxiliaries={"matcher": {"path": "m.pt", "sha256": "ab"}}).config()
    assert cfg["lambda_match"] == 64.0 and cfg["auxiliaries"]["matcher"]["sha256"] == "ab"
