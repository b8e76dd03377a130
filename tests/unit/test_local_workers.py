"""The default number of local worker processes fits the machine."""

from datasetjob.local.runner import default_workers


def test_default_is_capped_at_the_cpus():
    assert default_workers(requested=None, parallelism=30, shards=30, cpus=2) == (2, True)


def test_small_runs_are_not_capped():
    assert default_workers(requested=None, parallelism=3, shards=3, cpus=8) == (3, False)


def test_an_explicit_workers_overrides_the_cap():
    assert default_workers(requested=12, parallelism=30, shards=30, cpus=2) == (12, False)
    assert default_workers(requested=50, parallelism=30, shards=30, cpus=2) == (30, False)
