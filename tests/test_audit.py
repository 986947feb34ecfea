"""cxredge audit: quiet on a same-source control, loud when one class went through JPEG q75; JPEG quality
from quantization tables; planted duplicates; the numpy probe against scikit-learn; bad input."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxredge.cli.main import app

runner = CliRunner()
CONTROL_CLASSES = ("a", "b", "c")
PER_CLASS = 40


def control_image(seed: int) -> np.ndarray:
    """One generator for every class: a chest-like film (two dark lung fields of random size and place
    on a random smooth exposure field) with detector noise. The class label never enters it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:224, 0:224] / 224.0
    img = np.full((224, 224), 140.0 + rng.normal(0, 10))
    for _ in range(6):  # smooth exposure field: random low-frequency waves
        fx, fy = rng.uniform(-3, 3, 2)
        img += rng.uniform(5, 25) * np.cos(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    for side in (-1, 1):
        cx, cy = 0.5 + side * rng.uniform(0.15, 0.25), rng.uniform(0.4, 0.6)
        lung = ((xx - cx) / rng.uniform(0.08, 0.16)) ** 2 + ((yy - cy) / rng.uniform(0.2, 0.35)) ** 2 < 1
        img -= lung * rng.uniform(40, 90)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg75(img: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=75)
    return np.asarray(Image.open(buf).convert("L"))


def make_control(root: Path, jpeg_class: str | None = None, keep_jpg: bool = False) -> Path:
    """DIR/<class>/*: every class drawn by control_image and saved as PNG; `jpeg_class` first goes
    through JPEG q75 (then PNG, as the Kermany images did, or left as .jpg with keep_jpg)."""
    for label, cls in enumerate(CONTROL_CLASSES):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            img = control_image(10_000 * label + i)
            if cls == jpeg_class and keep_jpg:
                Image.fromarray(img).save(root / cls / f"{cls}{i}.jpg", "JPEG", quality=75)
                continue
            Image.fromarray(jpeg75(img) if cls == jpeg_class else img).save(root / cls / f"{cls}{i}.png")
    return root


def run_audit(data: Path, out: Path, *extra: str) -> dict:
    res = runner.invoke(app, ["audit", str(data), "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return json.loads((out / "audit.json").read_text())


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
    base = tmp_path_factory.mktemp("audit_controls")
    return {name: run_audit(make_control(base / name, *args), base / f"{name}_out")
            for name, args in (("same", ()), ("png_after_jpeg", ("c",)), ("jpg", ("c", True)))} | {"base": base}


# --- the must-show control: quiet on one source, loud on the JPEG class ------------------------------

def test_same_generator_same_saving_gives_no_warning(controls):
    a = controls["same"]
    assert a["warnings"] == [], a["warnings"]
    assert [p["classes"] for p in a["probe"]["pairs"]] == [["a", "b"], ["a", "c"], ["b", "c"]]
    for p in a["probe"]["pairs"]:
        assert not p["flagged"] and p["chance"] == 0.5 and p["n"] == 2 * PER_CLASS
        assert max(p["accuracy_by_cue"].values()) < 0.75, p
    assert a["formats"] == {c: {"PNG": PER_CLASS} for c in CONTROL_CLASSES}
    assert all(a["duplicates"][k] == [] for k in ("exact", "near", "cross_class", "cross_split"))


def test_one_class_through_jpeg75_then_png_is_named(controls):
    a = controls["png_after_jpeg"]
    assert a["formats"]["c"] == {"PNG": PER_CLASS}  # the files alone do not show it ...
    shortcuts = [w for w in a["warnings"] if w["kind"] == "shortcut"]
    assert {tuple(w["classes"]) for w in shortcuts} == {("a", "c"), ("b", "c")}  # ... the pixels do
    for w in shortcuts:  # JPEG's blocks, and the detector noise it smoothed away (seen in the borders)
        assert w["cue"] in ("jpeg_blocks", "borders") and "8x8 JPEG-block artifacts" in w["message"]
        assert "a model may learn the source" in w["message"]
    pairs = {tuple(p["classes"]): p for p in a["probe"]["pairs"]}
    assert pairs[("a", "c")]["accuracy_by_cue"]["jpeg_blocks"] >= 0.95
    assert not pairs[("a", "b")]["flagged"]
    assert not [w for w in a["warnings"] if w["kind"] == "format"]


def test_one_class_left_as_jpg_gets_a_format_warning_with_its_quality(controls):
    a = controls["jpg"]
    assert a["formats"]["c"] == {"JPEG": PER_CLASS}
    assert a["files"]["all"]["c"]["jpeg_quality"] == {"75": PER_CLASS}
    fmt = [w for w in a["warnings"] if w["kind"] == "format"]
    assert {tuple(w["classes"]) for w in fmt} == {("a", "c"), ("b", "c")}
    assert all("1.00 accuracy" in w["message"] for w in fmt)
    assert {tuple(w["classes"]) for w in a["warnings"] if w["kind"] == "shortcut"} == {("a", "c"), ("b", "c")}


def test_outputs_md_html_and_report_section(controls, tmp_path):
    out = controls["base"] / "png_after_jpeg_out"
    md = (out / "audit.md").read_text()
    assert "**warning (shortcut)**: a vs c" in md and "| a vs b |" in md
    page = (out / "audit.html").read_text()
    assert page.count("data:image/png;base64,") == 3 * 6 and "class='warn'" in page
    from cxredge.edge.report.page import build, to_markdown

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(out / "audit.json", run / "audit.json")
    text = to_markdown(build(run, [], tmp_path / "assets"), tmp_path)
    assert "Data audit" in text and "Warning (shortcut): a vs c" in text


# --- JPEG quality ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_quality_matches_pillow_saves(mode, tmp_path):
    from cxredge.edge.audit.facts import read_image

    img = Image.fromarray(control_image(1)).convert(mode)
    for q in (5, 20, 50, 75, 90, 95, 100):
        img.save(tmp_path / f"q{q}.jpg", "JPEG", quality=q)
        facts, _, _ = read_image(tmp_path / f"q{q}.jpg")
        assert (facts.format, facts.jpeg_quality, facts.jpeg_exact) == ("JPEG", q, True)


def test_jpeg_quality_of_non_ijg_tables_is_approximate():
    from cxredge.edge.audit.jpeg import LUMA, ZIGZAG, estimate_quality, ijg_table

    table = ijg_table(LUMA, 80).copy()
    table[10] += 3  # an encoder with its own tables
    est = estimate_quality({0: table.tolist()})
    assert est["quality"] == 80 and not est["exact"] and est["distance"] > 0
    zigzag = np.empty(64, dtype=np.int64)
    zigzag[:] = ijg_table(LUMA, 30)[ZIGZAG]  # what older Pillow returned
    assert estimate_quality({0: zigzag.tolist()}) == {"quality": 30, "exact": True, "distance": 0.0}
    assert estimate_quality(None) is None


# --- duplicates -----------------------------------------------------------------------------------

def test_planted_duplicates_are_found_by_path(tmp_path):
    root = tmp_path / "d"
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        for label, cls in enumerate(("x", "y")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(control_image(1000 * label + 100 * len(split) + i)).save(root / split / cls
                                                                                         / f"{i}.png")
    src = root / "train" / "x" / "0.png"
    shutil.copy(src, root / "test" / "x" / "copy.png")  # exact, across splits
    img = np.asarray(Image.open(root / "train" / "x" / "1.png"))
    Image.fromarray(np.clip(img.astype(int) + 6, 0, 255).astype(np.uint8)).save(root / "train" / "y" / "bright.png")
    Image.fromarray(jpeg75(np.asarray(Image.open(root / "train" / "y" / "2.png")))).save(root / "train" / "y"
                                                                                         / "re.png")
    a = run_audit(root, tmp_path / "out")
    d = a["duplicates"]
    assert d["exact"] == [["train/x/0.png", "test/x/copy.png"]]
    assert sorted(map(sorted, d["near"])) == [["train/x/1.png", "train/y/bright.png"],
                                              ["train/y/2.png", "train/y/re.png"]]
    assert d["cross_class"] == [["train/x/1.png", "train/y/bright.png"]]
    assert d["cross_split"] == [["train/x/0.png", "test/x/copy.png"]]
    kinds = {w["kind"]: w for w in a["warnings"]}
    assert (kinds["label_conflict"]["classes"] == ["x", "y"]
            and "train/y/bright.png" in kinds["label_conflict"]["message"])
    assert "test/x/copy.png" in kinds["leakage"]["message"] and "test/train: 1" in kinds["leakage"]["message"]


def test_hamming_search_equals_brute_force():
    from cxredge.edge.audit.duplicates import hamming_pairs, popcount

    rng = np.random.default_rng(0)
    h = rng.integers(0, 2 ** 63, size=(300, 4), dtype=np.uint64)
    h[7] = h[3]
    h[7, 0] ^= np.uint64(0b1011)  # 3 bits apart
    i, j, d = hamming_pairs(h, 110, block=64)
    bits = np.unpackbits(h.view(np.uint8), axis=1)
    full = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    ii, jj = np.nonzero(np.triu(full <= 110, 1))
    assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(ii.tolist(), jj.tolist())) and len(ii) > 0
    assert (d == full[i, j]).all() and (3, 7, 3) in set(zip(i.tolist(), j.tolist(), d.tolist()))
    assert (popcount(h) == bits.reshape(300, 4, 64).sum(-1)).all()


# --- the probe's logistic regression against scikit-learn (test-only dependency) -------------------

@pytest.mark.parametrize("k", [2, 4])
def test_logistic_regression_matches_sklearn(k):
    sk = pytest.importorskip("sklearn.linear_model")
    from cxredge.edge.audit import logreg

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 12)) * rng.uniform(0.1, 20, 12) + rng.normal(size=12)
    y = ((x[:, 0] - x[:, 0].mean()) / x[:, 0].std() + rng.normal(size=400) > 0).astype(int)
    if k == 4:
        y = y + 2 * (x[:, 3] > np.median(x[:, 3]))
    l2 = 1e-2
    ours = logreg.fit(x, y, k, l2)
    z = (x - ours.mean) / ours.scale
    # sklearn minimises C * sum(log-loss) + |w|^2 / 2: C = 1 / (n l2), and 2 / (n l2) for the binary form
    ref = sk.LogisticRegression(C=(2 if k == 2 else 1) / (len(x) * l2), tol=1e-10, max_iter=10_000).fit(z, y)
    np.testing.assert_allclose(ours.proba(x), ref.predict_proba(z), atol=1e-4)


def test_folds_are_stratified_and_seeded():
    from cxredge.edge.audit.logreg import stratified_folds

    y = np.repeat([0, 1, 2], [50, 30, 20])
    f = stratified_folds(y, 5, seed=3)
    assert (f == stratified_folds(y, 5, seed=3)).all() and not (f == stratified_folds(y, 5, seed=4)).all()
    for c, n in ((0, 50), (1, 30), (2, 20)):
        assert (np.bincount(f[y == c], minlength=5) == n // 5).all()


def test_fast_audit_from_decoded_inputs_equals_the_file_audit(controls):
    from cxredge.edge.audit import audit, collect_files, collect_loaded
    from cxredge.edge.data.dataset import load_split, scan

    ds = scan(controls["base"] / "png_after_jpeg")
    loaded = {s: load_split(ds, s) for s in ("train", "val", "test")}
    fast, full = (audit(ds, rows) for rows in (collect_loaded(ds, loaded), collect_files(ds)))
    assert fast["probe"]["pairs"] == full["probe"]["pairs"]  # 224x224 gray PNGs: the same pixels either way
    assert fast["warnings"] == full["warnings"] and fast["duplicates"] == full["duplicates"]


# --- bad input: one line, exit 1 ------------------------------------------------------------------

def one_line_error(args, *words):
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert "Traceback" not in res.output and len(errors) == 1, res.output
    for w in words:
        assert w in errors[0], res.output
    return res


def test_bad_input(tmp_path):
    one_line_error(["audit", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "missing", "not found")
    (tmp_path / "empty").mkdir()
    one_line_error(["audit", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], "no class folders")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "b").mkdir()
    one_line_error(["audit", str(tmp_path / "noimg"), "--out", str(tmp_path / "o")], "has no images")
    data = make_dataset_small(tmp_path / "bad")
    (data / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    one_line_error(["audit", str(data), "--out", str(tmp_path / "o")], "broken.png", "--skip-bad")
    assert not (tmp_path / "o" / "audit.json").exists()
    a = run_audit(data, tmp_path / "o", "--skip-bad")
    assert a["unreadable"] == ["a/broken.png"] and sum(sum(c.values()) for c in a["counts"].values()) == 16
    one_line_error(["audit", str(data), "--folds", "1"], "--folds 1")
    one_line_error(["audit", str(data), "--near-threshold", "300"], "--near-threshold 300")


def make_dataset_small(root: Path) -> Path:
    for label, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(control_image(500 * label + i)).save(root / cls / f"{i}.png")
    return root


def test_file_facts_of_16bit_rgba_and_colour_files(tmp_path):
    from cxredge.edge.audit.facts import read_image, summarise

    gray = control_image(3)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit gray
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    Image.fromarray(rgba, "RGBA").resize((300, 200)).save(tmp_path / "rgba.png")
    tinted = np.dstack([gray, gray, np.clip(gray.astype(int) + 30, 0, 255).astype(np.uint8)])
    Image.fromarray(tinted).save(tmp_path / "tinted.png")
    deep, native, work = read_image(tmp_path / "deep.png")
    assert deep.mode == "I;16" and native.dtype == np.uint8 and native.max() == 255 and work.shape == (224, 224)
    wide, native, work = read_image(tmp_path / "rgba.png")
    assert (wide.mode, wide.width, wide.height, wide.colour) == ("RGBA", 300, 200, False)
    assert native.shape == (200, 300) and work.shape == (224, 224)
    tint, _, _ = read_image(tmp_path / "tinted.png")
    assert tint.colour is True
    s = summarise([deep, wide, tint])
    assert s["modes"] == {"I;16": 1, "RGBA": 1, "RGB": 1} and s["rgb_really_colour"] == 1
    assert s["aspect"] == {"min": 1.0, "median": 1.0, "max": 1.5}


def test_probe_runs_on_one_blas_thread_and_restores_the_count():
    from cxredge.edge.audit import blas

    before = blas.thread_counts()
    with blas.single_thread():
        assert all(n == 1 for n in blas.thread_counts())
    assert blas.thread_counts() == before
