"""Label tables (cxredge/edge/data/table.py) and patient-level splits (cxredge/edge/data/patients.py).

The RSNA and NIH fixtures are written from the headers those tables ship with (RSNA Pneumonia Detection
Challenge `stage_2_detailed_class_info.csv`; NIH ChestX-ray14 `Data_Entry_2017.csv`)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from dicom_fixtures import real_png, write_dicom
from PIL import Image

from cxredge.edge.data.dataset import SPLITS, scan, scan_recorded
from cxredge.edge.data.images import load_image
from cxredge.edge.data.table import DataOptions, map_label, parse_label_map
from cxredge.errors import CxrError
from conftest import invoke, read, synth_image

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")


def patients_per_split(ds):
    return {s: {ds.patients[p] for p, _ in ds.splits[s]} for s in SPLITS}


def assert_no_patient_in_two_splits(ds):
    per = patients_per_split(ds)
    assert all(not (per[a] & per[b]) for a in SPLITS for b in SPLITS if a < b)
    assert ds.patient_leaks() == {}


def test_label_map_text_and_json(tmp_path):
    m = parse_label_map("Viral Pneumonia=Pneumonia, No Finding=Normal,Other=-")
    assert m == {"Viral Pneumonia": "Pneumonia", "No Finding": "Normal", "Other": None}
    f = tmp_path / "map.json"
    f.write_text(json.dumps({"Viral Pneumonia": "Pneumonia", "Other": None}))
    assert parse_label_map(str(f)) == {"Viral Pneumonia": "Pneumonia", "Other": None}
    with pytest.raises(CxrError, match="--label-map .*not FROM=TO"):
        parse_label_map("Viral")


@pytest.mark.parametrize("raw, mapping, expect", [
    ("No Finding", "No Finding=Normal", ("Normal", "kept")),
    ("Other", "Other=-", (None, "dropped")),
    ("Pneumonia|Infiltration", "", (None, "multi-label")),
    ("Pneumonia|Infiltration", "Infiltration=-", ("Pneumonia", "kept")),
    ("Pneumonia|Infiltration", "Pneumonia=Pneumonia,*=-", ("Pneumonia", "kept")),
    ("Effusion|Infiltration", "Effusion|Infiltration=Effusion", ("Effusion", "kept")),
    ("Effusion|Infiltration", "Pneumonia=Pneumonia,*=-", (None, "dropped")),
    ("Viral|Bacterial", "Viral=Pneumonia,Bacterial=Pneumonia", ("Pneumonia", "kept")),
])
def test_map_label(raw, mapping, expect):
    assert map_label(raw, parse_label_map(mapping)) == expect


def write_pngs(folder, names, label_of):
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        Image.fromarray(synth_image(label_of(n), i, size=64), "L").save(folder / n)


def nih_fixture(root):
    """30 patients, 1-3 follow-ups each; every 5th patient has a multi-label film and a dropped label."""
    lines, names, label_of = [NIH_HEADER], [], {}
    findings = ["No Finding", "Pneumonia", "Effusion"]
    for pid in range(1, 31):
        for follow in range(1 + pid % 3):
            name = f"{pid:08d}_{follow:03d}.png"
            label = findings[pid % 3]
            if pid % 5 == 0 and follow == 0:
                label = "Pneumonia|Infiltration|Effusion"
            if pid % 7 == 0 and follow == 0:
                label = "Hernia"
            view = "PA" if pid % 2 else "AP"
            lines.append(f"{name},{label},{follow},{pid},{40 + pid},M,{view},2500,2048,0.143,0.143,")
            names.append(name)
            label_of[name] = findings.index(label) if label in findings else 0
    write_pngs(root / "images", names, lambda n: label_of[n])
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    return root / "Data_Entry_2017.csv"


NIH = DataOptions(path_column="Image Index", label_column="Finding Labels", patient_column="Patient ID",
                  path_pattern="images/{}", label_map="No Finding=Normal,Hernia=-")


def test_nih_chestxray14_table_as_it_ships(tmp_path):
    table = nih_fixture(tmp_path)
    ds = scan(table, seed=0, options=NIH)
    info = ds.describe()
    assert ds.classes == ("Effusion", "Normal", "Pneumonia")
    rows = sum(1 + pid % 3 for pid in range(1, 31))
    multi = len([p for p in range(1, 31) if p % 5 == 0])
    hernia = len([p for p in range(1, 31) if p % 7 == 0 and p % 5])
    assert info["table"]["rows"] == rows
    assert info["table"]["dropped_multi_label"] == multi
    assert info["table"]["dropped_by_label_map"] == hernia
    assert info["table"]["kept"] == rows - multi - hernia == sum(len(v) for v in ds.splits.values())
    assert info["patients"]["source"] == "table" and info["patients"]["split"].startswith("by patient")
    assert_no_patient_in_two_splits(ds)
    assert all(ds.splits[s] for s in SPLITS)


def test_patient_split_is_seeded_and_independent_of_the_salt(tmp_path, monkeypatch):
    import cxredge.edge.data.patients as P

    table = nih_fixture(tmp_path)
    a = scan(table, seed=1, options=NIH)
    monkeypatch.setattr(P, "_SALT", b"another salt")
    b = scan(table, seed=1, options=NIH)
    c = scan(table, seed=2, options=NIH)
    assert a.splits == b.splits and a.splits != c.splits
    assert set(a.patients.values()).isdisjoint(b.patients.values())  # keys are salted


def rsna_fixture(root):
    """stage_2_detailed_class_info.csv (patientId,class; a patient listed once per box) + <patientId>.dcm."""
    classes = ["Lung Opacity", "Normal", "No Lung Opacity / Not Normal"]
    lines = ["patientId,class"]
    pngs = ["COVID", "Normal", "Viral_Pneumonia"]
    for i in range(24):
        pid = f"{i:04x}c3a4-1b2e-4f5d-9e8a-{i:012x}"
        cls = i % 3
        lines += [f"{pid},{classes[cls]}"] * (2 if cls == 0 else 1)  # two boxes: two rows
        (root / "stage_2_train_images").mkdir(parents=True, exist_ok=True)
        write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", real_png(pngs[cls]), window=(128, 256),
                    phi={"PatientID": pid}, uid_n=i + 1, modality="CR")
    (root / "stage_2_detailed_class_info.csv").write_text("\n".join(lines) + "\n")
    return root / "stage_2_detailed_class_info.csv"


RSNA = DataOptions(path_column="patientId", label_column="class", patient_column="patientId",
                   path_pattern="stage_2_train_images/{}.dcm")


def test_rsna_pneumonia_table_as_it_ships(tmp_path):
    ds = scan(rsna_fixture(tmp_path), options=RSNA)
    assert ds.classes == ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal")
    info = ds.describe()["table"]
    assert (info["rows"], info["kept"], info["duplicate_rows_merged"]) == (32, 24, 8)
    assert_no_patient_in_two_splits(ds)
    x = np.stack([load_image(p) for p in ds.paths("test")])
    assert x.shape[1:] == (224, 224, 3) and x.std() > 10


def test_dicom_patient_id_is_used_without_a_patient_column(tmp_path):
    """Class folders of DICOMs: PatientID from the headers keeps each patient's films together."""
    for cls in ("COVID", "Normal"):
        (tmp_path / cls).mkdir()
        for pid in range(10):
            for film in range(3):
                write_dicom(tmp_path / cls / f"{pid}_{film}.dcm", real_png(cls), window=(128, 256),
                            phi={"PatientID": f"{cls}-{pid}"})
    ds = scan(tmp_path, seed=0)
    assert ds.describe()["patients"]["source"] == "DICOM PatientID"
    assert ds.describe()["patients"]["patients"] == 20
    assert_no_patient_in_two_splits(ds)


def kermany(root, n_patients=12, films=3):
    for label, cls in enumerate(("BACTERIA", "VIRUS")):
        names = [f"person{p}_{cls.lower()}_{f}.png" for p in range(n_patients) for f in range(films)]
        write_pngs(root / cls, names, lambda n, y=label: y)
    return root


def test_patient_regex_on_kermany_names(tmp_path):
    root = kermany(tmp_path)
    by_image = scan(root, seed=0)
    assert by_image.patients is None and "patients" not in by_image.describe()  # as before: image-level
    by_patient = scan(root, seed=0, options=DataOptions(patient_regex=r"person(\d+)_"))
    assert_no_patient_in_two_splits(by_patient)
    # the same regex applied to the image-level split finds the leak it had
    import cxredge.edge.data.patients as P

    assert sum(P.leaks(by_image.splits, by_patient.patients).values()) > 0


def test_given_splits_report_patients_in_two_splits(tmp_path):
    rows = ["path,label,patient_id,split"]
    names = []
    for i in range(16):
        split = ["train", "train", "val", "test"][i % 4]
        names.append(f"img{i}.png")
        rows.append(f"img{i}.png,{'ab'[i % 2]},P{i // 2},{split}")
    write_pngs(tmp_path, names, lambda n: int(n[3:-4]) % 2)
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    ds = scan(tmp_path / "t.csv")
    assert ds.layout == "table-splits"
    leaks = ds.patient_leaks()
    assert leaks == {"val/test": 4}  # P1, P3, P5, P7: one film in val, one in test
    assert ds.describe()["patients"]["leaks"] == leaks
    out = tmp_path / "audit"
    result = invoke("audit", tmp_path / "t.csv", "--out", out, "--folds", "2")
    assert result.exit_code == 0, result.output
    audit = read(out / "audit.json")
    assert any(w["kind"] == "patient_leak" and "4 patient(s)" in w["message"] for w in audit["warnings"])


@pytest.mark.parametrize("table, options, message", [
    ("path,label\n../x.png,a\n", {}, "line 2: path '../x.png' must be relative"),
    ("path,label\n/etc/passwd,a\n", {}, "line 2: path '/etc/passwd' must be relative"),
    ("file,label\nx.png,a\n", {}, "no column 'path' (has file, label); name it with --path-column"),
    ("path,label\nmissing.png,a\nmissing2.png,b\n", {}, "line 2: missing.png not found (and 1 more)"),
    ("path,label\nimg.png,a\nimg.png,b\n", {}, "lines 2 and 3: img.png is labelled both 'a' and 'b'"),
    ("path,label,split\nimg.png,a,holdout\n", {}, "line 2: split 'holdout' is not train, val or test"),
    ("path,label\nimg.png,a\n", {"patient_column": "pid"}, "--patient-column pid: --data"),
    ("path,label\nimg.png,a\n", {"label_map": "a=-"}, "no rows left (1 rows, 1 dropped by --label-map"),
    ("path,label\nimg.png,a\x00b\n", {}, "holds NUL bytes: not a text table"),
    ("path,label\n\"" + "x" * 200_000 + "\",a\n", {}, "not a CSV row (field larger than field limit"),
    ("pa\x00th,label\nimg.png,a\n", {}, "holds NUL bytes"),
])
def test_table_errors_are_one_line_naming_the_table(tmp_path, table, options, message):
    Image.fromarray(synth_image(0, 0, 32), "L").save(tmp_path / "img.png")
    (tmp_path / "t.csv").write_text(table)
    with pytest.raises(CxrError) as err:
        scan(tmp_path / "t.csv", options=DataOptions(**options))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_train_from_a_label_table_keeps_patients_apart(tmp_path):
    """`cxredge train --data TABLE.csv --patient-column`: run.json records the patient split, no leaks, and
    the split re-opened from run.json (what quantize and bench do) is the same."""
    table = nih_fixture(tmp_path / "nih")
    out = tmp_path / "run"
    result = invoke("train", "--data", table, "--out", out, "--path-column", "Image Index",
                    "--label-column", "Finding Labels", "--patient-column", "Patient ID", "--path-pattern", "images/{}",
                    "--label-map", "No Finding=Normal,Hernia=-", "--variant", "fc", "--alpha", "0.25",
                    "--weights", "none", "--epochs", "1", "--no-audit", "--seed", "4")
    assert result.exit_code == 0, result.output
    run = read(out / "run.json")
    assert run["data"]["patients"]["patients"] == 27  # 30, less 3 whose only film was dropped
    assert "patients: 27 (table); split by patient" in " ".join(result.output.split())
    assert run["data"]["patients"]["leaks"] == {}
    assert run["data"]["patients"]["split"].startswith("by patient")
    assert run["data"]["table"]["dropped_multi_label"] == 6
    again = scan_recorded(run["data"])
    assert_no_patient_in_two_splits(again)
    assert again.counts() == run["data"]["counts"]


def test_bench_and_quantize_reopen_a_table_run_with_its_options(tmp_path):
    """run.json's data block (as train writes it) is enough to re-open the same table split: bench's
    dataset_for with no --data, with --data TABLE, and scan_recorded (quantize, export, ensemble)."""
    from cxredge.edge.data.sources import Source, dataset_for

    table = nih_fixture(tmp_path)
    ds = scan(table, seed=3, options=NIH)
    data = {**ds.describe(), "path": str(ds.root)}
    data = json.loads(json.dumps(data))  # as run.json stores it
    source = Source([], run={"data": data})
    for given in (None, table):
        again, where = dataset_for(source, given, "test")
        assert again.splits == ds.splits, where
    assert scan_recorded(data).splits == ds.splits


@pytest.mark.parametrize("args, message", [
    (["--patient-regex", "person(\\d+"], "--patient-regex 'person(\\\\d+': not a regular expression"),
    (["--label-map", "Viral"], "--label-map 'Viral': 'Viral' is not FROM=TO"),
    (["--path-column", "file"], "no column 'file'"),
])
def test_audit_cli_data_option_errors(tmp_path, args, message):
    write_pngs(tmp_path, ["a.png", "b.png"], lambda n: 0)
    (tmp_path / "t.csv").write_text("path,label\na.png,x\nb.png,y\n")
    result = invoke("audit", tmp_path / "t.csv", "--out", tmp_path / "out", *args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
