"""CORAL task-importance weights against a direct transcription of the paper's
definition (loop form as in the authors' coral-cnn code) and by hand."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from facecore.models import importance_weights_from_labels


def _paper_weights(labels: list[int], num_classes: int, rule=max) -> list[float]:
    n = len(labels)
    m = []
    for k in range(num_classes - 1):
        above = sum(1 for y in labels if y > k)
        m.append(math.sqrt(rule(above, n - above)))
    top = max(m)
    return [v / top for v in m]


def test_by_hand():
    # labels 0,0,1,2,2,2,3 (K=4): m = max(5,2), max(4,3), max(1,6) = 5, 4, 6
    w = importance_weights_from_labels(torch.tensor([0, 0, 1, 2, 2, 2, 3]), 4)
    torch.testing.assert_close(w, torch.tensor([math.sqrt(5 / 6), math.sqrt(4 / 6), 1.0]))
    assert w.dtype == torch.float32
    wmin = importance_weights_from_labels([0, 0, 1, 2, 2, 2, 3], 4, rule="min")
    torch.testing.assert_close(wmin, torch.tensor([math.sqrt(2 / 3), 1.0, math.sqrt(1 / 3)]))


@given(
    st.integers(2, 9).flatmap(
        lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1), min_size=1, max_size=60))
    )
)
def test_matches_the_paper_definition(case):
    k, labels = case
    got = importance_weights_from_labels(torch.tensor(labels), k)
    torch.testing.assert_close(got, torch.tensor(_paper_weights(labels, k)), rtol=1e-6, atol=1e-7)
    assert float(got.max()) == 1.0 and got.shape == (k - 1,)


def test_errors():
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\] for num_classes=4, got labels\[1\] = 4"):
        importance_weights_from_labels(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        importance_weights_from_labels(torch.tensor([0]), 1)
    with pytest.raises(ValueError, match="1-D integer tensor"):
        importance_weights_from_labels(torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="labels is empty"):
        importance_weights_from_labels(torch.tensor([], dtype=torch.long), 3)
    with pytest.raises(ValueError, match="rule must be 'max'"):
        importance_weights_from_labels(torch.tensor([0, 1]), 3, rule="mean")
    with pytest.raises(ValueError, match="all labels in one class"):
        importance_weights_from_labels(torch.tensor([1, 1]), 3, rule="min")
