"""The preview's pure parts: which items a sample takes, and what it warns about."""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from datasetjob.local.preview import Preview, spread


@given(st.integers(0, 10_000), st.integers(0, 50))
def test_a_sample_spreads_over_the_universe_first_and_last_included(total, n):
    positions = spread(total, n)
    assert positions == sorted(set(positions)) and all(0 <= p < total for p in positions)
    assert len(positions) == min(n, total)
    if total and n >= 2:
        assert positions[0] == 0 and positions[-1] == total - 1


def test_columns_that_disagree_with_the_declared_ones_are_named():
    preview = Preview(kinds={"a": Counter(number=2), "b": Counter(string=1, number=1), "c": Counter(string=2)})
    warnings = preview.warnings({"a": "string", "c": "string", "d": "int64"})
    assert warnings == [
        "column 'd' is declared in spec.combine.columns but no sampled row has it",
        "column 'b' is generated but not declared in spec.combine.columns",
        "column 'a' is declared string but holds number values",
        "column 'b' mixes number, string values (Parquet holds one kind a column)",
    ]
    assert Preview(kinds={"a": Counter(number=1, missing=1)}).warnings({"a": "float64"}) == []
