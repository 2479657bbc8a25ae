"""PHI value collection from the raw zone and the audit of outputs, through the real CLI."""

from __future__ import annotations

import json

import polars as pl
from click.testing import CliRunner
from deid_fixtures import SECRET, adversarial_dataset

from thyrokit.cli import main
from thyrokit.curate.deid import DeidOptions, deidentify_dataset
from thyrokit.curate.deid.dicom_output import encode_dicom
from thyrokit.curate.deid.phi_values import collect_phi_values


def make_raw(tmp_path):
    study = tmp_path / "raw" / "scans" / "st_olaf_general" / "MRN7734521_doe" / "study1"
    study.mkdir(parents=True)
    ds = adversarial_dataset()
    ds.PatientName = "Li^Jane"
    (study / "a.dcm").write_bytes(encode_dicom(ds))
    return tmp_path / "raw" / "scans", ds


def make_clean_outputs(tmp_path, ds):
    out = tmp_path / "out"
    out.mkdir()
    deid, audit = deidentify_dataset(ds, SECRET, DeidOptions())
    (out / "img-0001.dcm").write_bytes(encode_dicom(deid))
    pl.DataFrame({"patient_id": [deid.PatientID], "sex": ["F"], "note": ["blacksmith janet"],
                  "png": [b"\x89PNG\r\n Jane"]}).write_parquet(out / "images.parquet")
    (out / "audit.jsonl").write_text(json.dumps(audit.to_dict()) + "\n")
    return out


def run_audit(out, phi):
    return CliRunner().invoke(main, ["curate", "audit", str(out), "--phi", str(phi)])


def test_collected_values_hold_names_ids_uids_but_not_short_values(tmp_path):
    raw, _ = make_raw(tmp_path)
    values = collect_phi_values(raw)
    for value in ("jane", "mrn7734521", "st olaf general", "19640229", "1964-02-29", "acc99887766",
                  "st_olaf_general", "1.2.826.0.1.3680043.2.1125.7734521.1", "sn-44-xk-21"):
        assert value in values, value
    assert "li" not in values and "f" not in values
    assert "1.2.840.10008.5.1.4.1.1.6.1" not in values  # a SOP class is no identifier


def test_clean_outputs_pass_and_planted_values_fail_without_being_printed(tmp_path):
    raw, ds = make_raw(tmp_path)
    phi = tmp_path / "private" / "phi_values.json"
    assert CliRunner().invoke(main, ["curate", "phi-values", str(raw), str(phi)]).exit_code == 0
    out = make_clean_outputs(tmp_path, ds)
    result = run_audit(out, phi)
    assert result.exit_code == 0, result.output

    pl.DataFrame({"caption": ["seen by Jane in ST OLAF  General"]}).write_parquet(out / "labels.parquet")
    (out / "MRN7734521_export.json").write_text("{}")
    leaked = adversarial_dataset()
    (out / "leak.dcm").write_bytes(encode_dicom(leaked))
    result = run_audit(out, phi)
    assert result.exit_code == 1
    assert "labels.parquet: column caption holds a" in result.output
    assert "<name withheld>: file name holds a PatientID value" in result.output
    assert "leak.dcm: PatientName holds a PatientName value" in result.output
    for value in ("Jane", "MRN7734521", "Olaf", "7734521"):
        assert value.lower() not in result.output.lower(), value


def test_an_id_inside_a_decimal_number_is_not_a_finding_but_a_standalone_one_is():
    from thyrokit.curate.deid.audit import PhiMatcher

    matcher = PhiMatcher({"445833": "StudyID"})
    assert matcher.kinds("0 0.437500 0.410227 0.445833 0.425000") == []
    assert matcher.kinds("study 445833.") == ["StudyID"]
    assert matcher.kinds("id=445833,x") == ["StudyID"]
