"""Sweep any training config over any config keys with Ray Tune (seeds, ASHA, Optuna,
multi-worker trials, resume by name).

    python tune/sweep.py --config gender_synthetic --space optim.lr=loguniform:1e-4:1e-2 \
        --num-samples 6 --seeds 0 1 --asha
    python tune/sweep.py --config embedding_triplet_synthetic --space metric.loss=grid:triplet,contrastive \
        --objective val_auc:max --seeds 0 1 2
    python tune/sweep.py --config age_coral_synthetic --space-file space.yaml --search optuna --num-samples 20

The objective defaults to the task's checkpoint score (val_mae/min for age, ...);
several --objective flags give a scalarised sweep_score (weights: --weights) and a Pareto
front. Interrupted? Run the same command again (same --storage / --name).
"""

from __future__ import annotations

import argparse
import sys

from facecore.train.tune import run_sweep
from facecore.train.tune.cli import (
    add_sweep_arguments,
    base_config,
    default_name,
    print_json,
    run_main,
    sweep_kwargs,
    sweep_space,
)


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_arguments(ap, default_config=None, default_name=default_name("sweep"))
    a = ap.parse_args(argv)
    result = run_sweep(base_config(a), sweep_space(a), **sweep_kwargs(a))
    print_json(a, result)
    return result


if __name__ == "__main__":
    sys.exit(run_main(main))
