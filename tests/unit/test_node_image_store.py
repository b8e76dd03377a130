"""The node's kept containerd root (tests/e2e/harness/image_store.py): what a start imports,
keeps or removes, and the slots two runs at once take. No containerd runs here."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.e2e.harness import image_store
from tests.e2e.harness.addons import workload_ready
from tests.e2e.harness.image_store import ImageStore, acquire, archive_key, holds, plan, remove_stores
from tests.e2e.harness.images import ImageArchive


@pytest.mark.parametrize(
    ("stored", "ref", "same"),
    [
        ("example.org/datasetjob/worker:0.1.0", "datasetjob/worker:0.1.0", True),
        ("example.org/library/redis:7", "redis:7", True),
        ("datasetjob/worker:0.1.0", "datasetjob/worker:0.1.0", True),
        ("example.org/datasetjob/worker:0.2.0", "datasetjob/worker:0.1.0", False),
        ("example.org/datasetjob/worker-tables:0.1.0", "datasetjob/worker:0.1.0", False),
        ("example.org/xdatasetjob/worker:0.1.0", "datasetjob/worker:0.1.0", False),
    ],
)
def test_a_stored_name_is_matched_with_the_ref_it_was_imported_as(stored, ref, same):
    assert holds(stored, ref) is same


def _archive(path, manifest: list | None, layer: bytes = b"layer"):
    """A docker-archive like the build writes: layers by digest and a manifest.json."""
    members = [("abc.tar", layer)]
    if manifest is not None:
        members.append(("manifest.json", json.dumps(manifest).encode()))
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_archive_key_follows_the_image_and_not_the_file(tmp_path):
    manifest = [{"Config": "c1.json", "RepoTags": ["datasetjob/worker:1"], "Layers": ["abc.tar"]}]
    a = archive_key(_archive(tmp_path / "a.tar", manifest))
    assert a.startswith("manifest:")
    assert archive_key(_archive(tmp_path / "b.tar", manifest, layer=b"same image, written again")) == a
    other = [{**manifest[0], "Config": "c2.json"}]
    assert archive_key(_archive(tmp_path / "c.tar", other)) != a
    # Not a docker-archive: the whole file's hash.
    assert archive_key(_archive(tmp_path / "d.tar", None)).startswith("file:")


def _images(*names):
    return [ImageArchive(f"datasetjob/{name}:1", Path(f"/nowhere/{name}.tar")) for name in names]


def test_a_warm_start_imports_nothing_and_a_changed_or_missing_image_is_imported():
    worker, pause, redis = _images("worker", "pause", "redis")
    keys = {worker.ref: "k-worker", pause.ref: "k-pause", redis.ref: "k-redis-new"}
    recorded = {worker.ref: "k-worker", pause.ref: "k-pause", redis.ref: "k-redis-old"}
    stored = [f"example.org/{i.ref}" for i in (worker, pause, redis)]
    assert plan([worker, pause], keys, recorded, stored[:2]) == ([], [])
    # redis's archive holds another image; pause is recorded but gone from containerd.
    assert plan([worker, pause, redis], keys, recorded, [stored[0], stored[2]]) == ([pause, redis], [])


def test_images_no_archive_names_are_removed_and_unrecorded_ones_imported():
    (worker,) = _images("worker")
    stored = ["example.org/datasetjob/worker:1", "example.org/datasetjob/worker:0", "example.org/datasetjob/old:1"]
    load, remove = plan([worker], {worker.ref: "k"}, {}, stored)
    assert load == [worker]
    assert remove == ["example.org/datasetjob/old:1", "example.org/datasetjob/worker:0"]


def test_the_record_survives_a_round_trip_and_a_damaged_one_reads_as_empty(tmp_path):
    store = ImageStore(tmp_path, -1)
    assert store.recorded() == {}
    store.write_record({"datasetjob/a:1": "manifest:d"})
    assert store.recorded() == {"datasetjob/a:1": "manifest:d"}
    (tmp_path / image_store.RECORD).write_text("{not json")
    assert store.recorded() == {}


def test_runs_at_once_take_separate_slots_and_clean_removes_only_free_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASETJOB_BUILD_CACHE", str(tmp_path))
    first, second = acquire(slots=2), acquire(slots=2)
    assert first is not None and second is not None
    assert first.path != second.path
    assert acquire(slots=2) is None  # every slot taken: the run falls back to a throw-away root
    (second.root / "content").mkdir(parents=True)
    second.release()
    removed, in_use = remove_stores()
    assert removed == [str(second.path)]
    assert in_use == [str(first.path)]
    assert first.path.is_dir() and not second.path.exists()
    first.release()
    assert remove_stores() == ([str(first.path)], [])
    assert not image_store.store_base().exists()


def _deployment(replicas=1, generation=2, observed=2, updated=1, available=1):
    return {
        "kind": "Deployment",
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available},
    }


def test_a_workload_is_ready_when_its_current_spec_runs_every_replica_ready():
    assert workload_ready(_deployment())
    assert not workload_ready(_deployment(observed=1))
    assert not workload_ready(_deployment(available=0))
    assert not workload_ready(_deployment(replicas=2, updated=2, available=1))
    sts = {
        "kind": "StatefulSet",
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1},
    }
    assert workload_ready(sts)
    assert not workload_ready({**sts, "status": {"observedGeneration": 1, "updatedReplicas": 1}})
