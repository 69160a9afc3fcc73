"""Training configs: YAML round trip, dotted overrides, errors that name the key."""

from __future__ import annotations

import pytest

from facecore.train.config import (
    AgeConfig,
    ConfigError,
    EmbeddingConfig,
    GenderConfig,
    SANConfig,
    apply_overrides,
    check_data_root,
    config_from_dict,
    config_to_dict,
    load_config,
    packaged_configs,
    save_config,
)


def test_packaged_configs_load_and_have_the_task_class():
    names = packaged_configs()
    assert "age_coral_synthetic.yaml" in names
    kinds = {type(load_config(n)) for n in names}
    assert kinds == {AgeConfig, GenderConfig, EmbeddingConfig, SANConfig}
    demo = load_config("age_coral_synthetic")
    assert (demo.task, demo.ordinal.head, demo.run.workers, demo.data.name) == (
        "age", "coral", 2, "synthetic",
    )


def test_yaml_round_trip(tmp_path):
    cfg = load_config("embedding_triplet_synthetic", ["optim.lr=0.05", "data.fractions=[0.6, 0.2, 0.2]"])
    path = save_config(cfg, tmp_path / "c.yaml")
    again = load_config(path)
    assert again == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert again.data.fractions == [0.6, 0.2, 0.2]


def test_overrides_parse_yaml_values_and_coerce():
    cfg = load_config(
        "age_coral_synthetic",
        ["optim.lr=1e-2", "optim.epochs=3", "ordinal.importance_weights=true",
         "run.score=null", "optim.grad_clip=2", "run.name=abc"],
    )
    assert cfg.optim.lr == 0.01 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.epochs == 3
    assert cfg.ordinal.importance_weights is True
    assert cfg.run.score is None and cfg.score() == ("val_mae", "min")
    assert cfg.optim.grad_clip == 2.0 and isinstance(cfg.optim.grad_clip, float)
    # dict overrides are taken as values, not parsed
    d = apply_overrides({"run": {"name": "x"}}, {"run.name": "1e3"})
    assert d == {"run": {"name": "1e3"}}


def test_defaults_without_file_follow_the_task():
    assert load_config(task="gender").score() == ("val_auc", "max")
    assert load_config(task="embedding").metric.loss == "triplet"


def test_the_recipe_is_the_default():
    """Issue 10: AdamW, weight decay 0.05 (conv / linear weights only), one-cycle per
    batch, the backbone's learning rate, the head from the labels, flips, the cache."""
    from facecore.train.optim import DEFAULT_LR, config_lr

    cfg = load_config(task="age")
    o = cfg.optim
    assert (o.name, o.lr, o.weight_decay, o.scheduler, o.warmup_epochs) == (
        "adamw", None, 0.05, "onecycle", None)
    assert cfg.ordinal.init_from_labels and not cfg.ordinal.monotone_biases
    assert cfg.ordinal.age_offset is None
    assert (cfg.data.horizontal_flip, cfg.data.crop_fraction, cfg.data.cache) == (0.5, 1.0, "memory")
    assert config_lr(cfg) == DEFAULT_LR["small_cnn"]
    assert config_lr(load_config(task="age", overrides=["model.backbone=resnet18"])) == DEFAULT_LR["resnet18"]
    assert config_lr(load_config(task="age", overrides=["optim.lr=0.02"])) == 0.02
    # a bare YAML off is the cache mode, not false
    assert load_config(task="age", overrides=["data.cache=off"]).data.cache == "off"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["optim.lrr=1"], r"unknown config key 'optim.lrr'; valid keys in optim: name, lr"),
        (["bogus=1"], r"unknown config key 'bogus'"),
        (["metric.p=4"], r"unknown config key 'metric'"),  # an age config has no metric
        (["ordinal.head=foo"], r"ordinal.head must be one of ce \| niu \| coral \| corn, got 'foo'"),
        (["optim.epochs=1.5"], r"optim.epochs must be int, got 1.5"),
        (["run.workers=two"], r"run.workers must be int, got 'two'"),
        (["ordinal.monotone_biases=3"], r"ordinal.monotone_biases must be bool, got 3"),
        (["optim.lr=0"], r"optim.lr must be > 0, got 0.0"),
        (["optim.epochs=0"], r"optim.epochs must be >= 1, got 0"),
        (["data.fractions=[1, 0]"], r"data.fractions must be three non-negative numbers"),
        (["data.name=imagenet"], r"data.name must be one of synthetic \| utkface"),
        (["run.name=a/b"], r"run.name must be a plain folder name .*got 'a/b'"),
        (["run.name=.."], r"run.name must be a plain folder name .*got '\.\.'"),
        (["run.name=."], r"run.name must be a plain folder name .*got '\.'"),
        (["run.name=a\\b"], r"run.name must be a plain folder name"),
        (["run.name=' '"], r"run.name must be a plain folder name"),
        (["noequals"], r"override must look like section.key=value, got 'noequals'"),
        (["optim.epochs.x=1"], r"override 'optim.epochs.x': optim.epochs is not a section"),
        # issue 10: the per-step schedules, the recipe's keys, fine-tuning
        (["optim.scheduler=step"], r"optim.scheduler must be one of onecycle \| cosine \| constant, got 'step'"),
        (["optim.step_size=5"], r"config key 'optim.step_size' was replaced: the per-epoch 'step' schedule was removed"),
        (["optim.gamma=0.5"], r"config key 'optim.gamma' was replaced"),
        (["optim.warmup_epochs=10"], r"optim.warmup_epochs must be in \[0, optim.epochs=10\), got 10.0"),
        (["optim.weight_decay=-1"], r"optim.weight_decay must be >= 0, got -1.0"),
        (["optim.name=lamb"], r"optim.name must be one of adamw \| adam \| sgd, got 'lamb'"),
        (["model.freeze=[layer1]"], r"model.freeze applies to ResNet backbones .*not model.backbone='small_cnn'"),
        (["model.backbone=resnet18", "model.freeze=[layer9]"], r"model.freeze must list stages of stem \| layer1"),
        (["model.backbone=resnet18", "model.freeze=[all, stem]"], r"model.freeze must list stages"),
        (["model.pretrained=''"], r"model.pretrained must be a file path or null"),
        (["ordinal.age_offset=abc"], r"ordinal.age_offset must be float \| null, got 'abc'"),
    ],
)
def test_bad_values_raise_one_line_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_config("age_coral_synthetic", overrides)
    assert "\n" not in str(info.value)


def test_task_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"task must be one of age \| gender \| embedding \| san, got 'x'"):
        config_from_dict({"task": "x"})
    with pytest.raises(ConfigError, match=r"task 'gender' does not match the config file's task 'age'"):
        load_config("age_coral_synthetic", task="gender")
    with pytest.raises(ConfigError, match=r"config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: age\ndata: [1, 2\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping, got list"):
        load_config(bad)


def test_data_root_checked_before_training(tmp_path):
    cfg = load_config("age_corn_utkface")  # loads without a root ...
    with pytest.raises(ConfigError, match=r"data.root is required for data.name='utkface'"):
        check_data_root(cfg)  # ... but cannot train without one
    cfg = load_config("age_corn_utkface", [f"data.root={tmp_path / 'missing'}"])
    with pytest.raises(ConfigError, match=r"data root not found: .*missing"):
        check_data_root(cfg)
    check_data_root(load_config("age_corn_utkface", [f"data.root={tmp_path}"]))
    check_data_root(load_config("age_coral_synthetic"))


def test_run_name_cannot_escape_the_storage_folder(tmp_path):
    """Issue 15 item 7: '..', '.', separators and names resolving outside storage are refused
    (by the config, hence by `facecore train --name`), before anything is written."""
    storage = tmp_path / "store"
    storage.mkdir()
    (storage / "link").symlink_to(tmp_path)  # a name that resolves outside the storage root
    for name in ("..", ".", "a/b", "../x", "link"):
        with pytest.raises(ConfigError, match="run.name"):
            load_config("age_coral_synthetic", [f"run.storage={storage}", f"run.name={name}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    ok = load_config("age_coral_synthetic", [f"run.storage={storage}", "run.name=run-1.v2"])
    assert ok.run.name == "run-1.v2"


def test_choice_lists_are_defined_once_next_to_what_they_name():
    import dataclasses

    from facecore.data import DATASETS
    from facecore.losses.miners import MINERS
    from facecore.models import BACKBONES
    from facecore.models.ordinal import HEADS
    from facecore.train.tasks.embedding import METRIC_LOSSES

    def allowed(cls, name):
        return {f.name: f for f in dataclasses.fields(cls)}[name].metadata["choices"]

    from facecore.train.config import DataConfig, MetricOptions, ModelConfig, OrdinalOptions

    assert allowed(DataConfig, "name") == tuple(DATASETS)
    assert allowed(ModelConfig, "backbone") == tuple(BACKBONES)
    assert allowed(OrdinalOptions, "head") == tuple(HEADS)
    assert allowed(MetricOptions, "miner") == tuple(MINERS)
    from facecore.data.cache import CACHE_MODES
    from facecore.train.config import OptimConfig
    from facecore.train.optim import OPTIMIZERS, SCHEDULERS

    assert allowed(DataConfig, "cache") == CACHE_MODES == ("memory", "disk", "off")
    assert allowed(OptimConfig, "name") == OPTIMIZERS
    assert allowed(OptimConfig, "scheduler") == SCHEDULERS == ("onecycle", "cosine", "constant")
    assert allowed(MetricOptions, "loss") == METRIC_LOSSES == (
        "triplet", "contrastive", "softmax", "arcface", "cosface", "sphereface")
