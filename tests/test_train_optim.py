"""facecore.train.optim, the issue-10 recipe: weight decay only on conv / linear weights
(never on biases, norms or ordinal thresholds), AdamW / Adam / SGD on those groups,
per-step one-cycle (torch's OneCycleLR) and warm-up + cosine schedules against
hand-written formulas, the per-backbone default learning rates, and errors."""

from __future__ import annotations

import math

import pytest
import torch

from facecore.models import AgeEstimator
from facecore.models.backbones import BACKBONES
from facecore.train.optim import (
    DEFAULT_LR,
    default_lr,
    make_optimizer,
    make_step_scheduler,
    parameter_groups,
)


def _model(mono=True):
    torch.manual_seed(0)
    return AgeEstimator("small_cnn", "coral", 6, width=4, monotone_biases=mono)


def test_groups_decay_weights_only():
    model = _model()
    decay, plain = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert set(plain["names"]) >= {"head.bias0", "head.bias_deltas"}
    bn = {f"{mn}.{pn}" for mn, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
          for pn, _ in m.named_parameters(recurse=False)}
    assert bn and set(plain["names"]) == bn | {"head.bias0", "head.bias_deltas"}
    assert set(decay["names"]) == {n for n, p in model.named_parameters() if p.ndim >= 2}
    assert "head.fc.weight" in decay["names"]
    n_all = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in (decay, plain) for p in g["params"]) == n_all
    model.backbone.features[0].weight.requires_grad_(False)
    assert "backbone.features.0.weight" not in parameter_groups(model, 0.1)[0]["names"]


def test_adamw_decays_weights_and_leaves_biases_alone():
    model = _model(mono=False)
    opt = make_optimizer(model, "adamw", lr=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        if p.ndim >= 2:  # decoupled decay: w <- w (1 - lr wd)
            torch.testing.assert_close(p.detach(), before[n] * (1 - 0.1 * 0.5))
        else:
            assert torch.equal(p.detach(), before[n]), n
    assert isinstance(make_optimizer(model, "adam", lr=1e-3), torch.optim.Adam)
    sgd = make_optimizer(model, "sgd", lr=1e-2, momentum=0.9)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]


def _lrs(sched, opt, steps):
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return torch.tensor(out)


def test_onecycle_is_torchs_one_cycle_per_group():
    model = _model()
    opt = make_optimizer(model, lr=3e-3)
    opt.param_groups[1]["lr"] = 1e-3  # a group with its own peak
    sched = make_step_scheduler(opt, "onecycle", total_steps=100)
    got = _lrs(sched, opt, 100)
    ref_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=3e-3, total_steps=100, pct_start=0.3)
    expected = []
    for _ in range(100):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    torch.testing.assert_close(got[:, 0], torch.tensor(expected), rtol=1e-6, atol=0)
    torch.testing.assert_close(got[:, 1], torch.tensor(expected) / 3, rtol=1e-6, atol=0)
    assert got[0, 0] == pytest.approx(3e-3 / 25) and int(got[:, 0].argmax()) in (29, 30)
    assert got[-1, 0] < 3e-3 / 25 / 1000
    opt = make_optimizer(_model(), lr=1.0)
    warm = _lrs(make_step_scheduler(opt, "onecycle", total_steps=100, warmup_steps=10), opt, 100)
    assert int(warm[:, 0].argmax()) in (9, 10) and warm[:, 0].max() == pytest.approx(1.0)


def test_warmup_cosine_and_constant_by_hand():
    total, warm = 50, 5
    opt = make_optimizer(_model(), lr=2.0)
    got = _lrs(make_step_scheduler(opt, "cosine", total_steps=total, warmup_steps=warm, min_lr_ratio=0.1), opt, total)[:, 0]
    for s in range(total):
        if s < warm:
            e = 2.0 * (s + 1) / (warm + 1)
        else:
            t = (s - warm) / (total - warm)
            e = 2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
        assert got[s].item() == pytest.approx(e, rel=1e-6), s
    opt = make_optimizer(_model(), lr=2.0)
    flat = _lrs(make_step_scheduler(opt, "constant", total_steps=40), opt, 40)[:, 0]
    assert flat[0] < 2.0 and torch.all(flat[2:] == 2.0)  # default warm-up: 5% = 2 steps
    # resumable
    opt = make_optimizer(_model(), lr=1.0)
    s1 = make_step_scheduler(opt, "cosine", total_steps=20)
    _lrs(s1, opt, 7)
    opt2 = make_optimizer(_model(), lr=1.0)
    s2 = make_step_scheduler(opt2, "cosine", total_steps=20)
    s2.load_state_dict(s1.state_dict())
    assert s2.get_last_lr() == s1.get_last_lr()


def test_default_lr_table():
    assert set(DEFAULT_LR) == set(BACKBONES)
    assert default_lr("small_cnn") == DEFAULT_LR["small_cnn"]
    assert default_lr("resnet18", pretrained=True) == pytest.approx(DEFAULT_LR["resnet18"] / 10)
    assert default_lr("small_cnn", batch_size=256) == pytest.approx(2 * DEFAULT_LR["small_cnn"])
    with pytest.raises(ValueError, match="backbone must be one of"):
        default_lr("vgg16")


def test_errors_name_the_argument():
    model = _model()
    with pytest.raises(ValueError, match="optimizer name must be one of"):
        make_optimizer(model, "lamb", lr=1e-3)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        make_optimizer(model, lr=0)
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        make_optimizer(model, lr=1e-3, weight_decay=-1)
    opt = make_optimizer(model, lr=1e-3)
    with pytest.raises(ValueError, match=r"scheduler name must be one of \['onecycle', 'cosine', 'constant'\]"):
        make_step_scheduler(opt, "poly", total_steps=10)
    with pytest.raises(ValueError, match="total_steps must be a positive int"):
        make_step_scheduler(opt, total_steps=0)
    with pytest.raises(ValueError, match=r"warmup_steps must be an int in \[0, total_steps=10\)"):
        make_step_scheduler(opt, "cosine", total_steps=10, warmup_steps=10)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_groups(model, 0.0)
