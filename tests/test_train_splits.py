"""One split implementation (issue 9) and identity-disjoint matching splits (issue 15 item 2).

* A reader's / the synthetic faces' ``split="train"`` (``"valid"``, ``"test"``) and
  training's split of the same config are the same items, also when corrupt files were
  dropped.
* The embedding task splits by identity (no person in two splits) and states the protocol;
  a split without genuine or impostor pairs is refused with one line naming it (on a real
  set with two photos per person, where image-level splits printed ``auc nan``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facecore.data import (
    FAIRFACE_AGE_GROUPS,
    FairFace,
    IdentityFolders,
    SyntheticFaces,
    dataset_splits,
)
from facecore.train import load_config
from facecore.train.config import ConfigError
from facecore.train.datasets import build_splits

SPLITS = ("train", "valid", "test")


def _save(path: Path, seed: int, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)


@pytest.mark.parametrize("seed, fractions", [(0, [0.8, 0.1, 0.1]), (7, [0.6, 0.25, 0.15])])
def test_synthetic_split_equals_training_split(seed, fractions):
    cfg = load_config("age_coral_synthetic", [
        "data.num_samples=300", f"data.seed={seed}", f"data.fractions={fractions}"])
    splits = build_splits(cfg)
    for name in SPLITS:
        ds = SyntheticFaces(300, split=name, seed=seed, split_fractions=fractions)
        assert splits.indices[name] == ds.indices.tolist(), name
        assert splits.labels(name).tolist() == ds.targets("age").tolist()
    assert sorted(sum(splits.indices.values(), [])) == list(range(300))


@pytest.fixture
def fairface_tree(tmp_path) -> Path:
    """60 images in 9 age groups, one of them corrupt (dropped by verification)."""
    root = tmp_path / "ff"
    records = []
    for i in range(60):
        _save(root / f"{i}.jpg", i)
        records.append({"filename": f"{i}.jpg", "age": FAIRFACE_AGE_GROUPS[i % 9],
                        "gender": "Male" if i % 2 else "Female"})
    (root / "13.jpg").write_bytes(b"not a jpeg")
    (root / "ground_truth.json").write_text(json.dumps(records))
    return root


@pytest.mark.filterwarnings("ignore:FairFace")
@pytest.mark.parametrize("seed", [0, 3])
def test_reader_split_equals_training_split_with_a_dropped_file(fairface_tree, seed):
    cfg = load_config(task="age", overrides=[
        "data.name=fairface", f"data.root={fairface_tree}", "data.image_size=16",
        f"data.seed={seed}", "data.fractions=[0.7, 0.15, 0.15]"])
    splits = build_splits(cfg)
    whole = splits.dataset
    assert len(whole) == 59  # the corrupt file was dropped
    for name in SPLITS:
        reader = FairFace(fairface_tree, split=name, split_seed=seed,
                          split_fractions=(0.7, 0.15, 0.15))
        assert [whole.paths[i] for i in splits.indices[name]] == reader.paths, name
    # the split is cut over the 60 records, so the dropped file moved nobody
    n, index = whole.record_positions()
    assert n == 60 and 13 not in index.tolist()


@pytest.fixture
def folders(tmp_path) -> Path:
    """12 people with 3 photos each (one folder per person)."""
    root = tmp_path / "people"
    for p in range(12):
        for k in range(3):
            _save(root / f"p{p}" / f"{k}.png", 100 * p + k)
    return root


def test_matching_splits_are_identity_disjoint_and_equal_the_readers(folders):
    cfg = load_config("embedding_triplet_synthetic", [
        "data.name=folders", f"data.root={folders}", "data.image_size=16",
        "data.fractions=[0.5, 0.25, 0.25]", "data.seed=2"])
    splits = build_splits(cfg)
    assert splits.split_by == "identity"
    people = {name: set(splits.labels(name).tolist()) for name in SPLITS}
    assert all(people[a].isdisjoint(people[b]) for a, b in (("train", "valid"), ("train", "test"),
                                                              ("valid", "test")))
    assert [len(people[s]) for s in SPLITS] == [6, 3, 3]
    for name in SPLITS:
        reader = IdentityFolders(folders, split=name, split_seed=2,
                                 split_fractions=(0.5, 0.25, 0.25))
        assert [splits.dataset.paths[i] for i in splits.indices[name]] == reader.paths
    # the age / gender tasks keep image-level splits
    whole = IdentityFolders(folders)
    by_image = dataset_splits(whole, (0.5, 0.25, 0.25), 2, by="sample")
    by_person = dataset_splits(whole, (0.5, 0.25, 0.25), 2, by="identity")
    assert by_person == splits.indices and by_image != by_person


def test_a_split_without_genuine_pairs_is_refused_naming_it(tmp_path):
    root = tmp_path / "one_each"
    for p in range(20):
        _save(root / f"p{p}" / "0.png", p)  # one photo per person
    cfg = load_config("embedding_triplet_synthetic", [
        "data.name=folders", f"data.root={root}", "data.image_size=16"])
    with pytest.raises(ConfigError, match=r"^the valid split has no genuine pairs \(none of its 2 "
                       r"identities has two images among its 2 images\)") as info:
        build_splits(cfg)
    assert "\n" not in str(info.value)


def test_a_split_with_one_identity_is_refused_naming_it(folders):
    cfg = load_config("embedding_triplet_synthetic", [
        "data.name=folders", f"data.root={folders}", "data.image_size=16",
        "data.fractions=[0.75, 0.2, 0.05]"])  # 12 people: 9 / 2 / 1
    with pytest.raises(ConfigError, match=r"^the test split has no impostor pairs \(3 images of 1 "
                       r"identity\)"):
        build_splits(cfg)


def test_verification_metrics_refuse_instead_of_nan():
    from facecore.train.evaluation import evaluate

    cfg = load_config(task="embedding")
    e = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    with pytest.raises(ValueError, match=r"the test split's 6 verification pairs hold no genuine"):
        evaluate(cfg, {"embedding": e, "target": torch.arange(4)}, torch.arange(4), "test")
    with pytest.raises(ValueError, match=r"the valid split's 6 verification pairs hold no impostor"):
        evaluate(cfg, {"embedding": e, "target": torch.zeros(4, dtype=torch.long)},
                 torch.arange(4), "valid")


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_photos_per_person_trains_and_reports_the_protocol(london_dir, tmp_path):
    """The issue-15 case: London faces (two photos per person), ArcFace, k=2. Image-level
    splits left no genuine test pairs (``auc nan``); identity-disjoint splits give finite
    open-set figures and evaluation.json says which protocol they are."""
    from facecore.train import fit

    cfg = load_config("embedding_arcface_folders", [
        "data.name=london", f"data.root={london_dir}", "data.image_size=32",
        "data.fractions=[0.6, 0.2, 0.2]", "metric.k=2", "model.width=8", "optim.epochs=2",
        "run.workers=0", f"run.storage={tmp_path}", "run.name=london", "run.export=false",
        "run.plot=false", "run.verbose=0"])
    res = fit(cfg)
    assert res.test_protocol == "identity-disjoint"
    ev = json.loads((res.output_dir / "evaluation.json").read_text())
    assert ev["test_protocol"] == "identity-disjoint" and ev["split_by"] == "identity"
    assert all(np.isfinite(ev[k]) for k in ("test_auc", "test_eer"))
    assert 0.0 <= ev["test_auc"] <= 1.0 and ev["split_sizes"]["test"] % 2 == 0


# ------------------------------------------------------------ data.include / max_train_samples


@pytest.mark.parametrize("task_config", ["gender_synthetic", "embedding_triplet_synthetic"])
def test_include_filters_each_split_after_the_split(task_config):
    """``data.include`` keeps the named values in every split and moves no item between
    splits: each filtered split is the unfiltered split's items with that value, so the
    matching task's splits stay identity-disjoint."""
    base = ["data.num_samples=800", "data.num_identities=200", "data.seed=3",
            "data.fractions=[0.6, 0.2, 0.2]"]
    whole = build_splits(load_config(task_config, base))
    sub = build_splits(load_config(task_config, [*base, "data.include={race: [0, 2]}"]))
    race = whole.dataset.targets("race").numpy()
    for name in SPLITS:
        want = [i for i in whole.indices[name] if race[i] in (0, 2)]
        assert sub.indices[name] == want and want, name
    both = build_splits(load_config(task_config, [*base, "data.include={race: [1], gender: [0]}"]))
    g = whole.dataset.targets("gender").numpy()
    assert all(race[i] == 1 and g[i] == 0 for s in SPLITS for i in both.indices[s])
    if task_config.startswith("embedding"):
        ident = whole.dataset.targets("identity").numpy()
        people = [set(ident[sub.indices[s]]) for s in SPLITS]
        assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])


@pytest.mark.parametrize("task_config", ["gender_synthetic", "embedding_triplet_synthetic"])
def test_max_train_samples_caps_the_training_split(task_config):
    base = ["data.num_samples=400", "data.num_identities=80", "data.include={race: [1]}"]
    full = build_splits(load_config(task_config, base))
    cap = build_splits(load_config(task_config, [*base, "data.max_train_samples=37"]))
    again = build_splits(load_config(task_config, [*base, "data.max_train_samples=37"]))
    assert cap.indices["train"] == again.indices["train"]  # seeded
    assert set(cap.indices["train"]) < set(full.indices["train"])
    assert cap.indices["valid"] == full.indices["valid"] and cap.indices["test"] == full.indices["test"]
    n = len(cap.indices["train"])
    if task_config.startswith("embedding"):  # whole people: none split by the cap
        ident = full.dataset.targets("identity").numpy()
        kept = set(ident[cap.indices["train"]])
        assert n <= 37 and n > 37 - 12
        assert all(i in cap.indices["train"] for i in full.indices["train"] if ident[i] in kept)
    else:
        assert n == 37


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["data.include=race"], r"data.include must be dict\[str, list\[int\]\] \| null, got 'race'"),
        (["data.include={race: 0}"], r"data.include.race must be list\[int\], got 0"),
        (["data.include={race: [light]}"], r"data.include.race\[0\] must be int, got 'light'"),
        (["data.include={}"], r"data.include must name at least one label"),
        (["data.include={race: []}"], r"data.include.race must list at least one value, got \[\]"),
        (["data.max_train_samples=0"], r"data.max_train_samples must be >= 1, got 0"),
    ],
)
def test_include_config_errors_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_config("gender_synthetic", overrides)
    assert "\n" not in str(info.value)


def test_include_dataset_errors_name_the_key():
    cfg = load_config("gender_synthetic", ["data.num_samples=100", "data.include={ethnicity: [0]}"])
    with pytest.raises(ConfigError, match=r"data.include.ethnicity: data.name='synthetic' has no "
                       r"integer label 'ethnicity' \(labels: .*race"):
        build_splits(cfg)
    cfg = load_config("gender_synthetic", ["data.num_samples=100", "data.include={race: [7]}"])
    with pytest.raises(ConfigError, match=r"data.include=\{'race': \[7\]\} leaves the train split empty"):
        build_splits(cfg)


def test_include_round_trips_through_yaml(tmp_path):
    from facecore.train.config import save_config

    cfg = load_config("gender_synthetic", ["data.include={race: [0, 1]}", "data.max_train_samples=50"])
    assert cfg.data.include == {"race": [0, 1]}
    assert load_config(save_config(cfg, tmp_path / "c.yaml")) == cfg


def test_split_by_identity_for_any_task():
    """``data.split_by: identity`` keeps every person in one split for a task that splits
    by image (a gender model on people with several photos); matching tasks cannot be
    asked to split by image."""
    base = ["data.num_samples=300", "data.num_identities=60"]
    img = build_splits(load_config("gender_synthetic", base))
    ids = build_splits(load_config("gender_synthetic", [*base, "data.split_by=identity"]))
    ident = ids.dataset.targets("identity").numpy()
    people = [set(ident[ids.indices[s]]) for s in SPLITS]
    assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])
    assert ids.split_by == "identity" and img.split_by == "sample"
    assert ids.indices == dataset_splits(ids.dataset, [0.8, 0.1, 0.1], 0, by="identity")
    assert set(ident[img.indices["train"]]) & set(ident[img.indices["test"]])  # image-level leaks
    from facecore.train.tasks import get_task

    assert get_task("gender").protocol_of(load_config("gender_synthetic", ["data.split_by=identity"])) \
        == "identity-disjoint"
    with pytest.raises(ConfigError, match=r"data.split_by='sample' is not allowed for task 'embedding'"):
        load_config("embedding_triplet_synthetic", ["data.split_by=sample"])
    with pytest.raises(ConfigError, match=r"data.split_by must be one of sample \| identity"):
        load_config("gender_synthetic", ["data.split_by=person"])
