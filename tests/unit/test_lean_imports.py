"""A pod imports only what its spec needs: the worker image has no table stack, and a CSV
worker without Redis or S3 must not pay for (or need) those libraries."""

import subprocess
import sys
from unittest import mock

import pytest

from datasetjob.errors import ExitCode, GeneratorConfigError
from datasetjob.store import table_stack
from datasetjob.store.tables import RowWriter, write_rows

OPTIONAL = ("redis", "boto3", "botocore", "pyarrow", "duckdb", "numpy", "jsonschema", "celpy", "rich")


def test_the_worker_and_combine_entry_points_import_no_optional_library():
    code = (
        "import sys, datasetjob.cli, datasetjob.worker.entrypoints; "
        f"print(' '.join(m for m in {OPTIONAL!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == []


@pytest.fixture
def no_table_stack(monkeypatch):
    monkeypatch.setattr(table_stack.importlib.util, "find_spec", lambda name: None)


def test_parquet_without_pyarrow_names_the_image_to_build_from(no_table_stack, tmp_path):
    with pytest.raises(GeneratorConfigError) as err:
        write_rows([{"a": 1}], str(tmp_path / "shard.parquet"), "parquet")
    message = str(err.value)
    assert "\n" not in message and "spec.output.format parquet needs pyarrow" in message
    assert "FROM datasetjob/worker-tables" in message
    assert err.value.exit_code == ExitCode.DO_NOT_RETRY
    with pytest.raises(GeneratorConfigError):
        RowWriter(str(tmp_path / "combined.parquet"), "parquet", ["a"])


def test_sorting_without_duckdb_names_the_image_to_build_from(no_table_stack, tmp_path):
    from datasetjob.combine import ordering
    from datasetjob.combine.ordering import OrderedRows

    # more rows than are sorted in memory
    with (
        mock.patch.object(ordering, "IN_MEMORY_ROWS", 0),
        pytest.raises(GeneratorConfigError, match="sortBy / dedupeBy needs pyarrow and duckdb"),
    ):
        list(OrderedRows(iter([{"a": 1}]), str(tmp_path), sort_by=["a"]))
    assert list(OrderedRows(iter([{"a": 1}]), str(tmp_path), sort_by=["a"])) == [{"a": 1}]
    # unsorted rows stream through without the table stack
    assert list(OrderedRows(iter([{"a": 1}]), str(tmp_path))) == [{"a": 1}]


def test_csv_needs_no_table_stack(no_table_stack, tmp_path):
    assert write_rows([{"a": 1}], str(tmp_path / "shard.csv"), "csv") == ["a"]
