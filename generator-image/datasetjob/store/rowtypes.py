"""What a row value may be: declared column types (spec.combine.columns) and what each output
format can carry. Pure.

One rule for every row, applied where the row is made (the worker, so a bad value fails its
item, named in the failures) and again in the combine (for files a command wrote):
- a declared column gets its declared type: values that convert exactly are converted
  ("7" -> 7 in an int64 column, 5 -> "5" in a string column), others are refused;
- NaN is a missing value (empty in CSV, null in JSON, null in Parquet), except in a declared
  int64 or bool column, where it is refused rather than silently emptied;
- integers must fit int64 where the format stores them as int64 (Parquet; any declared int64);
- JSON lines carry no Infinity (not JSON);
- text is UTF-8: a string (or a key or string inside a nested value, or a column name) holding
  a lone surrogate is refused in every format;
- Parquet (`type_conflicts`): a column holds one type, nested values included.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

from datasetjob.errors import RowValueError
from datasetjob.spec.limits import INT64_MAX, INT64_MIN
from datasetjob.store.table_stack import require_table_stack

if TYPE_CHECKING:  # imported where used, and only for nested values: pyarrow loads slowly
    import pyarrow as pa

# One row of a dataset: column -> value (a JSON value, or what a row file reads back).
Row: TypeAlias = dict[str, Any]


def _refuse(column: str, value: Any, why: str) -> RowValueError:
    return RowValueError(f"column {column!r}: {value!r:.80} {why}")


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _to_int64(column: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _refuse(column, value, "is not int64 (spec.combine.columns)")
    if isinstance(value, float):
        if math.isnan(value):
            raise _refuse(column, value, "is not int64 (spec.combine.columns); return None for a missing value")
        if not value.is_integer():
            raise _refuse(column, value, "is not int64 (spec.combine.columns)")
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise _refuse(column, value, "is not int64 (spec.combine.columns)") from None
    elif isinstance(value, int):
        number = value
    else:
        raise _refuse(column, value, "is not int64 (spec.combine.columns)")
    if not INT64_MIN <= number <= INT64_MAX:
        raise _refuse(column, number, "is outside the int64 range (spec.combine.columns)")
    return number


def _to_float64(column: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _refuse(column, value, "is not float64 (spec.combine.columns)")
    try:
        return float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise _refuse(column, value, "is not float64 (spec.combine.columns)") from None


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}


def _to_bool(column: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    raise _refuse(column, value, "is not bool (spec.combine.columns)")


def _to_string(column: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


_CONVERT = {"int64": _to_int64, "float64": _to_float64, "bool": _to_bool, "string": _to_string}


def conform_value(column: str, kind: str | None, value: Any, fmt: str) -> Any:
    """`value` as its column holds it in format `fmt`, or RowValueError naming the column."""
    if value is None:
        return None
    if _is_nan(value) and kind not in ("int64", "bool"):
        return None
    if kind is not None:
        value = _CONVERT[kind](column, value)
    if isinstance(value, float) and math.isinf(value) and fmt == "jsonl":
        raise _refuse(column, value, "cannot be written to JSON lines (JSON has no Infinity)")
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and fmt == "parquet"
        and not INT64_MIN <= value <= INT64_MAX
    ):
        raise _refuse(column, value, "is outside the int64 range Parquet stores")
    if isinstance(value, str):
        if not value.isascii():
            _check_text(column, value, value)
    elif isinstance(value, (dict, list)):
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=fmt == "parquet")
        except ValueError:
            raise _refuse(column, value, "holds NaN or Infinity, which JSON cannot carry") from None
        if not text.isascii():
            _check_text(column, value, text)
    return value


def _check_text(column: str, value: Any, text: str) -> None:
    """Refuse text no file can hold: a lone surrogate is not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise _refuse(column, value, f"is not valid UTF-8 text (it holds the lone surrogate {bad!r})") from None


_INFINITIES = (math.inf, -math.inf)


def _plain(row: Row, parquet: bool) -> bool:
    """Every value already as every format holds it: ASCII text, an int64, a finite float, a
    bool or None (the common row, checked without building a new one)."""
    for value in row.values():
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return False
        elif kind is int:
            if parquet and not INT64_MIN <= value <= INT64_MAX:
                return False
        elif kind is float:
            if value != value or value in _INFINITIES:
                return False
        elif kind is not bool and value is not None:
            return False
    return True


def conform_row(row: Row, declared: dict[str, str], fmt: str) -> Row:
    if not declared and _plain(row, fmt == "parquet") and "".join(row).isascii():
        return row
    if not "".join(row).isascii():
        for column in row:
            _check_text(column, column, column)
    return {column: conform_value(column, declared.get(column), value, fmt) for column, value in row.items()}


def value_kind(value: Any) -> str | None:
    """The Parquet-relevant kind of a value (ints and floats mix as numbers); None when missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


class _NestedTypes:
    """Parquet types of the nested (list or object) values of undeclared columns, merged over
    the items as pyarrow merges them when it writes the shard's table."""

    def __init__(self) -> None:
        self.types: dict[str, pa.DataType] = {}

    def merge(self, column: str, value: Any, merged: dict[str, pa.DataType]) -> str | None:
        """Adds `value`'s type to `merged` (this item's view of the column types); the reason
        when the value cannot join its column."""
        import pyarrow as pa

        try:
            new = pa.array([value]).type
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            return f"cannot be stored in Parquet: {_one_line(exc)}"
        current = merged.get(column, self.types.get(column))
        if current is None or current == new:
            merged[column] = new
            return None
        try:
            schema = pa.unify_schemas(
                [pa.schema([pa.field(column, current)]), pa.schema([pa.field(column, new)])],
                promote_options="permissive",
            )
        except (pa.ArrowException, ValueError, TypeError):
            return (
                f"is {new} but earlier items hold {current} there (a Parquet column holds one type); "
                "declare its type in spec.combine.columns to convert"
            )
        merged[column] = schema.field(column).type
        return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def type_conflicts(rows_by_position: Iterable[tuple[int, list[Row]]], declared: dict[str, str]) -> dict[int, str]:
    """For Parquet: positions whose value in an undeclared column has another kind than the first
    value of that column in item order (a Parquet column has one type), or a nested value whose
    type does not merge with the column's (or holds mixed types itself), with the reason. An
    item that fails adds nothing to what later items are held to."""
    require_table_stack("spec.output.format parquet")  # before any item is judged: the shard fails, not each item
    first: dict[str, str] = {}
    nested = _NestedTypes()
    out: dict[int, str] = {}
    for position, rows in rows_by_position:
        kinds: dict[str, str] = {}
        merged: dict[str, pa.DataType] = {}
        why = None
        for row in rows:
            for column, value in row.items():
                kind = value_kind(value)
                if column in declared or kind is None:
                    continue
                seen = first.get(column) or kinds.setdefault(column, kind)
                if seen != kind:
                    why = (
                        f"{value!r:.80} is a {kind} but earlier items hold a {seen} there; "
                        "declare its type in spec.combine.columns to convert"
                    )
                elif kind in ("list", "object"):
                    reason = nested.merge(column, value, merged)
                    why = f"{value!r:.80} {reason}" if reason else None
                if why:
                    why = f"column {column!r}: {why}"
                    break
            if why:
                break
        if why:
            out[position] = why
            continue
        for column, kind in kinds.items():
            first.setdefault(column, kind)
        nested.types.update(merged)
    return out
