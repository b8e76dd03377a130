"""ObjectMemory: what the operator keeps per DatasetJob between reconciles, and drops again
when the DatasetJob is deleted, so memory follows the objects that exist."""

import threading

from datasetjob_operator.object_memory import ObjectMemory
from datasetjob_operator.status import Phase


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Reads:
    """A read of the API server that counts its calls."""

    def __init__(self, value):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


def remember(memory: ObjectMemory, uid: str, config_map: Reads, workloads: Reads) -> None:
    """What one reconcile of a queued DatasetJob with spec.items.fromConfigMap leaves behind."""
    memory.lock(uid)
    memory.enter_phase(uid, Phase.GENERATING)
    memory.config_map_items(uid, "ml", "items", "list", config_map)
    memory.admission(uid, "ml", workloads)


def test_forget_drops_every_entry_of_an_object():
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2, clock=Clock())
    remember(memory, "uid-1", Reads("a\nb"), Reads({}))
    assert len(memory) > 0
    memory.forget("uid-1")
    assert len(memory) == 0


def test_memory_does_not_grow_with_the_datasetjobs_ever_seen():
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2, clock=Clock())
    remember(memory, "uid-0", Reads("a"), Reads({}))
    one_object = len(memory)
    for i in range(1, 100):
        remember(memory, f"uid-{i}", Reads("a"), Reads({}))
        memory.forget(f"uid-{i}")
    assert len(memory) == one_object


def test_shared_reads_stay_while_another_object_still_reads_them():
    clock = Clock()
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2, clock=clock)
    config_map, workloads = Reads("a\nb"), Reads({"job": "waiting for quota"})
    remember(memory, "uid-1", config_map, workloads)
    remember(memory, "uid-2", config_map, workloads)
    assert (config_map.calls, workloads.calls) == (1, 1)  # one read serves both objects

    memory.forget("uid-1")
    assert memory.config_map_items("uid-2", "ml", "items", "list", config_map) == "a\nb"
    assert memory.admission("uid-2", "ml", workloads) == {"job": "waiting for quota"}
    assert (config_map.calls, workloads.calls) == (1, 1)

    memory.forget("uid-2")
    assert len(memory) == 0


def test_reads_are_reused_for_their_time_to_live():
    clock = Clock()
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2, clock=clock)
    memory.lock("uid-1")
    config_map, workloads = Reads("a"), Reads({})
    for _ in range(3):
        memory.config_map_items("uid-1", "ml", "items", "list", config_map)
        memory.admission("uid-1", "ml", workloads)
    assert (config_map.calls, workloads.calls) == (1, 1)
    clock.now += 5  # past the admission's time-to-live, within the ConfigMap's
    memory.config_map_items("uid-1", "ml", "items", "list", config_map)
    memory.admission("uid-1", "ml", workloads)
    assert (config_map.calls, workloads.calls) == (1, 2)
    clock.now += 6
    memory.config_map_items("uid-1", "ml", "items", "list", config_map)
    assert config_map.calls == 2


def test_a_spec_that_names_another_config_map_lets_the_old_one_go():
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2, clock=Clock())
    memory.lock("uid-1")
    memory.config_map_items("uid-1", "ml", "old", "list", Reads("a"))
    before = len(memory)
    assert memory.config_map_items("uid-1", "ml", "new", "list", Reads("b")) == "b"
    assert len(memory) == before


def test_enter_phase_tells_how_long_the_object_was_in_the_phase_it_left():
    clock = Clock()
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2, clock=clock)
    memory.lock("uid-1")
    assert memory.enter_phase("uid-1", Phase.GENERATING) is None
    clock.now += 30
    assert memory.enter_phase("uid-1", Phase.COMBINING) == (Phase.GENERATING, 30)
    clock.now += 5
    assert memory.enter_phase("uid-1", Phase.COMBINING) is None  # same phase: the clock restarts
    clock.now += 1
    assert memory.enter_phase("uid-1", Phase.SUCCEEDED) == (Phase.COMBINING, 1)


def test_one_lock_per_object():
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2)
    assert memory.lock("uid-1") is memory.lock("uid-1")
    assert memory.lock("uid-1") is not memory.lock("uid-2")


def test_a_reconcile_in_flight_cannot_put_back_what_forget_dropped():
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2, clock=Clock())
    reconciling, forgetting = threading.Event(), threading.Event()

    def reconcile():
        with memory.lock("uid-1"):
            reconciling.set()
            forgetting.wait(5)
            remember(memory, "uid-1", Reads("a"), Reads({}))

    def forget():
        reconciling.wait(5)
        forgetting.set()
        memory.forget("uid-1")  # waits for the reconcile above to let go of the lock

    threads = [threading.Thread(target=reconcile), threading.Thread(target=forget)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(memory) == 0


def test_a_reconcile_that_waited_for_a_forgotten_lock_leaves_no_trace():
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2, clock=Clock())
    lock = memory.lock("uid-1")  # taken before the delete handler ran...
    memory.forget("uid-1")
    with lock:  # ...and held after it
        memory.enter_phase("uid-1", Phase.FAILED)
        assert memory.config_map_items("uid-1", "ml", "items", "list", Reads("a")) == "a"
        assert memory.admission("uid-1", "ml", Reads({})) == {}
    assert len(memory) == 0
