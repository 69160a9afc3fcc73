"""Real-face age quality through the training API, as a user runs it (issue 10, item 6).

Not a timed test: for each data set, head and seed it runs ``facecore.train.fit`` on a
packaged config (Ray Train's in-process local mode, ``run.workers=0``; the config's
defaults otherwise: the optimiser recipe, the head initialised from the labels, the
decoded-image cache), then reads the test metrics ``fit`` reports for the best checkpoint
(``val_mae``): the MAE of the predicted labels, of the expected rank, and of always
predicting the training median. It prints one JSON line per run and a mean +- sd table
per data set and head.

Data (read-only, ``../shared/data`` or ``FACECORE_SHARED_DATA``):

* ``fairface``: FairFace-540, 9 age groups (MAE in groups), ``age_coral_fairface``
  (small_cnn 64 px, crop_fraction 0.5, 40 epochs; 378 train / 54 valid / 108 test images);
* ``london``: the London set's adults, 18-54 years as 37 classes (MAE in years),
  ``age_coral_london`` (split by person: 70 / 10 / 20 people, 2 photos each; batch 32,
  40 epochs).

Seeds 0, 1, 2 set ``data.seed`` (the split) and ``run.seed`` (the initialisation); every
head sees the same three splits and the same budget. The export is skipped
(``run.export=false``); the CORAL seed-0 run of each data set writes its plots
(``--figures DIR`` copies its ``cumulative_probs.png`` there).

::

    python benchmarks/age_quality.py                       # both data sets, 4 heads, 3 seeds
    python benchmarks/age_quality.py --data fairface --heads coral --seeds 0
    python benchmarks/age_quality.py --figures benchmarks/figures --json /tmp/age_quality.jsonl

Results: see the README (*Real faces: what the defaults reach*) for the table of the last
run, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecore.train import fit, load_config  # noqa: E402

SHARED = Path(os.environ.get("FACECORE_SHARED_DATA", ROOT.parent / "shared" / "data"))

DATA = {
    "fairface": ("age_coral_fairface", "fairface540", "groups"),
    "london": ("age_coral_london", "london_faces", "years"),
}


def run_one(data: str, head: str, seed: int, storage: Path, extra: list[str]) -> dict:
    config, folder, unit = DATA[data]
    name = f"{data}-{head}-s{seed}"
    plot = head == "coral" and seed == 0
    overrides = [
        f"data.root={SHARED / folder}", f"ordinal.head={head}", f"data.seed={seed}",
        f"run.seed={seed}", "run.workers=0", f"run.storage={storage}", f"run.name={name}",
        "run.export=false", f"run.plot={str(plot).lower()}", "run.verbose=0", *extra,
    ]
    cfg = load_config(config, overrides)
    shutil.rmtree(storage / name, ignore_errors=True)  # a fresh run, not a resume
    t0 = time.perf_counter()
    res = fit(cfg)
    m = res.test_metrics
    return {
        "data": data, "head": head, "seed": seed, "unit": unit,
        "mae": m["test_mae"], "mae_expected": m["test_mae_expected"],
        "median_mae": m["test_median_mae"], "rank_inconsistency": m["test_rank_inconsistency"],
        "best_epoch": int(res.best_metrics.get("epoch", 0)), "epochs": res.epochs_completed,
        "wall_s": round(time.perf_counter() - t0, 1), "config": config, "overrides": extra,
        "plots": {k: str(v) for k, v in res.plots.items()},
    }


def ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    ap.add_argument("--heads", nargs="+", default=["ce", "niu", "coral", "corn"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--storage", type=Path, default=Path("/tmp/facecore-age-quality"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every run (e.g. optim.epochs=60)")
    ap.add_argument("--json", type=Path, help="append one JSON line per run here")
    ap.add_argument("--figures", type=Path, help="copy each data set's CORAL seed-0 P(y>k) plot here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if not SHARED.is_dir():
        raise SystemExit(f"shared face data not found at {SHARED} (set FACECORE_SHARED_DATA)")
    rows: dict[tuple[str, str], list[dict]] = {}
    for data in a.data:
        for head in a.heads:
            for seed in a.seeds:
                out = run_one(data, head, seed, a.storage, list(a.set))
                line = json.dumps(out)
                print(line, flush=True)
                if a.json:
                    with open(a.json, "a") as f:
                        f.write(line + "\n")
                rows.setdefault((data, head), []).append(out)
                if a.figures and "cumulative_probs" in out["plots"]:
                    a.figures.mkdir(parents=True, exist_ok=True)
                    dst = a.figures / f"age_{data}_coral_cumulative_probs.png"
                    shutil.copyfile(out["plots"]["cumulative_probs"], dst)
                    print(f"# wrote {dst}", file=sys.stderr)
    print(f"\n| data | head | MAE (labels) | MAE (expected rank) | median baseline | s/run |  "
          f"({len(a.seeds)} seeds, facecore.train.fit)")
    print("|---|---|---|---|---|---|")
    for (data, head), v in rows.items():
        print(
            f"| {data} ({v[0]['unit']}) | {head} | {ms([o['mae'] for o in v])} | "
            f"{ms([o['mae_expected'] for o in v])} | {ms([o['median_mae'] for o in v])} | "
            f"{statistics.mean(o['wall_s'] for o in v):.0f} |"
        )


if __name__ == "__main__":
    main()
