"""Sweep the ordinal heads (CE, Niu/OR-CNN, CORAL, CORN) and the learning rate with Ray Tune.

    python tune/sweep_ordinal_heads.py                       # 4 heads x 2 lrs, small synthetic
    python tune/sweep_ordinal_heads.py --heads coral corn --lrs 0.001 0.003 0.01 \
        --set optim.epochs=6 --set data.num_samples=3000

Each trial is a Ray Tune function trainable (facecore.train.tune.ordinal_trial) that
trains one model in its process and reports the validation metrics every epoch; the
table of trials is printed best first (by validation MAE).
"""

from __future__ import annotations

import argparse
import time

from facecore.train import load_config
from facecore.train.tune import TUNE_SMALL, sweep_ordinal_heads


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heads", nargs="+", default=["ce", "niu", "coral", "corn"])
    ap.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 3e-3])
    ap.add_argument("--config", default="age_coral_synthetic", help="base age config")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--storage", default="runs/tune")
    ap.add_argument("--name", default=time.strftime("ordinal-heads-%Y%m%d-%H%M%S"))
    ap.add_argument("--concurrent", type=int, default=2, help="trials at once")
    a = ap.parse_args(argv)

    base = load_config(a.config, [*TUNE_SMALL, *a.overrides])
    t0 = time.perf_counter()
    rows = sweep_ordinal_heads(
        base, heads=tuple(a.heads), lrs=tuple(a.lrs), storage=a.storage, name=a.name,
        max_concurrent=a.concurrent,
    )
    print(f"{'head':6s} {'lr':>8s} {'val MAE':>8s} {'median':>8s} {'rank-inc':>9s}")
    for r in rows:
        print(
            f"{r['head']:6s} {r['lr']:8.4g} {r['val_mae']:8.3f} {r['val_median_mae']:8.3f} "
            f"{r['val_rank_inconsistency']:9.3f}"
        )
    best = rows[0]
    print(
        f"best: head={best['head']} lr={best['lr']:g} val MAE {best['val_mae']:.3f} "
        f"({len(rows)} trials, {time.perf_counter() - t0:.0f} s; results in {a.storage}/{a.name})"
    )
    return rows


if __name__ == "__main__":
    main()
