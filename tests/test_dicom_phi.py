"""No patient data out: DICOMs whose headers carry a name, IDs, birth date, dates, institution, accession
number and UIDs go through train -> quantize -> bench -> predict -> explain -> report -> audit -> export, and
no byte of any file written (nor the console) holds any of them."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from dicom_fixtures import PHI, UID_ROOT, twelve_bit, write_dicom

from conftest import invoke, synth_image

pytest.importorskip("pydicom")

CLASSES = ("alpha", "beta", "delta", "gamma")
# every header value, and the forms a converter could print them in (long enough not to occur by chance in binaries)
NEEDLES = sorted({*PHI.values(), "Doe^Janet", "Janet Doe", "Doe, Janet", "1947-03-11", "2024-01-17", "St Elsewhere",
                  UID_ROOT.rstrip(".")})


def phi_dataset(root: Path) -> Path:
    n = 0
    for split, count in (("train", 6), ("val", 3), ("test", 3)):
        for label, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                n += 1
                stored, kw = twelve_bit(synth_image(label, n, size=128))
                phi = {**PHI, "PatientID": f"{PHI['PatientID']}-{n // 2}"}  # two films per patient
                write_dicom(folder / f"film{n:03d}.dcm", stored, syntax="j2k" if n % 2 else "explicit",
                            phi=phi, uid_n=n, **kw)
    return root


def leaks_in(blob: bytes) -> list[str]:
    return [s for s in NEEDLES if s.encode() in blob or s.lower().encode() in blob.lower()]


def every_file(folders):
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                yield p


@pytest.mark.slow
def test_no_phi_reaches_any_output(tmp_path):
    data = phi_dataset(tmp_path / "data")
    assert len(leaks_in(next(data.rglob("*.dcm")).read_bytes())) >= 11  # the inputs do carry the PHI
    run, outs, console = tmp_path / "run", tmp_path / "outs", []

    def ok(*args):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        console.append(result.output)
        return result

    ok("train", "--data", data, "--out", run, "--variant", "fc", "--alpha", "0.25", "--weights", "none",
       "--epochs", "1", "--seed", "0")
    ok("quantize", "--run", run, "--variant", "fc", "--mode", "int8", "--calibration-size", "8",
       "--no-bias-correction")
    ok("bench", "--run", run, "--out", outs / "bench", "--runs", "2", "--warmup", "1", "--ci", "0")
    pred = ok("predict", run / "fc" / "int8.tflite", data / "test", "--json")
    (outs / "predict.json").write_text(pred.stdout)  # the JSON alone; warnings go to stderr
    assert len(json.loads(pred.stdout)["predictions"]) == 12
    ok("explain", run / "fc" / "int8.tflite", data / "test", "--out", outs / "explain", "--per-class", "1",
       "--stride", "56", "--patch", "56")
    ok("report", "--run", run, "--bench", outs / "bench" / "bench.json", "--out", outs / "report")
    ok("audit", data, "--out", outs / "audit", "--folds", "2")
    ok("export", "--run", run, "--out", outs / "bundle.zip", "--with-test-images")
    with zipfile.ZipFile(outs / "bundle.zip") as z:
        names = z.namelist()
        members = {n: z.read(n) for n in names}
    assert sum(n.startswith("test_images/") and n.endswith(".png") for n in names) == 12  # de-identified PNGs
    assert not any(n.endswith(".dcm") for n in names)
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["data"]["patients"]["source"] == "DICOM PatientID"  # the IDs were read, and hashed

    found = {}
    for p in every_file([run, outs]):
        hits = leaks_in(p.read_bytes())
        if hits:
            found[str(p.relative_to(tmp_path))] = hits
    for name, blob in members.items():
        hits = leaks_in(blob)
        if hits:
            found[f"bundle.zip:{name}"] = hits
    hits = leaks_in("\n".join(console).encode())
    if hits:
        found["console"] = hits
    assert not found, found
    checked = list(every_file([run, outs]))
    assert len(checked) > 20 and any(p.suffix == ".html" for p in checked)
