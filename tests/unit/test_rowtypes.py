"""The rule for row values (rowtypes): declared types convert exactly or refuse, naming the column."""

import pytest

from datasetjob.errors import RowValueError
from datasetjob.store.rowtypes import conform_row, conform_value, type_conflicts

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "kind,fmt,value,expected",
    [
        ("int64", "csv", "7", 7),
        ("int64", "parquet", 7.0, 7),
        ("int64", "jsonl", None, None),
        ("float64", "parquet", 5, 5.0),
        ("float64", "csv", " 2.5 ", 2.5),
        ("float64", "jsonl", NAN, None),
        ("float64", "parquet", INF, INF),
        ("string", "parquet", 5, "5"),
        ("string", "csv", True, "true"),
        ("string", "jsonl", {"a": [1]}, '{"a":[1]}'),
        ("bool", "parquet", "false", False),
        ("bool", "csv", 1, True),
        (None, "jsonl", NAN, None),
        (None, "csv", NAN, None),
        (None, "csv", 2**70, 2**70),
        (None, "parquet", "x", "x"),
    ],
)
def test_values_that_convert(kind, fmt, value, expected):
    assert conform_value("c", kind, value, fmt) == expected


@pytest.mark.parametrize(
    "kind,fmt,value,reason",
    [
        ("int64", "csv", "seven", "is not int64"),
        ("int64", "csv", NAN, "is not int64"),
        ("int64", "parquet", 2.5, "is not int64"),
        ("int64", "jsonl", True, "is not int64"),
        ("int64", "csv", 2**70, "outside the int64 range"),
        ("float64", "parquet", "abc", "is not float64"),
        ("bool", "parquet", "yes", "is not bool"),
        ("bool", "csv", NAN, "is not bool"),
        (None, "parquet", 2**70, "outside the int64 range Parquet stores"),
        (None, "jsonl", INF, "JSON has no Infinity"),
        ("float64", "jsonl", -INF, "JSON has no Infinity"),
        (None, "jsonl", [1.0, NAN], "NaN or Infinity"),
    ],
)
def test_values_refused_name_the_column(kind, fmt, value, reason):
    with pytest.raises(RowValueError, match=f"column 'c': .*{reason}"):
        conform_value("c", kind, value, fmt)


def test_a_row_conforms_column_by_column():
    row = conform_row({"n": "3", "x": NAN, "s": 4}, {"n": "int64", "s": "string"}, "jsonl")
    assert row == {"n": 3, "x": None, "s": "4"}


def test_type_conflicts_keep_the_first_kind_in_item_order():
    rows = [(0, [{"n": 1}]), (1, [{"n": None}]), (2, [{"n": "two"}]), (3, [{"n": 2.5}]), (4, [{"n": "x", "m": 1}])]
    conflicts = type_conflicts(rows, {})
    assert sorted(conflicts) == [2, 4] and "column 'n'" in conflicts[2]
    assert type_conflicts(rows, {"n": "string"}) == {}
