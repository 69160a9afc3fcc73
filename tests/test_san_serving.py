"""SAN export and serving: ``export_model`` of a SANAutoencoder (TorchScript in a fresh
process, torch.export with a dynamic batch, outputs equal to the eager model, checksums),
``Predictor.anonymize`` on every input form and mode, the embedded gender classifier,
errors, and ``facecore anonymize`` on real JPEGs."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facecore
from facecore.cli import main
from facecore.data.transforms import LUMA, PreprocessConfig
from facecore.models import GenderClassifier, GrayscaleAdapter, SANAutoencoder
from facecore.models.san import MODES
from facecore.serving import ChecksumError, Predictor

S = 16


def _protos(size: int = S, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    m, f = torch.rand(3, size, size, generator=gen), torch.rand(3, size, size, generator=gen)
    return {"male": m, "female": f, "neutral": 0.5 * (m + f)}


def _san(classifier: bool, size: int = S) -> SANAutoencoder:
    torch.manual_seed(1)
    clf = None
    if classifier:
        clf = GrayscaleAdapter(GenderClassifier("small_cnn", width=4, in_channels=1), 0.5, 0.25)
        clf.train()
        with torch.no_grad():  # non-trivial batch-norm statistics
            clf(torch.rand(16, 1, size, size))
    m = SANAutoencoder(_protos(size), image_size=size, decoder_channels=(6, 5), gender_classifier=clf)
    with torch.no_grad():  # a combiner that gives SM / NT / OP visibly different outputs
        m.combiner.weight[0, -3:] += 3.0 * torch.tensor([1.0, -2.0, 1.5]).view(3, 1, 1)
    return m.eval()


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[bool, tuple[SANAutoencoder, Path]]:
    out = {}
    for classifier in (False, True):
        m = _san(classifier)
        d = tmp_path_factory.mktemp(f"san_clf{int(classifier)}")
        facecore.export_model(m, d)
        out[classifier] = (m, d)
    return out


def _luma(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(LUMA).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _eager(m: SANAutoencoder, rgb: torch.Tensor, gender: torch.Tensor) -> dict[str, torch.Tensor]:
    """The eager model's perturbed faces: the reference every export is compared with."""
    x = _luma(rgb)
    with torch.no_grad():
        return {mode: m.anonymize(x, mode, gender) for mode in MODES}


def _rgb(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, S, S, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ export


def test_export_metadata_records_the_san(exports):
    for classifier, (m, d) in exports.items():
        meta = json.loads((d / "metadata.json").read_text())
        assert meta["task"] == "san" and meta["model"]["class"] == "SANAutoencoder"
        assert meta["output_keys"] == ["sm", "nt", "op", "gender", "gender_prob"]
        san = meta["san"]
        assert san["image_size"] == S and san["modes"] == list(MODES) and san["default_mode"] == "op"
        assert san["grayscale"]["luma"] == list(LUMA)
        assert san["gender"]["values"] == {"0": "male", "1": "female",
                                           "-1": "unknown: the embedded gender classifier picks it"}
        assert san["gender_classifier"] is classifier
        assert san["output"]["shape"] == [-1, 1, S, S]
        pre = PreprocessConfig.from_dict(meta["preprocess"])
        assert pre == PreprocessConfig(input_size=S, mean=(0.0,), std=(1.0,), grayscale=True)
        assert meta["outputs"]["op"]["shape"] == [-1, 1, S, S]
        for name in ("model.pt", "model.pt2"):
            digest = hashlib.sha256((d / name).read_bytes()).hexdigest()
            assert meta["files"][name]["sha256"] == digest
        # prototypes travel as buffers of the exported module
        sd = torch.jit.load(str(d / "model.pt")).state_dict()
        torch.testing.assert_close(sd["model.prototype_female"], m.prototype_female)
        assert (meta["model"]["config"]["gender_classifier"] is not None) is classifier


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
@pytest.mark.parametrize("classifier", [False, True])
def test_round_trip_equals_the_eager_model(exports, fmt, classifier):
    m, d = exports[classifier]
    p = facecore.load(d, format=fmt)
    assert p.task == "san" and p.has_gender_classifier is classifier
    for n in (1, 5):  # the example batches were 2 and 3: the batch is dynamic
        rgb = _rgb(n, seed=10 + n)
        g = (torch.arange(n) % 2).float()
        want = _eager(m, rgb, g)
        got = p.san_outputs(rgb, g)
        for mode in MODES:
            torch.testing.assert_close(got[mode], want[mode], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(p.anonymize(rgb, mode, g, as_tensor=True), want[mode],
                                       rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["gender"], g)
        assert bool(got["gender_prob"].isnan().all()) is not classifier
    assert not torch.allclose(want["op"], want["sm"], atol=1e-3)


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_embedded_classifier_picks_unknown_genders(exports, fmt):
    m, d = exports[True]
    p = facecore.load(d, format=fmt)
    rgb = _rgb(6, seed=3)
    with torch.no_grad():
        want = m.serve(_luma(rgb))  # the eager model's own classifier path
    got = p.san_outputs(rgb)  # no gender: the classifier picks every one
    for k in ("sm", "nt", "op", "gender", "gender_prob"):
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    # mixed: given genders are kept, unknown ones (None / -1) are picked
    given = [1, None, 0, -1, "female", None]
    mixed = p.san_outputs(rgb, given)
    expect = torch.tensor([1.0, want["gender"][1], 0.0, want["gender"][3], 1.0, want["gender"][5]])
    torch.testing.assert_close(mixed["gender"], expect)
    torch.testing.assert_close(mixed["op"], _eager(m, rgb, expect)["op"], rtol=1e-5, atol=1e-6)


def test_torchscript_in_a_fresh_process(exports, tmp_path, fresh_python):
    m, d = exports[True]
    rgb = _rgb(4, seed=7)
    g = torch.tensor([0.0, 1.0, -1.0, 1.0])
    torch.save((rgb, g), tmp_path / "in.pt")
    out = fresh_python(
        f"""
        import json, torch, facecore
        p = facecore.load({str(d)!r}, format="torchscript")
        rgb, g = torch.load("in.pt")
        r = p.san_outputs(rgb, [0, 1, None, "female"])
        raw = p.module(rgb, g)  # the program itself: images + gender [N], -1 = unknown
        print(json.dumps({{k: v.tolist() for k, v in r.items()}}))
        print(json.dumps({{k: v.tolist() for k, v in raw.items()}}))
        """
    )
    lines = out.strip().splitlines()
    got, raw = json.loads(lines[-2]), json.loads(lines[-1])
    with torch.no_grad():
        picked = m.serve(_luma(rgb))["gender"]
    used = torch.tensor([0.0, 1.0, float(picked[2]), 1.0])
    want = _eager(m, rgb, used)
    for mode in MODES:
        torch.testing.assert_close(torch.tensor(got[mode]), want[mode], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor(raw[mode]), want[mode], rtol=1e-5, atol=1e-6)
    assert got["gender"] == used.tolist() == raw["gender"]


def test_tampered_export_is_refused(exports, tmp_path):
    import shutil

    _, d = exports[False]
    copy = tmp_path / "san"
    shutil.copytree(d, copy)
    data = bytearray((copy / "model.pt2").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.pt2").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="model.pt2 does not match its SHA-256"):
        facecore.load(copy, format="export")
    facecore.load(copy, format="torchscript")  # the untouched file still loads


def test_export_checks_the_san_preprocess(tmp_path):
    m = _san(False)
    with pytest.raises(ValueError, match="must be the SAN's image_size"):
        facecore.export_model(m, tmp_path, preprocess=PreprocessConfig(input_size=32, mean=(0.0,), std=(1.0,)))
    with pytest.raises(ValueError, match="mean 0 and std 1"):
        facecore.export_model(m, tmp_path, preprocess=PreprocessConfig(input_size=S, mean=(0.5,), std=(0.25,)))
    with pytest.raises(ValueError, match="mean 0 and std 1"):
        facecore.export_model(m, tmp_path, preprocess=PreprocessConfig(input_size=S))  # RGB
    with pytest.raises(ValueError, match="preprocess is required"):
        facecore.export_model(GenderClassifier("small_cnn", width=4), tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written on failure
    # an explicit grayscale spec with a resize and crop is kept as given
    pre = PreprocessConfig(input_size=S, resize=20, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                           grayscale=True, crop_fraction=0.8)
    facecore.export_model(m, tmp_path, preprocess=pre, formats=["torchscript"])
    assert facecore.load(tmp_path).preprocess_config == pre


# ------------------------------------------------------------------ Predictor.anonymize


@pytest.fixture(scope="module")
def eager_predictor(exports) -> tuple[SANAutoencoder, Predictor]:
    m, _ = exports[False]
    return m, Predictor.from_model(m)  # a SAN's preprocess defaults to its input


def test_anonymize_accepts_every_input_form(eager_predictor, tmp_path):
    m, p = eager_predictor
    rgb8 = (torch.rand(3, S, S, generator=torch.Generator().manual_seed(5)) * 255).round().to(torch.uint8)
    arr = rgb8.permute(1, 2, 0).numpy()
    Image.fromarray(arr).save(tmp_path / "face.png")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    gray8 = np.array(Image.fromarray(arr).convert("L"))
    female = torch.tensor([1.0])
    # 8-bit sources are converted by Pillow (convert("L"), as the training readers do); float
    # sources by the float luma; both are 0.299 R + 0.587 G + 0.114 B
    from_pil = _eager(m, torch.from_numpy(gray8).float().expand(1, 3, S, S) / 255.0, female)
    from_float = _eager(m, rgb8[None].float() / 255.0, female)
    forms = {
        "path": (tmp_path / "face.png", from_pil),
        "str path": (str(tmp_path / "face.png"), from_pil),
        "bytes": (buf.getvalue(), from_pil),
        "PIL RGB": (Image.fromarray(arr), from_pil),
        "PIL L": (Image.fromarray(gray8), from_pil),
        "numpy uint8 HWC": (arr, from_pil),
        "numpy uint8 HW": (gray8, from_pil),
        "tensor uint8 CHW": (rgb8, from_pil),
        "list": ([Image.fromarray(arr)], from_pil),
        "numpy float HWC": (arr.astype(np.float32) / 255.0, from_float),
        "tensor CHW": (rgb8.float() / 255.0, from_float),
        "tensor batch": (rgb8[None].float() / 255.0, from_float),
    }
    for mode in MODES:
        for name, (image, want) in forms.items():
            [got] = p.anonymize(image, mode, gender="female")
            expected = (want[mode][0, 0] * 255).round().to(torch.uint8).numpy()
            assert got.dtype == np.uint8 and got.shape == (S, S), name
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} / {mode}")
            exact = p.anonymize(image, mode, gender=1, as_tensor=True)
            torch.testing.assert_close(exact, want[mode], rtol=1e-5, atol=1e-6)
    assert float((from_pil["op"] - from_float["op"]).abs().max()) < 0.02  # 8-bit luma rounding
    # a batch tensor [N, 3, S, S] is N images; gender per image
    batch = _rgb(4, seed=9)
    g = torch.tensor([0, 1, 1, 0])
    got = p.anonymize(batch, "nt", g)
    assert len(got) == 4
    ref = _eager(m, batch, g.float())["nt"]
    np.testing.assert_array_equal(np.stack(got), np.stack(Predictor.to_uint8(ref)))
    # larger images are resized and centre-cropped like predict's inputs
    big = Image.fromarray(arr).resize((4 * S, 4 * S))
    assert p.anonymize(big, "op", 0)[0].shape == (S, S)
    assert p.anonymize([], "op", 0) == []


@pytest.mark.parametrize(
    "gender, n",
    [("male", 2), ("FEMALE", 2), (0, 2), (1.0, 1), ([0, "female", 1], 3), (np.array([1, 0]), 2),
     (torch.tensor([1.0, 0.0]), 2), (np.int64(1), 2)],
)
def test_gender_forms(eager_predictor, gender, n):
    _, p = eager_predictor
    g = p.gender_tensor(gender, n)
    assert g.shape == (n,) and g.dtype == torch.float32
    names = {"male": 0.0, "female": 1.0}
    seq = gender.tolist() if hasattr(gender, "tolist") and np.ndim(gender) else gender
    values = seq if isinstance(seq, list) else [seq] * n
    want = [names[v.lower()] if isinstance(v, str) else float(v) for v in values]
    assert g.tolist() == want


def test_anonymize_errors(eager_predictor, exports, tmp_path):
    _, p = eager_predictor
    x = _rgb(2, seed=1)
    with pytest.raises(ValueError, match=r"mode must be one of 'sm' \| 'nt' \| 'op'.*got 'OP'"):
        p.anonymize(x, "OP", 0)
    with pytest.raises(ValueError, match="one value per image: got 3 values for 2 images"):
        p.anonymize(x, "op", [0, 1, 1])
    for bad in (2, 0.5, "x", True, [0, 3]):
        with pytest.raises(ValueError, match="gender must be 0 / 'male', 1 / 'female'"):
            p.anonymize(x, "op", bad)
    with pytest.raises(TypeError, match="gender must be"):
        p.anonymize(x, "op", {"a": 1})
    with pytest.raises(ValueError, match="gender is required: SANAutoencoder has no embedded gender classifier"):
        p.anonymize(x, "op")
    with pytest.raises(ValueError, match="gender is required"):
        p.anonymize(x, "op", [0, None])
    with pytest.raises(ValueError, match="is a SAN .* use Predictor.anonymize"):
        p.predict(x)
    # the programs refuse an unknown gender themselves when there is no classifier (C++ users)
    for fmt in ("torchscript", "export"):
        raw = facecore.load(exports[False][1], format=fmt)
        with pytest.raises(RuntimeError, match="gender is required"):
            raw.run(x, torch.tensor([0.0, -1.0]))
    clf = GenderClassifier("small_cnn", width=4)
    other = Predictor.from_model(clf.eval(), preprocess=PreprocessConfig(input_size=S))
    with pytest.raises(ValueError, match="is a gender model, not a SAN"):
        other.anonymize(x, "op", 0)
    with pytest.raises(ValueError, match="gender applies to SAN models only"):
        other.run(x, torch.zeros(2))


# ------------------------------------------------------------------ facecore anonymize


def _real_faces(london_dir: Path, n: int) -> tuple[list[Path], list[int]]:
    import csv

    rows = list(csv.DictReader((london_dir / "labels.csv").open()))
    rows = [r for r in rows if r["expression"] == "neutral"][60 : 60 + n]  # people not in training
    return [london_dir / r["file"] for r in rows], [0 if r["gender"].startswith("m") else 1 for r in rows]


@pytest.fixture(scope="module")
def real_san(london_dir, tmp_path_factory) -> tuple[SANAutoencoder, Path]:
    """A SAN at 32 px with prototypes from London faces, briefly trained to reconstruct the
    first 48 (people 1..48 at most; ~4 s) so its outputs are faces, exported with its default
    (grayscale) preprocessing."""
    from facecore.data import LondonFaces, compute_gender_prototypes
    from facecore.data.transforms import eval_pipeline

    size = 32
    pre = PreprocessConfig(input_size=size)
    ds = LondonFaces(london_dir, transform=eval_pipeline(pre))
    protos = compute_gender_prototypes(ds, max_samples=48)
    torch.manual_seed(0)
    m = SANAutoencoder(protos, image_size=size, decoder_channels=(16, 8))
    x = _luma(torch.stack([ds[i][0] for i in range(48)]))
    g = torch.tensor([int(ds[i][1]["gender"]) for i in range(48)])
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(150):
        loss = (m(x, g)[0] - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    d = tmp_path_factory.mktemp("san_real")
    facecore.export_model(m, d)
    return m, d


def _digests(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


@pytest.mark.slow
def test_cli_anonymizes_real_jpegs(real_san, london_dir, fairface_dir, tmp_path, capsys):
    m, d = real_san
    faces, genders = _real_faces(london_dir, 4)
    ff = sorted(fairface_dir.glob("*.jpg"))[:2]
    images = faces + ff
    before = _digests(images)
    out = tmp_path / "anon"
    gender = "female"
    assert main(["anonymize", "--model", str(d), *map(str, images), "--out", str(out),
                 "--gender", gender, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == [str(p) for p in images]
    assert _digests(images) == before  # inputs untouched
    p = facecore.load(d)
    want = p.anonymize(images, "op", gender)
    for row, img, ref in zip(rows, images, want):
        target = out / f"{img.stem}_op.jpg"
        assert row["output"] == str(target) and row["gender"] == "female"
        with Image.open(target) as im:
            assert im.format == "JPEG" and im.mode == "L" and im.size == (32, 32)
            got = np.asarray(im).astype(np.float64)
        assert np.abs(got - ref).mean() < 3.0  # JPEG quality 95 of what the API returns
    # the reconstruction-trained SAN's same-gender output is the input face, not another one
    assert main(["anonymize", "-m", str(d), *map(str, faces), "--out", str(out), "--mode", "sm",
                 "--gender", "0"]) == 0
    capsys.readouterr()
    sm = np.stack([np.asarray(Image.open(out / f"{f.stem}_sm.jpg")).astype(np.float64) for f in faces])
    src = np.stack([np.asarray(Image.open(f).convert("L").resize((32, 32), Image.BILINEAR)).astype(np.float64)
                    for f in faces])
    err = np.abs(sm[:, None] - src[None]).mean(axis=(2, 3))  # [output, input]
    assert (err.argmin(axis=1) == np.arange(len(faces))).all(), err
    if importlib.util.find_spec("cv2") is not None:  # the optional face detector crops first
        from facecore.serving.detect import face_crop_box, largest_face

        img = Image.open(faces[0]).convert("RGB")
        canvas = Image.new("RGB", (384, 384), (128, 128, 128))
        canvas.paste(img, (100, 90))  # the face off-centre on a larger photo
        box = largest_face(canvas)
        assert box is not None
        crop = canvas.crop(face_crop_box(box, canvas.size, p.face_margin))
        [got] = p.anonymize(canvas, "op", gender, detect=True)
        np.testing.assert_array_equal(got, p.anonymize(crop, "op", gender)[0])
        assert not np.array_equal(got, p.anonymize(canvas, "op", gender)[0])
    # PNG in -> PNG out, exactly what the API returns
    png = tmp_path / "in" / "face.png"
    png.parent.mkdir()
    Image.open(faces[0]).save(png)
    assert main(["anonymize", "-m", str(d), str(png), "--out", str(png.parent), "--mode", "nt",
                 "--gender", "male", "--format", "export"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith("face_nt.png (mode nt, gender male: given)")
    got = np.asarray(Image.open(png.parent / "face_nt.png"))
    np.testing.assert_array_equal(got, p.anonymize(png, "nt", 0)[0])


def test_cli_errors(exports, tmp_path, capsys):
    _, d = exports[False]
    _, d_clf = exports[True]
    folder = tmp_path / "faces"
    (folder / "b").mkdir(parents=True)
    arr = (np.random.default_rng(0).random((S, S, 3)) * 255).astype(np.uint8)
    for name in ("x.png", "x_op.png", "b/x.png"):
        Image.fromarray(arr).save(folder / name)
    before = _digests([folder / "x.png", folder / "x_op.png"])
    gender_model = tmp_path / "gender"
    facecore.export_model(GenderClassifier("small_cnn", width=4).eval(), gender_model,
                          preprocess=PreprocessConfig(input_size=S), formats=["torchscript"])

    printed: list[str] = []

    def run(*args: str) -> tuple[int, str]:
        code = main(["anonymize", *args])
        captured = capsys.readouterr()
        err = captured.err.strip()
        printed.append(captured.out)
        assert "\n" not in err and (code == 0 or err.startswith("facecore: error: "))
        return code, err

    x = str(folder / "x.png")
    out = str(tmp_path / "out")
    cases = [
        (["-m", str(d), x, "--out", out], "--gender is required"),
        (["-m", str(gender_model), x, "--out", out, "--gender", "0"], "is a gender model, not a SAN"),
        (["-m", str(d), x, "--out", out, "--gender", "2"], "argument --gender: invalid choice"),
        (["-m", str(d), x, "--out", out, "--gender", "0", "--mode", "xx"], "argument --mode: invalid choice"),
        (["-m", str(d), str(folder / "nope.png"), "--out", out, "--gender", "0"], "image not found"),
        (["-m", str(tmp_path / "nomodel"), x, "--out", out, "--gender", "0"], "model not found"),
        (["-m", str(d), x, str(folder / "b" / "x.png"), "--out", out, "--gender", "0"], "would both be written"),
        (["-m", str(d), x, str(folder / "x_op.png"), "--out", str(folder), "--gender", "0"],
         "is an input image and would be overwritten"),
        (["-m", str(d), x, "--out", str(folder / "x.png"), "--gender", "0"], "is not a folder"),
    ]
    for args, msg in cases:
        code, err = run(*args)
        assert code == 2 and msg in err, (args, err)
    assert not (tmp_path / "out").exists()
    assert main(["predict", "--model", str(d), x]) == 1  # a SAN does not predict
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is a SAN (privacy) model" in err and "facecore anonymize" in err
    # out = the input folder is fine when nothing collides; an existing output needs --overwrite
    assert run("-m", str(d), x, "--out", str(folder), "--gender", "1", "--mode", "sm")[0] == 0
    assert (folder / "x_sm.png").is_file()
    code, err = run("-m", str(d), x, "--out", str(folder), "--gender", "1", "--mode", "sm")
    assert code == 2 and "exists" in err and "--overwrite" in err
    assert run("-m", str(d), x, "--out", str(folder), "--gender", "1", "--mode", "sm", "--overwrite")[0] == 0
    assert _digests([folder / "x.png", folder / "x_op.png"]) == before
    # with the embedded classifier no --gender is needed; the picked gender is printed
    assert run("-m", str(d_clf), x, "--out", out)[0] == 0
    assert "(mode op, gender " in printed[-1] and ": classifier, P(female)=" in printed[-1]
    assert (tmp_path / "out" / "x_op.png").is_file()
