"""facecore's matching losses against pytorch-metric-learning (test-only oracle).

Same embeddings, same distance, miner and margins: loss and gradient wrt the
embeddings agree to fp64 tolerance. Covers TripletMarginLoss with
TripletMarginMiner(all | hard | semihard | easy), BatchHardMiner and no miner,
LpDistance(power=1|2, normalize_embeddings=False|True) and CosineSimilarity,
swap and smooth_loss, the reducers (AvgNonZero, Mean, Sum), ContrastiveLoss.
"""

from __future__ import annotations

import pytest
import torch
from matching_cases import pk_batch
from pytorch_metric_learning import distances as pml_d
from pytorch_metric_learning import losses as pml_l
from pytorch_metric_learning import miners as pml_m
from pytorch_metric_learning import reducers as pml_r

from facecore.losses import ContrastiveLoss, TripletMarginLoss
from facecore.losses.distances import CosineSimilarity, LpDistance
from facecore.losses.miners import BatchHardMiner, TripletMarginMiner
from facecore.reference import matching as R

TOL = dict(rtol=1e-9, atol=1e-12)
REDUCERS = {"mean_nonzero": pml_r.AvgNonZeroReducer, "mean": pml_r.MeanReducer, "sum": pml_r.SumReducer}


def _batch(seed=0, p=6, k=4, d=12):
    return pk_batch(p, k, d=d, seed=seed, dtype=torch.float64, spread=0.8)


def _compare(ours, theirs, miner=None, seed=0):
    x, labels = _batch(seed)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    a = ours(xa, labels)
    b = theirs(xb, labels, None if miner is None else miner(xb, labels))
    a.backward()
    b.backward()
    torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    return a


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("kind", ["all", "hard", "semihard", "easy"])
def test_triplet_margin_miner(power, normalize, kind):
    ours_d = LpDistance(power=power, normalize_embeddings=normalize)
    pml_dist = pml_d.LpDistance(power=power, normalize_embeddings=normalize)
    # easy triplets only have a loss with a loss margin above the miner's
    margin, mining_margin = (0.8, 0.3) if kind == "easy" else (0.1, 0.4)
    if power == 2 and not normalize:  # squared distances of raw embeddings are ~10x larger
        margin, mining_margin = 10 * margin, 10 * mining_margin
    for swap, soft in [(False, False), (True, False), (False, True)]:
        ours = TripletMarginLoss(margin, ours_d, TripletMarginMiner(mining_margin, kind), swap=swap, soft=soft)
        theirs = pml_l.TripletMarginLoss(margin, swap=swap, smooth_loss=soft, distance=pml_dist)
        miner = pml_m.TripletMarginMiner(mining_margin, kind, distance=pml_dist)
        loss = _compare(ours, theirs, miner, seed=power + 2 * normalize)
        assert loss.item() > 0  # the case is not vacuous


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("swap", [False, True])
def test_batch_hard_miner(power, normalize, swap):
    ours_d = LpDistance(power=power, normalize_embeddings=normalize)
    pml_dist = pml_d.LpDistance(power=power, normalize_embeddings=normalize)
    loss = _compare(
        TripletMarginLoss(0.2, ours_d, BatchHardMiner(), swap=swap),
        pml_l.TripletMarginLoss(0.2, swap=swap, distance=pml_dist),
        pml_m.BatchHardMiner(distance=pml_dist),
    )
    assert loss.item() > 0


@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean", "sum"])
@pytest.mark.parametrize("soft", [False, True])
def test_no_miner_and_reducers(reduction, soft):
    _compare(
        TripletMarginLoss(0.3, LpDistance(), soft=soft, reduction=reduction),
        pml_l.TripletMarginLoss(0.3, smooth_loss=soft, reducer=REDUCERS[reduction]()),
    )


def test_cosine_similarity_triplets():
    for miner, pml_miner in [
        (TripletMarginMiner(0.3, "semihard"), pml_m.TripletMarginMiner(0.3, "semihard", distance=pml_d.CosineSimilarity())),
        (BatchHardMiner(), pml_m.BatchHardMiner(distance=pml_d.CosineSimilarity())),
    ]:
        _compare(
            TripletMarginLoss(0.1, CosineSimilarity(), miner, swap=True),
            pml_l.TripletMarginLoss(0.1, swap=True, distance=pml_d.CosineSimilarity()),
            pml_miner,
        )


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean", "sum"])
def test_contrastive(power, normalize, reduction):
    _compare(
        ContrastiveLoss(0.3, 1.2, LpDistance(power=power, normalize_embeddings=normalize), reduction=reduction),
        pml_l.ContrastiveLoss(
            0.3, 1.2, distance=pml_d.LpDistance(power=power, normalize_embeddings=normalize), reducer=REDUCERS[reduction]()
        ),
    )


def test_contrastive_cosine_margins_in_similarity_units():
    _compare(
        ContrastiveLoss(0.9, 0.1, CosineSimilarity()),
        pml_l.ContrastiveLoss(0.9, 0.1, distance=pml_d.CosineSimilarity()),
    )


def test_miners_list_the_same_triplets_as_pml():
    x, labels = _batch(3)
    dist = LpDistance(normalize_embeddings=False)
    d = dist(x)
    for kind in ["all", "hard", "semihard", "easy"]:
        ours = TripletMarginMiner(0.5, kind).triplets(d, labels)
        theirs = pml_m.TripletMarginMiner(0.5, kind, distance=pml_d.LpDistance(normalize_embeddings=False))(x, labels)
        assert set(zip(*(t.tolist() for t in ours))) == set(zip(*(t.tolist() for t in theirs)))
    bh = BatchHardMiner().triplets(d, labels)
    pml_bh = pml_m.BatchHardMiner(distance=pml_d.LpDistance(normalize_embeddings=False))(x, labels)
    assert set(zip(*(t.tolist() for t in bh))) == set(zip(*(t.tolist() for t in pml_bh)))


def test_pml_default_configuration():
    # TripletMarginLoss() with PML's defaults: margin 0.05, LpDistance normalised, AvgNonZero
    _compare(TripletMarginLoss(), pml_l.TripletMarginLoss())
    _compare(ContrastiveLoss(), pml_l.ContrastiveLoss())


def test_reference_agrees_with_pml_on_the_mask():
    # The reference's dense mask (what the kernels are tested against) is PML's set.
    x, labels = _batch(4, p=3, k=3)
    a, p, n = R.triplet_indices(R.pairwise_distance(x), labels, "none")
    from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

    pa, pp, pn = lmu.get_all_triplets_indices(labels)
    assert sorted(zip(a.tolist(), p.tolist(), n.tolist())) == sorted(zip(pa.tolist(), pp.tolist(), pn.tolist()))
