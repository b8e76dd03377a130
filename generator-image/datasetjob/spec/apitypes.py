"""Typed API objects: dataclasses that are the one source of an OpenAPI v3 (structural) schema
and of the camelCase dicts the API stores. Pure.

A field carries its user-facing description and extra schema keywords (`api_field`,
`required_field`, `defaulted_field`); a class carries object-level keywords (`api_object`:
CEL rules, oneOf, ...); `Annotated[T, Schema(...)]` adds keywords to an element type, and
`Annotated[dict[str, Any], Shape(cls)]` keeps a value as its API dict (e.g. a Kubernetes
type passed on verbatim) while `cls` describes it. `schema_of` makes the schema and
`to_api`/`from_api` convert values, so the schema, the writers and the readers cannot drift.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

_META_KEY = "api"
_CLASS_KEYWORDS = "__api_keywords__"
_SCALAR_TYPES = ("string", "integer", "number", "boolean")
# Keywords about what is inside a value: in the spec style they follow the description.
_NESTED_KEYWORDS = ("x-kubernetes-validations", "oneOf", "properties", "items", "additionalProperties")

_Class = TypeVar("_Class", bound=type)


@dataclass(frozen=True)
class _FieldDoc:
    description: str
    keywords: Mapping[str, Any]
    server_default: bool  # the schema's `default`: the API server fills the field in


class Schema:
    """`Annotated` metadata: schema keywords of an element type, e.g. Annotated[str, Schema(minLength=1)]."""

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords


@dataclass(frozen=True)
class Shape:
    """`Annotated` metadata: the value stays a dict in its API form; the dataclass `cls` only
    describes it in the schema."""

    cls: type


@dataclass(frozen=True)
class SchemaStyle:
    """Where keywords go in a property. Order means nothing to the API server, but generated
    manifests are compared byte for byte, so each kind of schema keeps the layout it has."""

    integer_format: str | None = None  # e.g. "int64"
    # True: type, nested schemas, keywords, description. False: type, keywords, description,
    # then what is nested (an array of scalars keeps its items before the description).
    description_last: bool = False


def _doc_field(doc: _FieldDoc, default: Any, factory: Callable[[], Any] | None) -> Any:
    metadata = {_META_KEY: doc}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def api_field(
    description: str, default: Any = None, *, factory: Callable[[], Any] | None = None, **keywords: Any
) -> Any:
    """An optional field: absent in the API unless set. `keywords` are extra schema keywords."""
    return _doc_field(_FieldDoc(description, keywords, server_default=False), default, factory)


def required_field(description: str, **keywords: Any) -> Any:
    """A field the API requires (listed in its object's `required`)."""
    return field(metadata={_META_KEY: _FieldDoc(description, keywords, server_default=False)})


def defaulted_field(
    description: str, default: Any = None, *, factory: Callable[[], Any] | None = None, **keywords: Any
) -> Any:
    """A field the API server fills in when absent: the schema's `default` is `default`, or {}
    for an object made by `factory` (its own fields then take their defaults)."""
    return _doc_field(_FieldDoc(description, keywords, server_default=True), default, factory)


def api_object(keywords: Mapping[str, Any]) -> Callable[[_Class], _Class]:
    """Object-level schema keywords of a class, e.g. {"x-kubernetes-validations": [...]}."""

    def mark(cls: _Class) -> _Class:
        setattr(cls, _CLASS_KEYWORDS, dict(keywords))
        return cls

    return mark


def cel_rule(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One x-kubernetes-validations entry."""
    out = {"rule": rule, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    return out


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# -- reading hints ---------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)  # evaluates the annotations: once per class


def _unwrapped(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    """The hint without `| None` and `Annotated`, and the Annotated metadata."""
    metadata: tuple[Any, ...] = ()
    while True:
        if typing.get_origin(hint) is typing.Annotated:
            metadata += hint.__metadata__
            hint = typing.get_args(hint)[0]
        elif _is_union(hint):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(args) > 1:
                return typing.Union[tuple(args)], metadata  # noqa: UP007 (built from a tuple)
            hint = args[0]
        else:
            return hint, metadata


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def _shape(metadata: tuple[Any, ...]) -> type | None:
    return next((m.cls for m in metadata if isinstance(m, Shape)), None)


def _doc(f: dataclasses.Field[Any]) -> _FieldDoc:
    doc: _FieldDoc = f.metadata[_META_KEY]
    return doc


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


# -- schema ----------------------------------------------------------------------------------


def schema_of(hint: Any, style: SchemaStyle = SchemaStyle()) -> dict[str, Any]:
    """The OpenAPI v3 schema of a type: a dataclass, list/tuple, dict, enum or scalar."""
    hint, metadata = _unwrapped(hint)
    shape = _shape(metadata)
    schema = _object_schema(shape, style) if shape is not None else _type_schema(hint, style)
    for meta in metadata:
        if isinstance(meta, Schema):
            schema = _laid_out(schema, meta.keywords, style)
    return schema


def _type_schema(hint: Any, style: SchemaStyle) -> dict[str, Any]:
    if dataclasses.is_dataclass(hint):
        return _object_schema(typing.cast(type, hint), style)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple):
        return {"type": "array", "items": schema_of(args[0], style)}
    if origin is dict:
        if args[1] is Any:  # any content: kept as it is, like a Kubernetes object
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": schema_of(args[1], style)}
    if _is_union(hint):
        return {"anyOf": [schema_of(arm, style) for arm in args]}
    if hint is Any:
        return {"x-kubernetes-preserve-unknown-fields": True}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [m.value for m in hint]}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer", "format": style.integer_format} if style.integer_format else {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    raise TypeError(f"no schema for {hint!r}")


def _object_schema(cls: type, style: SchemaStyle) -> dict[str, Any]:
    hints = _hints(cls)
    fields = dataclasses.fields(cls)
    properties = {camel(f.name): _laid_out(schema_of(hints[f.name], style), _keywords(f), style) for f in fields}
    required = [camel(f.name) for f in fields if _is_required(f)]
    schema: dict[str, Any] = {"type": "object"}
    if required:
        schema["required"] = required
    schema.update(getattr(cls, _CLASS_KEYWORDS, {}))
    schema["properties"] = properties
    return schema


def _keywords(f: dataclasses.Field[Any]) -> dict[str, Any]:
    """A field's own keywords in the order they are written: extras, default, description."""
    doc = _doc(f)
    keywords = dict(doc.keywords)
    if doc.server_default:
        keywords["default"] = {} if f.default_factory is not dataclasses.MISSING else to_api(f.default)
    keywords["description"] = doc.description
    return keywords


def _laid_out(typed: dict[str, Any], keywords: Mapping[str, Any], style: SchemaStyle) -> dict[str, Any]:
    """`typed` (what the type says) with `keywords` (what a field or annotation adds)."""
    own = {k: v for k, v in keywords.items() if k not in ("default", "description")}
    described = {k: keywords[k] for k in ("default", "description") if k in keywords}
    if style.description_last:
        return {**typed, **own, **described}
    inline = {"items": typed["items"]} if _is_scalar(typed.get("items")) else {}
    # A keyword given explicitly keeps its written place (and wins over the derived one).
    head = {k: v for k, v in typed.items() if k not in _NESTED_KEYWORDS}
    nested = {k: v for k, v in typed.items() if k in _NESTED_KEYWORDS and k not in inline and k not in own}
    return {**head, **own, **inline, **described, **nested}


def _is_scalar(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") in _SCALAR_TYPES


# -- API form (camelCase dicts) --------------------------------------------------------------


def to_api(value: Any) -> Any:
    """A value as the API stores it: camelCase keys, no null fields, lists for sequences."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is not None:
                out[camel(f.name)] = to_api(item)
        return out
    if isinstance(value, list | tuple):
        return [to_api(v) for v in value]
    if isinstance(value, dict):
        return {k: to_api(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value


def from_api(hint: Any, data: Any) -> Any:
    """`data` (an API dict or value) as the type `hint`. What does not fit is dropped (None),
    never an error: a field left out takes its default."""
    hint, metadata = _unwrapped(hint)
    if data is None:
        return None
    if _shape(metadata) is not None:
        return data if isinstance(data, dict) else None
    if dataclasses.is_dataclass(hint):
        return _object_from_api(typing.cast(type, hint), data)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple):
        values = _sequence_from_api(args[0], data)
        return tuple(values) if origin is tuple and values is not None else values
    if origin is dict:
        if not isinstance(data, dict):
            return None
        return data if args[1] is Any else {k: from_api(args[1], v) for k, v in data.items()}
    return _scalar_from_api(hint, data)


def _sequence_from_api(inner: Any, data: Any) -> list[Any] | None:
    if not isinstance(data, list | tuple):
        return None
    if inner is Any:  # kept as written, nulls included
        return list(data)
    return [v for v in (from_api(inner, x) for x in data) if v is not None]


def _object_from_api(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        return None
    hints = _hints(cls)
    kwargs = {
        f.name: from_api(hints[f.name], data[camel(f.name)]) for f in dataclasses.fields(cls) if camel(f.name) in data
    }
    return cls(**{k: v for k, v in kwargs.items() if v is not None})


def _scalar_from_api(hint: Any, data: Any) -> Any:
    if hint is Any:
        return data
    if _is_union(hint):
        return data if any(_scalar_from_api(arm, data) is not None for arm in typing.get_args(hint)) else None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(data)
        except ValueError:
            return None
    if hint is bool:
        return data if isinstance(data, bool) else None
    if hint is int:
        return data if isinstance(data, int) and not isinstance(data, bool) else None
    if hint is float:  # a JSON number: 1 and 1.0 alike
        return float(data) if isinstance(data, int | float) and not isinstance(data, bool) else None
    return data if isinstance(data, hint) else None
