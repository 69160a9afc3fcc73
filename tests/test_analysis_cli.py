"""``facecore analyze``: every subcommand end to end on synthetic faces (files written,
numbers equal the library's), one-line usage errors with exit code 2, the real datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from analysis_cases import one_blas_thread  # noqa: F401

import facecore
from facecore.analysis import Embeddings, pixel_embeddings, probe
from facecore.analysis.cli import add_parser, main
from facecore.data import PreprocessConfig, open_dataset
from facecore.models import GenderClassifier

SYN = ["--data", "synthetic", "--data-opt", "num_samples=120", "--data-opt", "image_size=24",
       "--data-opt", "num_identities=40", "--threads", "1"]


def _run(argv, capsys):
    code = main(["analyze", *argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_help_lists_the_analyses(capsys):
    with pytest.raises(SystemExit) as info:
        main(["analyze", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("embeddings", "probe", "bias", "groups", "spaces"):
        assert cmd in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probe", "--pixels", *SYN], "the following arguments are required: --target, --output"),
        (["embeddings", "--data", "london", "--pixels", "-o", "x"], "--data london needs --data-root DIR"),
        (["embeddings", "--data", "london", "--data-root", "/nonexistent/l", "--pixels", "-o", "x"],
         "data root not found: /nonexistent/l"),
        (["embeddings", *SYN, "-o", "x"], "give exactly one of --embeddings, --model, --pixels"),
        (["embeddings", *SYN, "--pixels", "--model", "m", "-o", "x"], "give exactly one of"),
        (["probe", *SYN, "--pixels", "--target", "ethnicity", "-o", "x"], "no label 'ethnicity'"),
        (["bias", "--embeddings", "/nonexistent/e", "--target", "gender", "--group", "race", "-o", "x"],
         "embeddings file not found: /nonexistent/e.npz"),
        (["embeddings", *SYN, "--data-opt", "colour=1", "--pixels", "-o", "x"], "--data-opt"),
        (["groups", *SYN, "--model", "/nonexistent/m", "--group", "race", "-o", "x"],
         "model not found: /nonexistent/m"),
        (["bias", "--pixels", *SYN, "--target", "gender", "--group", "race", "--task", "fly", "-o", "x"],
         "argument --task: invalid choice: 'fly'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, message, capsys, tmp_path):
    argv = [str(tmp_path / "x") if a == "x" else a for a in argv]
    code, out, err = _run(argv, capsys)
    assert code == 2, (out, err)
    assert err.startswith("facecore: error: ") and message in err, err
    assert err.count("\n") == 1


def test_embeddings_then_probe_and_bias_from_the_saved_file(tmp_path, capsys):
    code, out, _ = _run(["embeddings", *SYN, "--pixels", "--pixel-size", "12", "--method", "pca",
                         "tsne", "--perplexity", "10", "--color", "gender", "race",
                         "-o", str(tmp_path / "e")], capsys)
    assert code == 0, out
    for f in ("pca2d_gender.png", "pca2d_race.png", "tsne2d_gender.png", "tsne2d_race.png",
              "embeddings.npz", "embeddings.json", "projections.json"):
        assert (tmp_path / "e" / f).is_file(), f
    info = json.loads((tmp_path / "e" / "projections.json").read_text())
    tsne = [f for f in info["figures"] if f["method"] == "tsne"][0]["info"]
    assert tsne["perplexity"] == 10 and tsne["seed"] == 0
    emb = Embeddings.load(tmp_path / "e" / "embeddings")
    ds = open_dataset("synthetic", num_samples=120, image_size=24, num_identities=40)
    np.testing.assert_allclose(emb.features, pixel_embeddings(ds, size=12).features)

    code, out, _ = _run(["probe", "--embeddings", str(tmp_path / "e" / "embeddings"), "--target",
                         "gender", "--folds", "3", "-o", str(tmp_path / "p"), "--threads", "1"], capsys)
    assert code == 0
    res = json.loads((tmp_path / "p" / "probe.json").read_text())["results"]
    [r] = next(iter(res.values()))
    assert r["accuracy"]["value"] == pytest.approx(probe(emb, "gender", folds=3).accuracy.value)
    assert "| gender | logreg |" in (tmp_path / "p" / "probe.md").read_text()

    code, out, _ = _run(["bias", "--embeddings", str(tmp_path / "e" / "embeddings"), "--target",
                         "gender", "--group", "race", "--folds", "3", "--min-group", "5",
                         "-o", str(tmp_path / "b"), "--threads", "1"], capsys)
    assert code == 0
    d = json.loads((tmp_path / "b" / "bias_gender_by_race.json").read_text())
    assert d["rows_trained_on"][-1] == "all" and d["metric"] == "accuracy"
    assert (tmp_path / "b" / "bias_gender_by_race.png").stat().st_size > 10_000
    assert "trained on" in out


def test_probe_with_pixel_baseline_and_bins(tmp_path, capsys):
    code, out, _ = _run(["probe", *SYN, "--pixels", "--pixel-size", "8", "--target", "age_bin",
                         "--bin", "age=4", "--probe", "logreg", "mlp", "--folds", "3",
                         "-o", str(tmp_path)], capsys)
    assert code == 0, out
    res = json.loads((tmp_path / "probe.json").read_text())["results"]
    [rows] = res.values()
    assert [r["model"] for r in rows] == ["logreg", "mlp"]
    assert rows[0]["class_names"] == ["0..3", "4..7"]


def test_groups_on_an_exported_model(tmp_path, capsys):
    torch.manual_seed(0)
    pre = PreprocessConfig(input_size=24, resize=24, mean=(0.5,) * 3, std=(0.25,) * 3)
    facecore.export_model(GenderClassifier("small_cnn", width=4), tmp_path / "m", preprocess=pre)
    code, out, _ = _run(["groups", *SYN, "--model", str(tmp_path / "m"), "--group", "race",
                         "age_bin", "--bin", "age=4", "-o", str(tmp_path / "g")], capsys)
    assert code == 0, out
    for g in ("race", "age_bin"):
        d = json.loads((tmp_path / "g" / f"groups_{g}.json").read_text())
        assert d["primary_metric"] == "accuracy" and d["rows"][-1]["group"] == "all"
        assert d["rows"][-1]["n"] == 120
    assert "best" in out and "| **all** | 120 |" in out


def test_spaces_command(tmp_path, capsys):
    code, out, _ = _run(["spaces", "--data", "synthetic", "--data-opt", "num_samples=240",
                         "--data-opt", "image_size=24", "--data-opt", "num_identities=40",
                         "--loss", "triplet", "--steps", "3", "--p", "4", "--k", "3",
                         "--embedding-dim", "8", "--bias-group", "-1", "--perplexity", "5",
                         "-o", str(tmp_path), "--threads", "1"], capsys)
    assert code == 0, out
    d = json.loads((tmp_path / "spaces.json").read_text())
    assert {r["setting"] for r in d["rows"]} == {"balanced"}
    assert (tmp_path / "spaces_tsne_race.png").is_file()


def test_wires_into_the_main_cli_parser():
    cli = pytest.importorskip("facecore.cli")
    parser_class = getattr(cli, "_Parser", None)
    usage = getattr(cli, "UsageError", None)
    if parser_class is None or usage is None:
        pytest.skip("facecore.cli has no _Parser / UsageError")
    p = parser_class(prog="facecore")
    sub = p.add_subparsers(dest="command", parser_class=parser_class)
    add_parser(sub)
    args = p.parse_args(["analyze", "bias", "--pixels", "--target", "g", "--group", "r", "-o", "x"])
    assert args.command == "analyze" and args.analysis == "bias"
    from facecore.analysis.cli import run

    with pytest.raises(usage, match="give --embeddings FILE, or --data"):
        run(args)  # no --data: the subparser's error, i.e. the main CLI's usage error


@pytest.mark.data
def test_real_data_london_and_fairface(london_dir, fairface_dir, tmp_path, capsys):
    code, out, _ = _run(["bias", "--data", "london", "--data-root", str(london_dir), "--pixels",
                         "--pixel-size", "16", "--target", "gender", "--group", "race", "--folds",
                         "3", "--threads", "1", "-o", str(tmp_path / "l")], capsys)
    assert code == 0, out
    d = json.loads((tmp_path / "l" / "bias_gender_by_race.json").read_text())
    assert d["cols_evaluated_on"] == ["white", "black", "east_asian", "west_asian"]
    assert d["excluded_groups"] == {"east_asian/white": 2}
    code, out, _ = _run(["probe", "--data", "fairface", "--data-root", str(fairface_dir), "--pixels",
                         "--pixel-size", "16", "--target", "gender", "age_bin", "--bin", "age=3,6",
                         "--folds", "3", "--threads", "1", "-o", str(tmp_path / "f")], capsys)
    assert code == 0, out
    rows = next(iter(json.loads((tmp_path / "f" / "probe.json").read_text())["results"].values()))
    assert rows[1]["class_names"] == ["0-2..10-19", "20-29..40-49", "50-59..70+"]
    assert rows[1]["accuracy"]["n"] == 540 and rows[1]["accuracy"]["method"] == "wilson"
