"""The Python examples in README.md run as written (each in a fresh interpreter).

Examples that need a dataset the machine does not have, or that start Ray, are
listed in SKIP with the reason and the test that covers the same code path.
"""

from __future__ import annotations

import re

import pytest
from conftest import REPO_ROOT

SKIP = {
    'UTKFace("UTKFace/"': "needs a UTKFace folder (readers are tested on fixtures)",
    "fit(cfg)": "starts Ray Train (tests/test_train_ray.py)",
}


def readme_examples() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_has_examples():
    assert len(readme_examples()) >= 6


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(readme_examples())))
def test_readme_example_runs(index, fresh_python):
    code = readme_examples()[index]
    for marker, reason in SKIP.items():
        if marker in code:
            pytest.skip(reason)
    fresh_python(code)
