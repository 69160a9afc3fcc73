"""Ray Tune sweeps of any training task: search spaces over any config key, repeats over
seeds, ASHA, Optuna, multi-worker trials, resume, a final evaluation of every finished
trial, tables, plots and Pareto fronts.

::

    from facecore.train import load_config
    from facecore.train.tune import Asha, run_sweep

    base = load_config("age_coral_synthetic", ["optim.epochs=6"])
    res = run_sweep(
        base,
        ["ordinal.head=grid:ce,niu,coral,corn", "optim.lr=loguniform:1e-3:1e-2"],
        name="heads", storage="runs/tune",
        seeds=(0, 1, 2),                 # every configuration once per seed (run.seed)
        asha=Asha(grace_period=2),       # early stopping on sweep_score
        workers_per_trial=1,             # N > 1: a TorchTrainer of N workers per trial
    )
    print(res.table())                   # configurations best first, mean ± sd over seeds
    res.trials[0]["checkpoint"]          # the best trial's chosen checkpoint

Modules: :mod:`~facecore.train.tune.space` (the ``KEY=KIND:ARGS`` grammar, YAML files,
validation against the config), :mod:`~facecore.train.tune.trials` (what runs in a trial:
the function trainable, the scalarised score, checkpoints and history per trial),
:mod:`~facecore.train.tune.sweep` (:func:`run_sweep`: the Tuner, resume, the final
evaluation hook, tables), :mod:`~facecore.train.tune.pareto` (non-dominated sets, CSV /
JSON / plot), :mod:`~facecore.train.tune.plots` (box plots over seeds, learning curves),
:mod:`~facecore.train.tune.ordinal` (the ordinal-head sweep),
:mod:`~facecore.train.tune.cli` (the arguments the ``tune/`` scripts share).

Objectives and the score: ``objectives`` are ``(metric, "min" | "max")`` pairs of the
metrics a trial reports every epoch (default: the task's checkpoint score, ``val_mae`` /
min for age). ASHA, Optuna and the choice of each trial's best epoch use
``sweep_score = sum_i w_i * (+m_i if maximised else -m_i)`` (always maximised; weights
default to 1). With two objectives the sweep also writes the Pareto front of the
configurations (:func:`pareto_front`).

Adding a sweep (e.g. SAN loss weights): build the task's base config, the search space
(dimensions over the task's keys), the objectives the task's validation metrics report,
and an ``evaluate(FinishedTrial) -> metrics`` hook for the final evaluation with held-out
models; call :func:`run_sweep`; the script adds :func:`~facecore.train.tune.cli.add_sweep_arguments`.
"""

from facecore.train.tune.ordinal import TUNE_SMALL, ordinal_space, sweep_ordinal_heads
from facecore.train.tune.pareto import dominates, front_mask, pareto_front, plot_front, save_front
from facecore.train.tune.space import (
    KINDS,
    Dimension,
    check_space,
    load_space,
    parse_dimension,
    parse_space,
)
from facecore.train.tune.sweep import (
    Asha,
    FinishedTrial,
    SweepResult,
    evaluate_on_test,
    export_trial,
    run_sweep,
)
from facecore.train.tune.trials import SCORE, TuneSession, scalarised_score, sweep_trial

__all__ = [
    "KINDS",
    "SCORE",
    "TUNE_SMALL",
    "Asha",
    "Dimension",
    "FinishedTrial",
    "SweepResult",
    "TuneSession",
    "check_space",
    "dominates",
    "export_trial",
    "front_mask",
    "load_space",
    "ordinal_space",
    "pareto_front",
    "parse_dimension",
    "parse_space",
    "plot_front",
    "run_sweep",
    "save_front",
    "scalarised_score",
    "sweep_ordinal_heads",
    "sweep_trial",
    "evaluate_on_test",
]
