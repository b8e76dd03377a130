"""The typed status: its API form, the CRD schema made from it, and the merge patch written."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from datasetjob_operator.crd import build_crd
from datasetjob_operator.reconcile import decide
from datasetjob_operator.status import DatasetJobStatus, Phase, merge_patch
from tests.unit.test_operator_planning import GEN, SETTINGS, job, observed, pod, summary


def _status_schema() -> dict:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def _walk(schema: dict, path: str = "status"):
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_the_crd_phase_enum_is_the_phase_type():
    assert _status_schema()["properties"]["phase"]["enum"] == [p.value for p in Phase]
    assert "Pending" not in _status_schema()["properties"]["phase"]["enum"]


def test_every_status_field_the_reconciler_writes_is_in_the_schema_with_a_description():
    start = decide(observed(), SETTINGS).status
    running = decide(
        observed(
            status=start.to_dict(),
            jobs=[job(GEN, completed="0", failed="2", active=1)],
            pods=[pod(GEN, 0, "Succeeded", summary(2)), pod(GEN, 2, "Failed", exit_code=3)],
        ),
        SETTINGS,
    ).status.to_dict()
    schema = dict(_walk(_status_schema()))
    for path, _ in _walk_values(running):
        assert path in schema, f"{path} is written but not in the CRD (the API server would prune it)"
    for path, sub in schema.items():
        if path != "status" and not path.endswith("[]"):  # list entries: the list says
            assert sub.get("description"), f"{path} has no description for kubectl explain"


def _walk_values(value, path="status"):
    yield path, value
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _walk_values(sub, f"{path}.{key}")
    elif isinstance(value, list):
        for sub in value:
            yield from _walk_values(sub, f"{path}[]")


def test_a_written_status_reads_back_as_the_same_status():
    status = decide(observed(), SETTINGS).status
    assert DatasetJobStatus.from_dict(status.to_dict()) == status
    assert status.to_dict()["phase"] == "Generating" and "finishedAt" not in status.to_dict()


def test_reading_a_status_drops_what_this_operator_does_not_know():
    old = {
        "phase": "Pending",
        "reconcile": {"x": 1},
        "runId": "r1",
        "shards": {"total": "three", "active": 1},
        "conditions": [{"type": "Ready", "status": "False"}, "junk"],
    }
    status = DatasetJobStatus.from_dict(old)
    assert status.phase is None and status.run_id == "r1"
    assert status.shards.total == 0 and status.shards.active == 1
    assert [c.type for c in status.conditions] == ["Ready"]


def _apply_merge_patch(target, patch):
    """RFC 7386, section 2."""
    if not isinstance(patch, dict):
        return patch
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _apply_merge_patch(out.get(key), value)
    return out


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=12,
)
# API objects hold no nulls (a null in a merge patch means "remove").
_no_nulls = st.dictionaries(st.text(max_size=2), _json, max_size=4).filter(lambda d: "None" not in repr(d))


@given(_no_nulls, _no_nulls)
def test_the_merge_patch_turns_the_stored_status_into_the_decided_one(old, new):
    assert _apply_merge_patch(old, merge_patch(old, new)) == new
    assert merge_patch(new, new) == {}
