"""The CRD has one source; its copies must not drift."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _render_module():
    spec = importlib.util.spec_from_file_location("render_manifests", REPO / "scripts" / "render-manifests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crd_copies_match_the_schema_source():
    expected = _render_module().crd_text()
    for path in (REPO / "manifests" / "crd.yaml", REPO / "helm" / "datasetjob" / "crds" / "datasetjob.yaml"):
        assert path.read_text() == expected, f"{path} is stale: run scripts/render-manifests.py"


def test_crd_carries_the_contract():
    from datasetjob_operator.crd import build_crd

    crd = build_crd()
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["dsj"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c] == [
        "Phase",
        "Shards",
        "Items",
        "Rows",
        "Age",
    ]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert [s["required"] for s in spec["properties"]["items"]["oneOf"]] == [
        ["values"],
        ["product"],
        ["range"],
        ["fromConfigMap"],
        ["fromUri"],
    ]
