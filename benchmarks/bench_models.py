"""Model and data-pipeline throughput (CPU, float32, the thread count torch picks).

* training step (forward + backward of the fused CORAL loss) of an AgeEstimator,
  batch 32, for the small CNN at 64 px and ResNet-18 at 120 px (the CORAL
  paper's input size);
* inference of the same models, batch 32;
* synthetic face rendering, 64 px: one image at a time vs a batch of 64.

Times only: these have no peer implementation to compare with.
"""

from __future__ import annotations

import pytest
import torch

from facecore.data import SyntheticFaces
from facecore.models import AgeEstimator

CASES = {"small_cnn@64": ("small_cnn", 64), "resnet18@120": ("resnet18", 120)}


def _model(case):
    backbone, size = CASES[case]
    torch.manual_seed(0)
    model = AgeEstimator(backbone, head="coral", num_classes=8)
    x = torch.rand(32, 3, size, size)
    y = torch.randint(0, 8, (32,))
    return model, x, y


@pytest.mark.parametrize("case", list(CASES))
def bench_train_step(benchmark, case):
    model, x, y = _model(case)
    model.train()

    def step():
        loss = model.loss(model(x), y)
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()
    benchmark.group = "model train step, batch 32"
    benchmark.extra_info["impl"] = case
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("case", list(CASES))
def bench_inference(benchmark, case):
    model, x, _ = _model(case)
    model.eval()

    def run():
        with torch.inference_mode():
            return model.serve(x)

    benchmark.group = "model inference, batch 32"
    benchmark.extra_info["impl"] = case
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("mode", ["single", "batch64"])
def bench_synthetic_faces(benchmark, mode):
    ds = SyntheticFaces(4096, image_size=64, seed=0)
    idx = list(range(64))
    if mode == "single":
        run = lambda: [ds[i] for i in idx]  # noqa: E731
    else:
        run = lambda: ds.batch(idx)  # noqa: E731
    benchmark.group = "synthetic faces, 64 images at 64 px"
    benchmark.extra_info["impl"] = mode
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
