"""The Argo CD health check (Lua 5.1, as Argo CD's gopher-lua) on sample DatasetJob objects."""

from pathlib import Path

import lupa.lua51 as lua51  # Lua 5.1 from PyPI (the dev extra), the dialect of Argo CD's gopher-lua
import pytest

SCRIPT = (Path(__file__).resolve().parents[2] / "gitops" / "argocd" / "health-datasetjob.lua").read_text()


def health(obj: dict) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value):
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    check = lua.eval(f"function(obj)\n{SCRIPT}\nend")
    result = check(to_lua(obj))
    return result["status"], result["message"]


def dsj(phase=None, generation=2, observed=2, **status):
    obj = {"metadata": {"name": "smf", "generation": generation}}
    if phase is not None:
        obj["status"] = {"phase": phase, "observedGeneration": observed, **status}
    return obj


@pytest.mark.parametrize(
    "obj,expected",
    [
        (dsj(), ("Progressing", "Waiting for the operator")),
        (
            dsj("Generating", shards={"progress": "3/10"}, items={"progress": "1080/3600"}),
            ("Progressing", "Generating (shards 3/10, items 1080/3600)"),
        ),
        (
            dsj("Succeeded", output={"rows": 3560}, shards={"progress": "10/10"}, items={"progress": "3560/3600"}),
            ("Healthy", "Published 3560 rows (shards 10/10, items 3560/3600)"),
        ),
        (
            dsj("Failed", reason="TooFewItems", message="only 3400 of 3600 items succeeded"),
            ("Degraded", "TooFewItems: only 3400 of 3600 items succeeded"),
        ),
        (dsj("Suspended"), ("Suspended", "Suspended (shards ?, items ?)")),
        (dsj("Succeeded", generation=3, observed=2), ("Progressing", "A new spec is being picked up")),
    ],
)
def test_health(obj, expected):
    assert health(obj) == expected
