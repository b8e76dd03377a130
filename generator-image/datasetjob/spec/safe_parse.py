"""Spec text (YAML or JSON) to plain JSON values, for untrusted input. Pure.

PyYAML's safe loader, subclassed so that a hostile file fails fast with a message naming the
field instead of exhausting memory or the stack: aliases count as if written out, nesting is
bounded, keys are unique strings, and only values JSON can carry (what the API server stores)
come out. JSON goes through the same value checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, NoReturn

import yaml
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from datasetjob.errors import SpecError
from datasetjob.spec.limits import INT64_MAX, INT64_MIN, MAX_DEPTH, MAX_EXPANDED_NODES

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
# Tags of the safe loader whose values JSON cannot carry.
_NOT_JSON = {
    "tag:yaml.org,2002:binary": "binary data",
    "tag:yaml.org,2002:set": "a set",
    "tag:yaml.org,2002:omap": "an ordered map",
    "tag:yaml.org,2002:pairs": "a list of pairs",
}


def _join(path: list[str]) -> str:
    text = "".join(path).lstrip(".") or "document"
    return text if len(text) <= 120 else text[:60] + "…" + text[-50:]


class _Loader(yaml.SafeLoader):
    """Tracks the field path while composing, so every refusal can name where it happened."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str] = []
        self._keys: dict[int, dict[str, int]] = {}  # mapping node id -> key -> line
        self._sizes: dict[int, int] = {}  # node id -> node count with aliases written out
        self._expanded = 0

    def _refuse(self, message: str, mark: Mark | None = None) -> SpecError:
        line = f" (line {mark.line + 1})" if mark is not None else ""
        return SpecError([f"{_join(self._path)}: {message}{line}"])

    def compose_node(self, parent: Node | None, index: Node | int | None) -> Node | None:
        # `index` is the position in a sequence, the key node of a mapping value, or None while
        # composing a mapping key (PyYAML's stubs only know the first).
        if parent is None:
            label = ""
        elif isinstance(parent, SequenceNode):
            label = f"[{index}]"
        elif index is None:  # composing a mapping key
            label = ""
        else:
            label = f".{index.value}" if isinstance(index, ScalarNode) else ".?"
        self._path.append(label)
        try:
            if isinstance(parent, MappingNode) and index is not None:
                self._check_key(parent, index)
            if len(self._path) > MAX_DEPTH + 1:
                raise self._refuse(
                    f"nested deeper than {MAX_DEPTH} levels (the nesting depth limit)",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]  # unannotated in PyYAML's stubs
                )
            alias = self.check_event(yaml.AliasEvent)
            mark: Mark | None = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # as above
            node = super().compose_node(parent, index)  # type: ignore[arg-type]  # see `index` above
            assert node is not None  # PyYAML composes a node or raises
            self._expanded += self._size(node, mark) if alias else 1
            if self._expanded > MAX_EXPANDED_NODES:
                raise self._refuse(
                    f"YAML aliases expand to more than {MAX_EXPANDED_NODES} values (the alias "
                    "expansion limit); write the values out, or put items in spec.items.fromUri",
                    mark,
                )
            if not alias:
                self._check_node(node)
            return node
        finally:
            self._path.pop()

    def _check_key(self, mapping: MappingNode, key: Any) -> None:
        if isinstance(key, ScalarNode) and key.tag == _MERGE:
            return
        if not isinstance(key, ScalarNode) or key.tag != _STR:
            shown = key.value if isinstance(key, ScalarNode) else "a " + type(key).__name__.replace("Node", "").lower()
            raise SpecError(
                [
                    f"{_join(self._path[:-1])}: mapping key {shown!r} is not a string (line "
                    f"{key.start_mark.line + 1}); quote it"
                ]
            )
        seen = self._keys.setdefault(id(mapping), {})
        if key.value in seen:
            raise self._refuse(f"duplicate key (first at line {seen[key.value]})", key.start_mark)
        seen[key.value] = key.start_mark.line + 1

    def _check_node(self, node: Node) -> None:
        if node.tag in _NOT_JSON:
            raise self._refuse(f"{_NOT_JSON[node.tag]} ({node.tag}) is not a JSON value", node.start_mark)
        if isinstance(node, MappingNode):
            self._keys.pop(id(node), None)

    def _size(self, node: Node, mark: Mark | None) -> int:
        """Values under `node` with every alias written out; a cycle is refused."""
        if id(node) in self._sizes:
            return self._sizes[id(node)]
        # Iterative post-order: an alias chain may be as deep as the nesting limit allows.
        stack: list[tuple[Node, bool]] = [(node, False)]
        active: set[int] = set()
        while stack:
            current, children_done = stack.pop()
            key = id(current)
            if key in self._sizes:
                continue
            kids = _children(current)
            if children_done:
                active.discard(key)
                self._sizes[key] = min(MAX_EXPANDED_NODES + 1, 1 + sum(self._sizes[id(k)] for k in kids))
                continue
            if key in active:
                raise self._refuse("a YAML alias refers to a value that contains it", mark)
            active.add(key)
            stack.append((current, True))
            stack.extend((k, False) for k in kids if id(k) not in self._sizes)
        return self._sizes[id(node)]

    def construct_yaml_timestamp(self, node: ScalarNode) -> str:  # type: ignore[override]  # a str, not a date
        # JSON has no dates: keep what was written, as the API server would see a string.
        return self.construct_scalar(node)


_Loader.add_constructor(_TIMESTAMP, _Loader.construct_yaml_timestamp)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_json_values(value: Any, base: str = "") -> None:
    """Only what JSON carries: string keys, finite numbers, int64 integers, bounded nesting."""
    stack: list[tuple[Any, str, int]] = [(value, base, 0)]
    while stack:
        current, path, depth = stack.pop()
        where = path.lstrip(".") or "document"
        if depth > MAX_DEPTH:
            raise SpecError([f"{where}: nested deeper than {MAX_DEPTH} levels (the nesting depth limit)"])
        if isinstance(current, dict):
            for key, child in current.items():
                if not isinstance(key, str):
                    raise SpecError([f"{where}: mapping key {key!r} is not a string; quote it"])
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(current, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(current))
        elif isinstance(current, float) and not math.isfinite(current):
            raise SpecError([f"{where}: {current} is not a JSON number"])
        elif isinstance(current, int) and not isinstance(current, bool) and not INT64_MIN <= current <= INT64_MAX:
            raise SpecError([f"{where}: {current} is outside the 64-bit integer range"])
        elif not isinstance(current, (str, int, float, bool, type(None))):
            raise SpecError([f"{where}: a {type(current).__name__} is not a JSON value"])


def parse_yaml(text: str, source: str) -> Iterator[Any]:
    """The documents of a YAML stream; SpecError naming the field (or the line) if refused."""
    try:
        loader = _Loader(text)  # the reader checks the characters here already
    except yaml.YAMLError as exc:
        raise SpecError([f"{source}: not valid YAML: {exc}"]) from None
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]  # unannotated in PyYAML's stubs
            doc = loader.get_data()
            check_json_values(doc)
            yield doc
    except yaml.YAMLError as exc:
        raise SpecError([f"{source}: not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SpecError([f"duplicate key {key!r} in a JSON object"])
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise SpecError([f"{name} is not a JSON number"])


def parse_json(text: str, source: str) -> Any:
    try:
        doc = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except SpecError as exc:
        raise SpecError([f"{source}: {p}" for p in exc.problems]) from None
    except RecursionError:
        raise SpecError([f"{source}: nested deeper than {MAX_DEPTH} levels (the nesting depth limit)"]) from None
    except json.JSONDecodeError as exc:
        raise SpecError([f"{source}: not valid JSON: {exc}"]) from None
    check_json_values(doc)
    return doc
