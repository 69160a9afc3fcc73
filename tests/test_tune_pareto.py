"""The generic Pareto utility (facecore.train.tune.pareto): every listed point is
non-dominated, every excluded point is dominated by a listed one (hypothesis), directions
per axis, unusable rows, files. No Ray."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from facecore.train.tune.pareto import dominates, front_mask, pareto_front, save_front

MODES = st.sampled_from(["min", "max"])
# small integer grids make ties and duplicates frequent
VALUE = st.one_of(st.integers(-3, 3).map(float), st.just(math.nan), st.none())


def _better_or_equal(a, b, mode):
    return a >= b if mode == "max" else a <= b


def _usable(row, objectives):
    return all(isinstance(row[m], float) and math.isfinite(row[m]) for m, _ in objectives)


@given(
    modes=st.lists(MODES, min_size=1, max_size=3),
    data=st.data(),
)
def test_front_is_exactly_the_non_dominated_set(modes, data):
    objectives = [(f"m{i}", mode) for i, mode in enumerate(modes)]
    rows = data.draw(st.lists(
        st.fixed_dictionaries({m: VALUE for m, _ in objectives}), min_size=0, max_size=12,
    ))
    for i, r in enumerate(rows):
        r["id"] = i
    front = pareto_front(rows, objectives)
    listed = {r["id"] for r in front}

    def dom(a, b):  # an independent brute-force definition
        return (_usable(a, objectives) and _usable(b, objectives)
                and all(_better_or_equal(a[m], b[m], md) for m, md in objectives)
                and any(a[m] != b[m] for m, _ in objectives))

    for r in rows:
        if r["id"] in listed:  # listed: usable and no row dominates it
            assert _usable(r, objectives)
            assert not any(dom(o, r) for o in rows)
            assert not any(dominates(o, r, objectives) for o in rows)
        elif _usable(r, objectives):  # excluded: some listed point dominates it
            assert any(dom(f, r) for f in front)
    assert [r["id"] for r in front] == sorted(listed)  # input order kept
    assert front_mask(rows, objectives) == [r["id"] in listed for r in rows]


def test_directions_per_axis():
    rows = [{"p": 0.30, "u": 0.90}, {"p": 0.10, "u": 0.95}, {"p": 0.20, "u": 0.80}, {"p": 0.3, "u": 0.9}]
    assert front_mask(rows, [("p", "max"), ("u", "max")]) == [True, True, False, True]
    assert front_mask(rows, [("p", "min"), ("u", "min")]) == [False, True, True, False]
    assert front_mask(rows, [("p", "max"), ("u", "min")]) == [True, False, True, True]
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        front_mask(rows, [("p", "up")])


def test_save_front_files(tmp_path):
    rows = [{"label": "a", "p": 0.3, "u": 0.9}, {"label": "b", "p": 0.1, "u": 0.95},
            {"label": "c", "p": 0.2, "u": 0.8}, {"label": "d", "p": math.nan, "u": 1.0}]
    files = save_front(rows, [("p", "max"), ("u", "max")], tmp_path / "pareto",
                       reference={"p": 0.0, "u": 1.0}, reference_label="autoencoder only",
                       label_key="label", title="t")
    doc = json.loads(files["json"].read_text())
    assert [r["label"] for r in doc["front"]] == ["a", "b"]
    assert [r["label"] for r in doc["rows"]] == ["a", "b", "c", "d"]
    assert doc["rows"][3]["p"] is None and doc["reference"] == {"p": 0.0, "u": 1.0}
    lines = files["csv"].read_text().splitlines()
    assert lines[0].split(",")[-1] == "on_front" and lines[1].endswith("True") and lines[3].endswith("False")
    pytest.importorskip("matplotlib")
    assert files["png"].stat().st_size > 1000
