"""Command-mode templates: one-pass placeholders, an unambiguous {items}, and output paths
that stay inside the shard's working directory (schema rule and `dsj validate`)."""

import pytest
import yaml

from datasetjob.cli import main
from datasetjob.errors import SpecError
from datasetjob.spec.model import spec_from_dict
from datasetjob.worker.generator import substitute


def command_spec(output_file: str, values=("a", "b"), command=("true",)) -> dict:
    return {"items": {"values": list(values)}, "generator": {"command": list(command), "outputFile": output_file}}


def validate(tmp_path, monkeypatch, capsys, raw_spec: dict) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    doc = {"apiVersion": "datagen.dev/v1alpha1", "kind": "DatasetJob", "metadata": {"name": "cmd"}, "spec": raw_spec}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err


# -- defect 2: placeholders ------------------------------------------------------------------


def test_placeholders_inside_substituted_values_stay_literal():
    values = {"items": "{shard},{index}", "shard": "shard-00001", "index": "1"}
    assert substitute("--items {items} --name {shard}", values) == "--items {shard},{index} --name shard-00001"


def test_other_braces_pass_through():
    assert substitute('{"a": 1} {shard} {unknown}', {"shard": "s"}) == '{"a": 1} s {unknown}'


def test_items_placeholder_with_an_id_containing_the_separator_is_refused(tmp_path, monkeypatch, capsys):
    raw = command_spec("out-{shard}.csv", values=["a", "b,c"], command=["gen", "--items", "{items}"])
    code, err = validate(tmp_path, monkeypatch, capsys, raw)
    assert code == 2
    assert "spec.generator.command" in err and "'b,c'" in err and "{items_file}" in err


def test_items_file_is_fine_with_any_id(tmp_path, monkeypatch, capsys):
    raw = command_spec("out-{shard}.csv", values=["a", "b,c"], command=["gen", "--items", "{items_file}"])
    assert validate(tmp_path, monkeypatch, capsys, raw)[0] == 0


# -- defect 1: output paths ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/tmp/x/victim.txt", "../victim.txt", "out/../../victim.txt", "..", "a/.."])
def test_schema_refuses_an_absolute_or_dotdot_output_file(path):
    with pytest.raises(SpecError) as err:
        spec_from_dict("cmd", command_spec(path))
    assert any(p.startswith("spec.generator.outputFile:") and "working directory" in p for p in err.value.problems)


@pytest.mark.parametrize("path", ["out.csv", "data/{shard}.csv", "a..b.csv", "./x/.hidden.csv"])
def test_schema_accepts_relative_output_files(path):
    assert spec_from_dict("cmd", command_spec(path)).generator.output_file == path


def test_an_item_id_cannot_lead_the_output_file_out(tmp_path, monkeypatch, capsys):
    raw = command_spec("{items}.csv", values=["../../escaped"])
    code, err = validate(tmp_path, monkeypatch, capsys, raw)
    assert code == 2 and "spec.generator.outputFile" in err and "outside" in err


def test_a_symlink_cannot_lead_the_output_file_out(tmp_path, monkeypatch, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "link").symlink_to(outside)
    monkeypatch.chdir(work)
    raw = command_spec("link/{shard}.csv")
    raw["generator"]["workingDir"] = str(work)
    code, err = validate(work, monkeypatch, capsys, raw)
    assert code == 2 and "spec.generator.outputFile" in err and "outside" in err
