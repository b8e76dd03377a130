"""Cache values are JSON: what round-trips, and the error a non-JSON value gives."""

from __future__ import annotations

import datetime
import decimal
import math

import pytest

from datasetjob.cache import CacheValueError, EmbeddedCache, NullCache, decode_value, encode_value

VALUES = [
    "plain",
    "",
    "ünïcödé · 日本語 · emoji 🚀",
    0,
    -17,
    2**62,
    3.25,
    -0.0,
    1e-300,
    True,
    False,
    None,
    [],
    {},
    [1, "two", 3.0, None, [4, [5, {"six": 6}]]],
    {"nested": {"list": [1, 2, {"deep": "ß"}], "float": 0.1, "none": None}, "k": "v"},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_round_trip_through_json_text(value):
    text = encode_value("k", value)
    assert isinstance(text, str)
    back = decode_value(text)
    assert back == value and type(back) is type(value)


def test_floats_round_trip_exactly():
    for x in (0.1, 1 / 3, math.pi, 2.0**-1074, 1.7976931348623157e308):
        assert decode_value(encode_value("f", x)) == x


def test_unicode_is_stored_as_text_not_escapes():
    assert encode_value("k", "日本") == '"日本"'


@pytest.mark.parametrize(
    "value, what",
    [
        (object(), "object"),
        ({1, 2}, "set"),
        (b"bytes", "bytes"),
        (datetime.date(2025, 1, 31), "date"),
        (decimal.Decimal("1.5"), "Decimal"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ({"ok": [1, {"bad": object()}]}, "object"),
    ],
)
def test_non_json_values_raise_naming_the_key(value, what):
    with pytest.raises(CacheValueError) as exc:
        encode_value("prices:AAPL", value)
    message = str(exc.value)
    assert "'prices:AAPL'" in message and "not JSON" in message
    assert isinstance(exc.value, TypeError)


def test_tuples_come_back_as_lists():
    assert decode_value(encode_value("t", (1, 2))) == [1, 2]


def test_embedded_cache_round_trips_and_refuses_non_json(tmp_path):
    cache = EmbeddedCache(tmp_path, namespace="values")
    for i, value in enumerate(VALUES):
        cache.set(f"k{i}", value)
        assert cache.get(f"k{i}") == (True, value)
    with pytest.raises(CacheValueError, match="'bad-key'"):
        cache.get_or_compute("bad-key", lambda: {1, 2})
    assert cache.get("bad-key") == (False, None)
    assert cache.get_or_compute("bad-key", lambda: [1, 2]) == ([1, 2], False)
    assert cache.get_or_compute("bad-key", lambda: 1 / 0) == ([1, 2], True)
    cache.close()


def test_null_cache_always_computes():
    cache = NullCache()
    assert cache.get_or_compute("k", lambda: {"a": 1}) == ({"a": 1}, False)
    assert cache.get("k") == (False, None)
