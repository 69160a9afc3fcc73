"""The training loop without Ray: objectives vs pytorch-metric-learning, metrics vs
scikit-learn, splits, checkpoint / resume bookkeeping, progress lines, plots."""

from __future__ import annotations

import json
import math

import pytest
import torch
from train_cases import MemorySession

from facecore.train import get_task, load_config
from facecore.train.checkpoints import checkpoint_dir_name, load_checkpoint, write_checkpoint
from facecore.train.config import MetricOptions
from facecore.train.evaluation import evaluate
from facecore.train.loops import run_training
from facecore.train.progress import format_progress
from facecore.train.tasks.embedding import build_metric_loss

TINY_AGE = [
    "data.num_samples=160", "data.image_size=32", "data.batch_size=32",
    "optim.epochs=2", "model.width=4", "run.workers=0",
]


def _embeddings(n=24, d=8, ids=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    e = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    labels = torch.randint(0, ids, (n,), generator=g)
    return e, labels


@pytest.mark.parametrize("margin", [0.05, 0.2, 1.0])
def test_batch_hard_triplet_matches_pytorch_metric_learning(margin):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses, miners

    e, y = _embeddings(seed=int(margin * 100))
    a = e.clone().requires_grad_(True)
    b = e.clone().requires_grad_(True)
    # PML normalises inside its distance; our loss gets the model's normalised output
    loss_fn = build_metric_loss(MetricOptions(loss="triplet", miner="batch_hard", triplet_margin=margin))
    ours = loss_fn(torch.nn.functional.normalize(a, dim=1), y)
    ref = losses.TripletMarginLoss(margin=margin)(b, y, miners.BatchHardMiner()(b, y))
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours, ref.to(ours.dtype), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10)


def test_batch_hard_triplet_without_triplets_is_zero_with_zero_grad():
    e = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    e.requires_grad_(True)
    loss_fn = build_metric_loss(MetricOptions(loss="triplet", miner="batch_hard", triplet_margin=0.2))
    loss = loss_fn(e, torch.tensor([0, 1, 2, 3]))  # no positives
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(e.grad) == 0


@pytest.mark.parametrize("margin", [0.3, 1.0])
def test_contrastive_matches_pytorch_metric_learning(margin):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses

    e, y = _embeddings(seed=3)
    a = e.clone().requires_grad_(True)
    b = e.clone().requires_grad_(True)
    loss_fn = build_metric_loss(MetricOptions(loss="contrastive", neg_margin=margin))
    ours = loss_fn(torch.nn.functional.normalize(a, dim=1), y)
    ref = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=margin)(b, y)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours, ref.to(ours.dtype), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10)


def test_evaluate_age_against_sklearn_and_hand_values():
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    cfg = load_config("age_coral_synthetic", ["ordinal.age_scale=5"])
    target = torch.tensor([0, 1, 2, 3, 3])
    label = torch.tensor([0, 2, 2, 1, 3])
    expected = torch.tensor([0.2, 1.5, 2.0, 1.0, 3.5], dtype=torch.float64)
    cum = torch.tensor([[0.4, 0.3, 0.1], [0.9, 0.6, 0.2], [0.9, 0.8, 0.3], [0.6, 0.7, 0.1],
                        [0.9, 0.9, 0.8]])  # row 3 increases once
    m = evaluate(cfg, {"target": target, "label": label, "expected": expected, "cum_probs": cum},
                 train_labels=torch.tensor([0, 0, 1, 2]))
    assert m["val_mae"] == pytest.approx(5 * mean_absolute_error(target, label))
    assert m["val_rmse"] == pytest.approx(5 * math.sqrt(mean_squared_error(target, label)))
    assert m["val_mae_expected"] == pytest.approx(5 * mean_absolute_error(target, expected))
    # training median 0.5 -> |0.5-0|+|0.5-1|+1.5+2.5+2.5 = 7.5, /5 * 5
    assert m["val_median_mae"] == pytest.approx(7.5)
    assert m["val_rank_inconsistency"] == pytest.approx(1 / 5)
    assert m["val_rank_inconsistent_fraction"] == pytest.approx(1 / 5)


def test_evaluate_gender_and_embedding_against_sklearn():
    from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve

    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (50,), generator=g)
    prob = (0.3 * y + 0.7 * torch.rand(50, generator=g)).double()
    m = evaluate(load_config(task="gender"), {"target": y, "prob": prob}, train_labels=y)
    assert m["val_accuracy"] == pytest.approx(accuracy_score(y, prob > 0.5))
    assert m["val_auc"] == pytest.approx(roc_auc_score(y, prob))

    e, ids = _embeddings(n=20, ids=4, seed=2)
    cfg = load_config(task="embedding")
    m = evaluate(cfg, {"target": ids, "embedding": e * 3.0}, train_labels=ids)
    i, j = torch.triu_indices(20, 20, offset=1)
    s, same = (e[i] * e[j]).sum(1), (ids[i] == ids[j]).long()
    assert m["val_auc"] == pytest.approx(roc_auc_score(same, s))
    fpr, tpr, _ = roc_curve(same, s)
    fnr = 1 - tpr
    k = int(torch.nonzero(torch.as_tensor(fpr >= fnr))[0])  # EER lies between points k-1, k
    lo, hi = sorted([max(fpr[k - 1], fnr[k - 1]), min(fpr[k], fnr[k])])
    assert lo - 1e-9 <= m["val_eer"] <= max(fpr[k], fnr[k]) + 1e-9


@pytest.mark.timeout(240)
def test_run_training_checkpoints_and_resume_continue_epochs(tmp_path):
    cfg = load_config("age_coral_synthetic", TINY_AGE)
    first = MemorySession()
    last = run_training(cfg, first)
    assert [r["epoch"] for r in first.reports] == [1, 2]
    assert last["val_rank_inconsistency"] == 0.0  # monotone CORAL biases
    # per-epoch CPU time of the training process (the SAN's CPU budget is summed from it)
    assert all(0 < r["epoch_cpu_s"] < float("inf") for r in first.reports)
    state = first.states[-1]
    assert state["epoch"] == 2 and state["train_config"]["ordinal"]["head"] == "coral"
    write_checkpoint(tmp_path / checkpoint_dir_name(2), first.reports[-1], state)
    loaded = load_checkpoint(tmp_path / "checkpoint_epoch_0002")  # weights_only=True
    assert loaded["epoch"] == 2 and len(loaded["history"]) == 2
    assert json.loads((tmp_path / "checkpoint_epoch_0002" / "metrics.json").read_text())["epoch"] == 2

    # restart with more epochs: continues at epoch 3, keeps the history, same weights in
    more = load_config("age_coral_synthetic", [*TINY_AGE, "optim.epochs=3"])
    second = MemorySession(restore_state=loaded)
    run_training(more, second)
    assert [r["epoch"] for r in second.reports] == [3]
    hist = json.loads(second.reports[-1]["history"])
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[:2] == json.loads(first.reports[-1]["history"])
    # a finished run restored with the same epochs does nothing
    done = MemorySession(restore_state=second.states[-1])
    assert run_training(more, done) == {} and done.reports == []


def test_injected_failure_only_before_the_epoch_is_passed():
    from facecore.train.loops import InjectedFailure

    cfg = load_config("age_coral_synthetic", [*TINY_AGE, "optim.epochs=2", "run.fail_after_epoch=1"])
    s = MemorySession()
    with pytest.raises(InjectedFailure, match=r"run.fail_after_epoch=1: simulated worker crash"):
        run_training(cfg, s)
    assert [r["epoch"] for r in s.reports] == [1]  # epoch 1 was reported before the crash
    again = MemorySession(restore_state=s.states[-1])
    run_training(cfg, again)  # resumed past epoch 1: no second failure
    assert [r["epoch"] for r in again.reports] == [2]


def test_format_progress():
    line = format_progress(
        {"epoch": 3, "train_loss": 1.23456, "val_mae": 0.5, "val_median_mae": 2.0,
         "val_rank_inconsistency": 0.0, "epoch_time_s": 4.26}, 8, get_task("age").progress)
    assert line == "epoch   3/8  loss 1.2346  val MAE 0.500  (median 2.000)  rank-inc 0.000   4.3 s"
    fields = get_task("embedding").progress
    assert format_progress({"epoch": 1, "val_eer": 0.125}, 2, fields) == "epoch   1/2  val EER 0.125"


def test_plots_written_and_missing_matplotlib_is_clear(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from facecore.train import plots

    hist = [{"epoch": e, "train_loss": 1.0 / e, "val_mae": 2.0 / e} for e in (1, 2, 3)]
    assert plots.plot_learning_curves(hist, tmp_path / "a.png").stat().st_size > 1000
    c = torch.sigmoid(torch.tensor([[2.0, 0.0, -2.0]]) + torch.arange(4.0)[:, None] - 1)
    assert plots.plot_cumulative_probs(c, torch.arange(4), tmp_path / "b.png").is_file()
    assert plots.plot_age_scatter(torch.arange(4), torch.arange(4.0), tmp_path / "c.png").is_file()
    assert plots.plot_roc(torch.tensor([0.9, 0.2, 0.6, 0.4]), torch.tensor([1, 0, 1, 0]),
                          tmp_path / "d.png").is_file()
    with pytest.raises(ValueError, match="history is empty"):
        plots.plot_learning_curves([], tmp_path / "e.png")

    import builtins

    real_import = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(plots.MissingMatplotlib, match=r"pip install 'facecore\[plot\]'"):
        plots.plot_learning_curves(hist, tmp_path / "f.png")
    from facecore.train.runner import plot_run

    cfg = load_config("age_coral_synthetic")
    with pytest.warns(UserWarning, match="no plots written"):
        assert plot_run(cfg, hist, {}, tmp_path) == {}


@pytest.mark.parametrize(
    "extra",
    [
        ["metric.loss=arcface", "metric.arcface_margin=0.3", "metric.center_loss=0.01"],
        ["metric.loss=cosface"],
        ["metric.loss=sphereface", "metric.sphereface_m=4"],
        ["metric.loss=contrastive", "metric.neg_margin=0.5"],
        ["metric.loss=triplet", "metric.miner=batch_hard"],
        ["metric.loss=softmax"],
    ],
)
def test_embedding_objectives_train_every_part(extra):
    from facecore.train.tasks.embedding import EmbeddingObjective

    cfg = load_config("embedding_triplet_synthetic", ["model.width=4", "model.embedding_dim=8", *extra])
    model = get_task("embedding").build_model(cfg, 5)
    obj = EmbeddingObjective(model, cfg.metric, num_identities=5)
    x = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 0, 1])
    loss, emb = obj(x, y)
    loss.backward()
    assert emb.shape == (12, 8) and torch.isfinite(loss) and loss > 0
    for name, p in obj.named_parameters():
        if name.startswith(("head.", "center.", "softmax.")):  # classifiers / centres train too
            assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
    if cfg.metric.loss == "softmax":  # plain CE over identities through SoftmaxLoss's classifier
        want = torch.nn.functional.cross_entropy(obj.softmax.fc(emb), y)
        torch.testing.assert_close(loss, want)
        assert obj.softmax.num_classes == 5 and "softmax.fc.weight" in obj.checkpoint_state()


def test_margins_have_one_key_per_meaning():
    from facecore.train.config import ConfigError

    with pytest.raises(ConfigError, match=r"metric.sphereface_m must be int, got 0.5"):
        load_config("embedding_triplet_synthetic", ["metric.loss=sphereface", "metric.sphereface_m=0.5"])
    with pytest.raises(ConfigError, match=r"metric.sphereface_m must be >= 1, got 0"):
        load_config("embedding_triplet_synthetic", ["metric.sphereface_m=0"])
    # the old key names its replacements
    with pytest.raises(ConfigError, match=r"config key 'metric.margin' was replaced: use triplet_margin"):
        load_config("embedding_triplet_synthetic", ["metric.margin=0.3"])
    cfg = load_config("embedding_triplet_synthetic", [
        "metric.miner=semihard", "metric.triplet_margin=0.1", "metric.miner_margin=0.3"])
    loss = build_metric_loss(cfg.metric)
    assert (loss.margin, loss.mining_margin, loss.mining) == (0.1, 0.3, "semihard")
    from facecore.train.tasks.embedding import EmbeddingObjective

    for name, key, value in (("arcface", "arcface_margin", 0.4), ("cosface", "cosface_margin", 0.25),
                             ("sphereface", "sphereface_m", 3)):
        cfg = load_config("embedding_triplet_synthetic", [f"metric.loss={name}", f"metric.{key}={value}"])
        obj = EmbeddingObjective(get_task("embedding").build_model(cfg, 3), cfg.metric, 3)
        assert obj.head.margin == value and obj.head.scale == cfg.metric.scale


@pytest.mark.parametrize("loss", ["triplet", "contrastive", "softmax", "cosface", "arcface"])
def test_embedding_batches_pk_for_pair_losses_shuffled_for_classifiers(loss):
    """Pair / triplet losses need P identities x K images per batch; softmax and the margin
    heads train on shuffled batches over every image (a P x K epoch draws each identity
    once, i.e. K of its images: a fraction of the training set)."""
    from facecore.data.samplers import PKSampler
    from facecore.train.datasets import build_splits
    from facecore.train.loops import _train_loader

    cfg = load_config("embedding_triplet_synthetic", [
        f"metric.loss={loss}", "data.num_samples=240", "data.num_identities=20", "data.image_size=16",
        "metric.p=4", "metric.k=2", "data.batch_size=16", "run.workers=1"])
    splits = build_splits(cfg)
    labels = splits.labels("train")
    sampler = get_task("embedding").batch_sampler(cfg, labels, 0, 1)
    loader, _ = _train_loader(cfg, splits, MemorySession())
    seen = sum(len(b[0]) for b in loader)
    if loss in ("triplet", "contrastive"):
        assert isinstance(sampler, PKSampler)
        assert seen == len(sampler) * 4 * 2 < len(labels)
    else:
        assert sampler is None
        assert seen == len(labels)
