"""Sweep search spaces (facecore.train.tune.space): the KEY=KIND:ARGS grammar, YAML files,
the check against the config, and every user error as one line naming the key. No Ray."""

from __future__ import annotations

import pytest

from facecore.train.config import config_to_dict, load_config
from facecore.train.sections import ConfigError
from facecore.train.tune.space import (
    Dimension,
    check_space,
    load_space,
    parse_dimension,
    parse_space,
    space_to_tune,
)


def test_every_kind_parses_and_round_trips_through_its_spec():
    cases = {
        "optim.lr=loguniform:1e-4:1e-2": ("loguniform", (1e-4, 1e-2)),
        "optim.weight_decay=uniform:0:1e-3": ("uniform", (0.0, 1e-3)),
        "model.width=randint:8:33": ("randint", (8, 33)),
        "ordinal.head=choice:coral,corn": ("choice", ("coral", "corn")),
        "ordinal.head=grid:ce,niu,coral,corn": ("grid", ("ce", "niu", "coral", "corn")),
        "optim.lr=grid:1e-3,0.01": ("grid", (1e-3, 0.01)),
        "data.augment=choice:true,false": ("choice", (True, False)),
    }
    for text, (kind, values) in cases.items():
        d = parse_dimension(text)
        assert (d.kind, d.values) == (kind, values), text
        assert parse_dimension(d.spec()) == d, text
    assert parse_dimension("model.width=randint:8:33").probes == (8, 32)


def test_ray_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    dom = space_to_tune(parse_space(["optim.lr=loguniform:1e-4:1e-2", "model.width=randint:8:33",
                                     "ordinal.head=choice:coral,corn", "run.seed=grid:1,2"]))
    assert isinstance(dom["optim.lr"], Float) and isinstance(dom["model.width"], Integer)
    assert isinstance(dom["ordinal.head"], Categorical)
    assert dom["run.seed"] == {"grid_search": [1, 2]}
    with pytest.raises(ConfigError, match="grid is not searchable by Optuna; use choice:1,2"):
        parse_dimension("run.seed=grid:1,2").to_tune("optuna")


@pytest.mark.parametrize(
    "text, message",
    [
        ("optim.lr", r"--space must look like KEY=KIND:ARGS"),
        ("optim.lr=0.01", r"--space optim.lr: kind must be one of .*a fixed value is --set optim.lr=VALUE"),
        ("optim.lr=lognormal:1:2", r"--space optim.lr: kind must be one of loguniform \| uniform"),
        ("optim.lr=loguniform", r"--space optim.lr: loguniform needs arguments, e.g. optim.lr=loguniform"),
        ("optim.lr=loguniform:1e-2", r"--space optim.lr: loguniform needs LOW:HIGH"),
        ("optim.lr=loguniform:0:1e-2", r"--space optim.lr: loguniform needs 0 < LOW, got 0"),
        ("optim.lr=uniform:0.1:0.01", r"--space optim.lr: uniform needs LOW < HIGH, got 0.1:0.01"),
        ("optim.lr=uniform:a:b", r"--space optim.lr: uniform needs two numbers LOW:HIGH"),
        ("model.width=randint:8:16.5", r"--space model.width: randint needs two integers"),
        ("ordinal.head=grid:coral,coral", r"--space ordinal.head: grid lists a value twice"),
        ("=grid:1,2", r"--space must look like KEY=KIND:ARGS"),
        ("optim..lr=grid:1,2", r"--space needs a dotted config key"),
    ],
)
def test_parse_errors_are_one_line_naming_the_key(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_dimension(text)
    assert "\n" not in str(info.value)


def test_a_key_given_twice_is_an_error(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("optim:\n  lr: loguniform:1e-4:1e-2\n")
    with pytest.raises(ConfigError, match="--space optim.lr is given twice"):
        parse_space(["optim.lr=grid:0.1,0.2"], f)


def test_yaml_space_file_forms(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text(
        "optim.lr: loguniform:1e-4:1e-2\n"
        "ordinal: {head: [ce, niu, coral, corn]}\n"
        "model.width: {randint: [8, 33]}\n"
        "data: {augment: {choice: [true, false]}}\n"
    )
    dims = {d.key: d for d in load_space(f)}
    assert dims["optim.lr"] == Dimension("optim.lr", "loguniform", (1e-4, 1e-2))
    assert dims["ordinal.head"] == Dimension("ordinal.head", "grid", ("ce", "niu", "coral", "corn"))
    assert dims["model.width"] == Dimension("model.width", "randint", (8, 33))
    assert dims["data.augment"] == Dimension("data.augment", "choice", (True, False))


@pytest.mark.parametrize(
    "text, message",
    [
        ("optim.lr: [", r"search-space file .*space.yaml is not valid YAML"),
        ("- optim.lr", r"must hold a mapping of config keys, got list"),
        ("optim.lr: 3", r"space.yaml: search space optim.lr: expected 'KIND:ARGS', a list"),
        ("optim.lr: uniform:1", r"space.yaml: --space optim.lr: uniform needs LOW:HIGH"),
    ],
)
def test_yaml_space_file_errors(tmp_path, text, message):
    f = tmp_path / "space.yaml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_space(f)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="search-space file not found"):
        load_space(tmp_path / "missing.yaml")


def test_check_space_names_the_bad_key_before_anything_runs():
    base = config_to_dict(load_config("age_coral_synthetic"))
    check_space(parse_space(["ordinal.head=grid:ce,niu,coral,corn", "optim.lr=loguniform:1e-4:1e-2"]), base,
                fixed={"run.seed": 0})
    with pytest.raises(ConfigError, match=r"--space ordinal.head='softmax': .*ordinal.head") as info:
        check_space(parse_space(["ordinal.head=grid:coral,softmax"]), base)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"--space optim.lrr=0.1: .*optim.lrr"):
        check_space(parse_space(["optim.lrr=grid:0.1"]), base)
    with pytest.raises(ConfigError, match=r"--space run.seed: the key is set by the sweep itself"):
        check_space(parse_space(["run.seed=grid:1,2"]), base, fixed={"run.seed": 0})
    with pytest.raises(ConfigError, match=r"--space optim.epochs=0: "):
        check_space(parse_space(["optim.epochs=randint:0:4"]), base)


def test_optuna_search_is_an_extra(tmp_path):
    """--search optuna: without Optuna one line naming the extra, before Ray starts; with
    it, Tune's OptunaSearch repeated once per seed."""
    from facecore.train.tune import run_sweep

    base = load_config("age_coral_synthetic", ["data.num_samples=40"])
    try:
        import optuna  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"--search optuna needs Optuna: pip install 'facecore\[tune\]'"):
            run_sweep(base, ["optim.lr=loguniform:1e-4:1e-2"], name="o", storage=tmp_path, search="optuna")
        return
    from ray.tune.search import Repeater

    from facecore.train.tune.sweep import _search_alg

    alg = _search_alg("optuna", 0, [0, 1, 2], 1)
    assert isinstance(alg, Repeater) and alg.repeat == 3
