"""generator.itemTimeoutSeconds: the watcher of timed items, the failures carried over a
restart, command mode's deadline and the spec field."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import yaml

from datasetjob.cli import main
from datasetjob.errors import ExitCode, SpecError
from datasetjob.spec.model import run_id, spec_from_dict
from datasetjob.store import layout
from datasetjob.store.backends import FileStore
from datasetjob.store.checkpoint import Checkpoint
from datasetjob.store.fingerprint import fingerprint_inputs
from datasetjob.worker.generator import encode_rows
from datasetjob.worker.item_timeout import (
    ItemTimeout,
    RestartWorker,
    TimedItems,
    attempt_tag,
    carry_failures,
    command_deadline,
    command_failures,
    max_stuck,
    restart,
)
from datasetjob.worker.shard_summary import ShardSummary

LIMIT = 0.3  # seconds; no test asserts how long anything took


class Recorder:
    def __init__(self):
        self.calls: list[tuple[int, object, BaseException | None]] = []
        self.threads: set[str] = set()

    def __call__(self, position, outcome, error):
        self.threads.add(threading.current_thread().name)
        self.calls.append((position, outcome, error))

    def outcomes(self):
        return {p: outcome for p, outcome, error in self.calls if error is None}

    def errors(self):
        return {p: error for p, _, error in self.calls if error is not None}


@pytest.fixture
def release():
    """Set at the end of a test: every call still stuck returns."""
    event = threading.Event()
    yield event
    event.set()


def test_every_item_is_recorded_once_in_the_calling_thread():
    record = Recorder()
    timed = TimedItems(lambda p: p * 10, 3, LIMIT, threading.Event())
    assert timed.run(range(20), record)
    assert record.outcomes() == {p: p * 10 for p in range(20)}
    assert len(record.calls) == 20
    assert record.threads == {threading.current_thread().name}
    assert timed.abandoned == 0


def test_a_generator_error_fails_its_item_only():
    def one(p):
        if p == 2:
            raise ValueError("bad item")
        return p

    record = Recorder()
    assert TimedItems(one, 1, LIMIT, threading.Event()).run(range(5), record)
    assert set(record.outcomes()) == {0, 1, 3, 4}
    assert isinstance(record.errors()[2], ValueError)


@pytest.mark.parametrize("width", [1, 4])
def test_a_hanging_item_times_out_and_the_others_go_on(width, release):
    def one(p):
        if p == 3:
            release.wait()
        return p

    record = Recorder()
    timed = TimedItems(one, width, LIMIT, threading.Event())
    assert timed.run(range(10), record)
    assert set(record.outcomes()) == set(range(10)) - {3}
    error = record.errors()[3]
    assert isinstance(error, ItemTimeout)
    assert str(error).startswith(f"still running after {LIMIT:g} s; abandoned at test_item_timeout.py:")
    assert (timed.abandoned, timed.stuck) == (1, 1)


def test_a_late_result_is_dropped_and_its_thread_no_longer_counts(release):
    returned = threading.Event()

    def one(p):
        if p == 0:
            release.wait()
            returned.set()
            return "late"
        return p

    record = Recorder()
    timed = TimedItems(one, 1, LIMIT, threading.Event())
    assert timed.run(range(3), record)
    release.set()
    assert returned.wait(10)
    for _ in range(100):  # the thread drops its outcome just after returning
        if timed.stuck == 0:
            break
        threading.Event().wait(0.05)
    assert timed.stuck == 0
    assert [p for p, _, _ in record.calls].count(0) == 1
    assert "late" not in record.outcomes().values()


def test_more_stuck_calls_than_the_limit_stop_the_run_before_new_items(release):
    hanging = {1, 2, 3, 4}
    started = Counter()

    def one(p):
        started[p] += 1
        if p in hanging:
            release.wait()
        return p

    record = Recorder()
    timed = TimedItems(one, 1, LIMIT, threading.Event())
    assert max_stuck(1) == 2
    assert not timed.run(range(10), record)
    assert timed.stuck == 3
    errors = record.errors()
    assert set(errors) == {1, 2, 3} and all(isinstance(e, ItemTimeout) for e in errors.values())
    assert set(record.outcomes()) == {0}
    assert set(started) <= {0, 1, 2, 3, 4}  # at most the one queued ahead started; none after it
    assert all(n == 1 for n in started.values())


def test_stopping_starts_no_new_item():
    stopping = threading.Event()

    def one(p):
        if p == 2:
            stopping.set()
        return p

    record = Recorder()
    assert TimedItems(one, 1, LIMIT, stopping).run(range(100), record)
    assert len(record.calls) < 10


def test_max_stuck_is_at_least_two_and_grows_with_concurrency():
    assert [max_stuck(n) for n in (1, 2, 3, 16)] == [2, 2, 3, 16]


# -- failures carried over a restart ---------------------------------------------------------


def failure(position: int, error: str = "ItemTimeout: still running after 1 s; abandoned") -> dict:
    return {"id": f"item-{position}", "position": position, "error": error, "where": ""}


def test_restart_saves_done_and_failed_items_and_the_next_process_skips_both(tmp_path):
    store = FileStore(tmp_path)
    checkpoint = Checkpoint(store, "r1", 0, flush_every_seconds=3600)
    checkpoint.record(0, "item-0", encode_rows([{"i": 0}]))
    with pytest.raises(RestartWorker):
        restart(checkpoint, [failure(1), failure(2, "ValueError: bad")], "", 3)

    again = Checkpoint(store, "r1", 0)
    assert again.load() == {0: [{"i": 0}]}
    failures: list[dict] = []
    summary = ShardSummary("r1", 0, items_total=5)
    left = carry_failures(again, "", [1, 2, 3, 4], failures, summary, threading.Lock())
    assert left == [3, 4]
    assert failures == [failure(1), failure(2, "ValueError: bad")]
    assert summary.items_failed == 2


def test_failures_of_an_earlier_pass_are_tried_again(tmp_path):
    """A retry-failed pass (the shard committed since) tries the failed items again."""
    store = FileStore(tmp_path)
    Checkpoint(store, "r1", 0).save_failures([failure(1)], tag="")
    assert attempt_tag(store, "r1", 0, None) == ""
    store.put_bytes(layout.shard_manifest_key("r1", 0), b'{"committedAt": "2025-01-01T00:00:00Z"}')
    tag = attempt_tag(store, "r1", 0, None)
    assert tag == "2025-01-01T00:00:00Z"
    checkpoint = Checkpoint(store, "r1", 0)
    checkpoint.load()
    failures: list[dict] = []
    left = carry_failures(checkpoint, tag, [1, 2], failures, ShardSummary("r1", 0), threading.Lock())
    assert left == [1, 2] and failures == []


def test_an_item_done_after_it_failed_counts_as_done(tmp_path):
    store = FileStore(tmp_path)
    Checkpoint(store, "r1", 0).save_failures([failure(1)], tag="")
    checkpoint = Checkpoint(store, "r1", 0, flush_every_seconds=0)
    checkpoint.record(1, "item-1", encode_rows([{"i": 1}]))
    assert Checkpoint(store, "r1", 0).load() == {1: [{"i": 1}]}  # `todo` leaves it out: not carried


# -- command mode --------------------------------------------------------------------------------


def test_a_command_without_a_limit_has_no_deadline():
    assert command_deadline(None, 10) == float("inf")


def test_a_timed_out_command_fails_every_item_of_its_shard():
    failures = command_failures(2.5, ["a", "b"])
    assert [f["id"] for f in failures] == ["a", "b"]
    assert failures[0]["error"].startswith("ItemTimeout: the generator command ran longer than 5 s")
    assert "itemTimeoutSeconds 2.5 s x 2 items" in failures[0]["error"]


# -- the spec field ---------------------------------------------------------------------------


BASE = {"items": {"values": ["a", "b"]}, "generator": {"function": "m:f"}}


@pytest.mark.parametrize("value", [0, -1])
def test_a_timeout_must_be_positive(value):
    with pytest.raises(SpecError) as err:
        spec_from_dict("demo", dict(BASE, generator={"function": "m:f", "itemTimeoutSeconds": value}))
    assert f"spec.generator.itemTimeoutSeconds: must be > 0, got {value}" in str(err.value)


def test_dsj_validate_names_the_field(tmp_path, capsys):
    doc = {
        "apiVersion": "datagen.dev/v1alpha1",
        "kind": "DatasetJob",
        "metadata": {"name": "t"},
        "spec": dict(BASE, generator={"function": "m:f", "itemTimeoutSeconds": 0}),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", str(path)]) == ExitCode.BAD_SPEC
    assert "spec.generator.itemTimeoutSeconds" in capsys.readouterr().err


def test_the_timeout_changes_neither_the_run_nor_the_generator_fingerprint():
    plain = spec_from_dict("demo", BASE)
    timed = spec_from_dict("demo", dict(BASE, generator={"function": "m:f", "itemTimeoutSeconds": 1.5}))
    assert timed.generator.item_timeout_seconds == 1.5
    assert plain.generator.item_timeout_seconds is None
    assert run_id(plain.raw_spec) == run_id(timed.raw_spec)
    assert fingerprint_inputs(plain) == fingerprint_inputs(timed)


def test_the_crd_rejects_a_timeout_that_is_not_positive():
    from datasetjob.spec.schema import spec_schema

    field = spec_schema()["properties"]["generator"]["properties"]["itemTimeoutSeconds"]
    assert (field["type"], field["minimum"], field["exclusiveMinimum"]) == ("number", 0, True)
    assert "ItemTimeout" in field["description"]


def test_a_restarting_worker_costs_its_shard_no_retry_in_a_cluster():
    from datasetjob_operator import planning
    from datasetjob_operator.settings import Settings

    spec = spec_from_dict("demo", dict(BASE, generator={"function": "m:f", "itemTimeoutSeconds": 5}), "ml")
    run = planning.Run("demo", "ml", "uid-1", run_id(spec.raw_spec), "0", spec)
    rules = planning.generate_job(run, Settings())["spec"]["podFailurePolicy"]["rules"]
    restart_rules = [r for r in rules if ExitCode.RESTART in (r.get("onExitCodes") or {}).get("values", [])]
    assert restart_rules == [
        {"action": "Ignore", "onExitCodes": {"containerName": "generator", "operator": "In", "values": [79]}}
    ]
