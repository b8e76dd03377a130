"""A spec's item source expanded into the ordered item stream, and the items' ids. Pure: the
lines of a fromUri object or a ConfigMap key are read by the caller (`universe`) and passed in.

Sources are streamed: a fromUri file is parsed line by line and never held as one text, and
checking that ids are unique (`count_unique_ids`) keeps 8 bytes an item (a hash of its id), in
a buffer of fixed size: a universe too big for it is checked in parts, one read of the source
each. A product's ids are checked from its value lists (`product_id_count`), not item by item.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from datasetjob.errors import SpecError
from datasetjob.spec.limits import MAX_BUILT_PRODUCT_IDS, MAX_ID_LENGTH, MAX_ITEMS
from datasetjob.spec.model import ItemsSpec, canonical_json, id_template_parts

if TYPE_CHECKING:  # numpy loads in ~0.1 s: imported where ids are hashed, not for a range
    import numpy as np
    import numpy.typing as npt

    Hashes = npt.NDArray[np.int64]

_SKIP = object()

Product = tuple[tuple[str, tuple[Any, ...]], ...]


def parse_item_line(line: str) -> Any:
    """A JSON object/array/string line is decoded; anything else (e.g. AAPL) is the stripped
    string. A blank line gives _SKIP."""
    line = line.strip()
    if not line:
        return _SKIP
    if line[0] in '{["':
        try:
            return json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            pass
    return line


def _counted(items: Iterable[Any], field: str) -> Iterator[Any]:
    """Items of a source whose size is only known by reading it, up to MAX_ITEMS."""
    for n, item in enumerate(items, 1):
        if n > MAX_ITEMS:
            raise SpecError([f"{field}: more than {MAX_ITEMS} items, over the limit of {MAX_ITEMS} items per run"])
        yield item


def _product_items(product: Product) -> Iterator[dict[str, Any]]:
    keys = [k for k, _ in product]
    return (dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in product)))


class ProductItems(Iterator[dict[str, Any]]):
    """A product source's items in order (the first key varies slowest). It carries the product,
    so that `count_unique_ids` checks the ids from the value lists instead of expanding them.
    Iterating it iterates the underlying generator: no cost per item."""

    def __init__(self, product: Product):
        self.product = product
        self._items = _product_items(product)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._items  # the same state as __next__: a for loop runs the generator itself

    def __next__(self) -> dict[str, Any]:
        return next(self._items)


def iter_items(
    items: ItemsSpec,
    read_lines: Callable[[str], Iterable[str]] | None = None,
    config_map_lines: Iterable[str] | None = None,
) -> Iterator[Any]:
    """The item universe in its defined order, one item at a time."""
    if items.values is not None:
        return iter(items.values)
    if items.product is not None:
        return ProductItems(items.product)
    if items.range is not None:
        return iter(range(*items.range))
    if items.from_config_map is not None:
        if config_map_lines is None:
            name, key = items.from_config_map
            raise SpecError(
                [
                    f"spec.items.fromConfigMap: ConfigMap {name}/{key} can only be read in a "
                    "cluster; locally use fromUri (file:// or s3://) or values"
                ]
            )
        return _counted(
            (i for i in map(parse_item_line, config_map_lines) if i is not _SKIP), "spec.items.fromConfigMap"
        )
    if items.from_uri is not None:
        if read_lines is None:
            raise SpecError(["spec.items.fromUri: no reader for this URI"])
        return _counted(
            (i for i in map(parse_item_line, read_lines(items.from_uri)) if i is not _SKIP), "spec.items.fromUri"
        )
    raise SpecError(["spec.items: no item source"])


def count_items(items: ItemsSpec, config_map_text: str | None = None) -> int | None:
    """The universe size without building it: O(1) for values, product and range (the operator
    asks on every tick, and a range of 10^6 items must not be expanded for that). None when it
    needs a read this function cannot do (fromUri, or fromConfigMap without its text)."""
    if items.values is not None:
        return len(items.values)
    if items.product is not None:
        return math.prod(len(v) for _, v in items.product)
    if items.range is not None:
        return len(range(*items.range))
    if items.from_config_map is not None and config_map_text is not None:
        return sum(1 for line in config_map_text.splitlines() if line.strip())
    return None


def _field_text(value: Any) -> str:
    """A field as an id template writes it."""
    return value if type(value) is str else format(value)


def _templated_id(item: dict[str, Any], template: str) -> str:
    """The template's literals and the item's fields, refused as soon as the id would pass
    MAX_ID_LENGTH: never built longer, whatever the fields hold or the template repeats."""
    literals, fields = id_template_parts(template)
    size = sum(map(len, literals))
    parts = [literals[0]]
    for name, literal in zip(fields, literals[1:], strict=True):
        try:
            value = item[name]
        except KeyError:
            raise SpecError(
                [f"spec.items.idTemplate: item {canonical_json(item)[:80]} has no field {name!r}"]
            ) from None
        text = _field_text(value)
        size += len(text)
        if size > MAX_ID_LENGTH:
            raise SpecError(
                [
                    f"spec.items.idTemplate: the id of item {canonical_json(item)[:80]} would be longer than "
                    f"{MAX_ID_LENGTH} characters (MAX_ID_LENGTH, the item id limit)"
                ]
            )
        parts += (text, literal)
    return "".join(parts)


def item_id(item: Any, template: str | None) -> str:
    if template:
        if not isinstance(item, dict):
            raise SpecError([f"spec.items.idTemplate: items must be objects to use a template, got {item!r:.60}"])
        return _templated_id(item, template)
    if isinstance(item, str):
        return item
    if type(item) is int:  # what canonical_json gives, without its cost (a range has millions)
        return str(item)
    return canonical_json(item)


def _nul_error(ident: str, number: int) -> SpecError:
    return SpecError(
        [
            f"spec.items: item {number} (id {ident[:80]!r}) has a NUL character in its id, which no "
            "file name, command argument or log line can carry"
        ]
    )


_SHOWN_DUPLICATES = 5


def _duplicates_error(shown: list[str], total: int, template: str | None) -> SpecError:
    """`shown`: the first duplicated ids (in the order their second item comes); `total`: how
    many distinct ids are duplicated."""
    listed = ", ".join(repr(d) for d in shown[:_SHOWN_DUPLICATES])
    more = f" and {total - len(shown[:_SHOWN_DUPLICATES])} more" if total > len(shown[:_SHOWN_DUPLICATES]) else ""
    return SpecError(
        [
            f"spec.items: item ids must be unique; duplicated: {listed}{more}"
            + ("" if template else " (set spec.items.idTemplate to build ids from fields)")
        ]
    )


def _empty_error() -> SpecError:
    return SpecError(["spec.items: the item source is empty"])


def item_ids(items: Iterable[Any], template: str | None) -> list[str]:
    """Ids for all items; duplicates are an error that lists a few of them."""
    ids = [item_id(it, template) for it in items]
    for number, ident in enumerate(ids, 1):
        if "\x00" in ident:
            raise _nul_error(ident, number)
    counts = Counter(ids)
    if len(counts) != len(ids):
        dupes = [i for i, n in counts.items() if n > 1]
        raise _duplicates_error(dupes, len(dupes), template)
    if not ids:
        raise _empty_error()
    return ids


# -- the ids of a streamed universe, unique: hashes, sorted ------------------------------------
#
# Pass 1 reads the source once: every id is checked (NUL, the template's limits) and its hash()
# kept, 8 bytes; sorted with numpy, distinct hashes prove distinct ids, and the source is never
# read again unless two hashes are equal. Then pass 2 reads it again and looks only at the ids
# whose hash is one of those candidates: a candidate is a duplicate when a second fingerprint
# (blake2b) matches too, and a duplicate is only reported once its text is seen equal to an
# earlier id's (exactly: kept from pass 2, or by pass 3 when too many texts were to be kept), so
# a hash collision never makes a false error. hash() is salted per process: all the passes of
# one check run in the same process.
#
# The hashes are held in one buffer of _HASH_BUDGET; the lowest bit of each is replaced by a
# flag, "seen more than once" (63 bits of hash are left). When the buffer is full it is sorted
# and each hash kept once, flagged if it was there twice (so a source repeating itself never
# overflows it); if it is still more than half full the universe is split in two by one hash bit,
# this pass keeping the half with the bit clear and the other half left to a later pass. Memory
# stays fixed whatever the size (the buffer, then the candidates in its place); a universe of
# N > _HASH_BUDGET distinct ids is read in 2^k parts, one read each, N / _HASH_BUDGET <= 2^k <
# 2N / _HASH_BUDGET (10^7 ids: one read; 10^8: eight).

_BATCH = 1 << 14  # ids hashed together
_HASH_BUDGET = 1 << 24  # hashes held at once: 128 MiB (10^7 ids fit, in one read)
_BLOCK = 1 << 20  # hashes the buffer is squeezed by at once (its temporaries: ~20 MiB)
_TEXT_BUDGET = 4 << 20  # characters of ids kept by pass 2 to confirm the first duplicates
_FLAG = 1  # the bit of a kept hash that says "seen more than once"
_HASH = ~_FLAG  # the bits of a kept hash that are the id's hash


class _Nul(Exception):
    def __init__(self, ident: str):
        self.ident = ident


def _nul_free_hash(ident: str) -> int:
    if "\x00" in ident:
        raise _Nul(ident)
    return hash(ident)


def _hash_batches(ids: Iterator[str]) -> Iterator[array[int]]:
    """The ids' hashes, a batch at a time; the first id with a NUL (counted across batches) is
    refused, in item order with the errors of the items themselves. No id is kept."""
    number = 0
    while True:
        batch = array("q")
        try:
            batch.extend(map(_nul_free_hash, itertools.islice(ids, _BATCH)))
        except _Nul as nul:  # the hashes before it are in `batch`
            raise _nul_error(nul.ident, number + len(batch) + 1) from None
        if not batch:
            return
        number += len(batch)
        yield batch


# keep(block, the hash before it, the hash after it) -> the hashes of the block to keep
Keep = Callable[["Hashes", "int | None", "int | None"], "Hashes"]


def _squeeze(buf: array[int], keep: Keep) -> None:
    """Replaces, in place and in order, each block of `buf` by what keep() makes of it: the buffer
    is never copied (what is written only overwrites what was read)."""

    def squeezed() -> int:  # its views of `buf` end with it: `buf` can shrink after
        import numpy as np

        view = np.frombuffer(buf, dtype=np.int64)
        kept, previous = 0, None
        for start in range(0, len(view), _BLOCK):
            block = view[start : start + _BLOCK]
            end = start + block.size
            chosen = keep(block, previous, int(view[end]) if end < len(view) else None)
            previous = int(block[-1])
            view[kept : kept + chosen.size] = chosen
            kept += chosen.size
        return kept

    if buf:
        del buf[squeezed() :]


def _last_of_each(block: Hashes, previous: int | None, following: int | None) -> Hashes:
    """Of a sorted block, the last of each run of one hash, flagged if the run was longer than one
    (the flagged sort last: the last of a run is flagged if any was)."""
    import numpy as np

    keys = block & _HASH
    last = np.empty(block.size, dtype=bool)
    np.not_equal(keys[:-1], keys[1:], out=last[:-1])
    last[-1] = following is None or int(keys[-1]) != following & _HASH
    again = np.empty(block.size, dtype=bool)
    np.equal(keys[1:], keys[:-1], out=again[1:])
    again[0] = previous is not None and int(keys[0]) == previous & _HASH
    kept: Hashes = block[last] | again[last]
    return kept


def _flagged(block: Hashes, previous: int | None, following: int | None) -> Hashes:
    kept: Hashes = block[(block & _FLAG) != 0] & _HASH
    return kept


def _dedupe(buf: array[int]) -> None:
    """Sorts `buf` in place and keeps each hash once, flagged if it was there more than once."""
    import numpy as np

    if buf:
        np.frombuffer(buf, dtype=np.int64).sort()
    _squeeze(buf, _last_of_each)


def _candidates(ids: Iterator[str], bits: int, part: int) -> tuple[int, array[int], list[tuple[int, int]]]:
    """Reads the universe once for the ids whose hash has `part` in its `bits` bits above the
    flag's: (how many items the universe has, the sorted hashes of those ids seen more than once
    (without their flag), the parts (bits, part) split off to be read later because this one
    did not fit the buffer)."""
    import numpy as np

    buf = array("q")  # grows as it fills, up to _HASH_BUDGET
    count = 0
    later: list[tuple[int, int]] = []
    for batch in _hash_batches(ids):
        count += len(batch)
        hashes = np.frombuffer(batch, dtype=np.int64) & _HASH
        if bits:
            hashes = hashes[((hashes >> 1) & ((1 << bits) - 1)) == part]
        while hashes.size:
            taken = hashes[: _HASH_BUDGET - len(buf)]
            buf.frombytes(taken.tobytes())
            hashes = hashes[taken.size :]
            if len(buf) < _HASH_BUDGET:
                break
            _dedupe(buf)
            while len(buf) > _HASH_BUDGET // 2:  # too many distinct: the part with the next bit set waits
                bit = np.int64(2) << np.int64(bits)

                def clear(block: Hashes, _: int | None, __: int | None, bit: Any = bit) -> Hashes:
                    kept: Hashes = block[(block & bit) == 0]
                    return kept

                _squeeze(buf, clear)
                hashes = hashes[(hashes & bit) == 0]
                later.append((bits + 1, part | (1 << bits)))
                bits += 1
    _dedupe(buf)
    _squeeze(buf, _flagged)  # the candidates, in the buffer's place
    return count, buf, later


class _Duplicates:
    """Pass 2 over one part: which of its candidate hashes are duplicated ids."""

    def __init__(self, candidates: array[int]):
        import numpy as np

        self.candidates = np.frombuffer(candidates, dtype=np.int64)
        self.fingerprint = np.zeros(len(candidates), dtype=np.uint32)
        self.state = np.zeros(len(candidates), dtype=np.uint8)  # 0 unseen, 1 seen, 2 duplicated
        self.others: dict[tuple[int, int], int] = {}  # (candidate, fingerprint): another id of that hash
        self.texts: dict[int, str] = {}  # the first id of a candidate, while a few more are shown
        self.text_chars = 0
        self.count = 0
        self.shown: list[tuple[int, str, bool]] = []  # (position of the second item, id, seen equal)
        self.items = 0

    def scan(self, ids: Iterator[str]) -> None:
        batch: list[str] = []
        chars = 0
        for ident in ids:
            batch.append(ident)
            chars += len(ident)
            if len(batch) == _BATCH or chars > _TEXT_BUDGET:
                self._batch(batch)
                batch, chars = [], 0
        self._batch(batch)

    def _batch(self, batch: list[str]) -> None:
        import numpy as np

        start, self.items = self.items, self.items + len(batch)
        if not batch:
            return
        hashes = np.fromiter(map(hash, batch), dtype=np.int64, count=len(batch)) & _HASH
        at = np.minimum(np.searchsorted(self.candidates, hashes), self.candidates.size - 1)
        for i in np.flatnonzero(self.candidates[at] == hashes).tolist():
            self._candidate(int(at[i]), batch[i], start + i)

    def _candidate(self, group: int, ident: str, position: int) -> None:
        mark = _fingerprint(ident)
        state = int(self.state[group])
        if state == 0:
            self.state[group], self.fingerprint[group] = 1, mark
            if len(self.shown) < _SHOWN_DUPLICATES and self.text_chars + len(ident) <= _TEXT_BUDGET:
                self.texts[group] = ident
                self.text_chars += len(ident)
        elif int(self.fingerprint[group]) == mark:
            if state == 1:
                first = self.texts.pop(group, None)
                if first is None or first == ident:  # unequal texts: a 2^-95 coincidence, not this id twice
                    self.state[group] = 2
                    self._found(ident, position, first is not None)
        else:  # two ids of one 64-bit hash: each is followed by its fingerprint
            seen = self.others.get((group, mark), 0)
            if seen < 2:
                self.others[(group, mark)] = seen + 1
                if seen == 1:
                    self._found(ident, position, False)

    def _found(self, ident: str, position: int, exact: bool) -> None:
        self.count += 1
        if len(self.shown) < _SHOWN_DUPLICATES:
            self.shown.append((position, ident, exact))
        if len(self.shown) == _SHOWN_DUPLICATES:
            self.texts.clear()


def _fingerprint(ident: str) -> int:
    """A second hash of an id (32 bits), independent of hash()."""
    return int.from_bytes(hashlib.blake2b(ident.encode("utf-8", "surrogatepass"), digest_size=4).digest())


def _seen_before(ids: Iterator[str], wanted: dict[str, int]) -> set[str]:
    """Pass 3: which of the ids `wanted` (id -> position of a later item with it) an earlier item has."""
    found: set[str] = set()
    for position, ident in enumerate(ids):
        later = wanted.get(ident)
        if later is not None and position < later:
            found.add(ident)
    return found


def _changed(first: int, now: int) -> SpecError:
    return SpecError(
        [f"spec.items: the item source changed while its ids were checked ({first} items, then {now}); try again"]
    )


def _count_unique(make_ids: Callable[[], Iterator[str]], template: str | None) -> int:
    """How many ids `make_ids()` gives (each call a new read of the universe); SpecError for a
    NUL in one, an empty universe or duplicates (the first few listed, and how many there are)."""
    if not _have_numpy():
        return _count_unique_sets(make_ids, template)
    total: int | None = None
    parts = [(0, 0)]
    duplicated = 0
    shown: list[tuple[int, str, bool]] = []
    while parts:
        bits, part = parts.pop()
        count, candidates, later = _candidates(make_ids(), bits, part)
        if total is None:
            if not count:
                raise _empty_error()
            total = count
        elif count != total:
            raise _changed(total, count)
        parts += later
        if candidates:
            found = _Duplicates(candidates)
            found.scan(make_ids())
            if found.items != total:
                raise _changed(total, found.items)
            duplicated += found.count
            shown += found.shown
    assert total is not None
    if duplicated:
        shown = sorted(shown)[:_SHOWN_DUPLICATES]
        unsure = {ident: position for position, ident, exact in shown if not exact}
        if unsure:
            sure = _seen_before(make_ids(), unsure)
            duplicated -= len(unsure) - len(sure)
            shown = [s for s in shown if s[2] or s[1] in sure]
        if shown:
            raise _duplicates_error([ident for _, ident, _ in shown], duplicated, template)
    return total


def _have_numpy() -> bool:
    """numpy is in the `checks` extra; the operator's image goes without it (see _count_unique_sets)."""
    return importlib.util.find_spec("numpy") is not None


# Without numpy (the operator's image): a pass keeps a set of up to _SET_HASHES hashes (~50 MiB),
# of the ids whose hash falls in its part of the hash space; a universe with more distinct ids is
# read once per part. Candidates (a hash seen twice) are confirmed by their texts on one more
# read, so a collision is never an error. What the operator checks this way is small (inline
# values, a ConfigMap of 1 MiB); a product built id by id (up to MAX_BUILT_PRODUCT_IDS) takes a
# read per million distinct ids.
_SET_HASHES = 1 << 20


def _count_unique_sets(make_ids: Callable[[], Iterator[str]], template: str | None) -> int:
    total: int | None = None
    parts, part = 1, 0
    candidates: set[int] = set()
    while part < parts:
        seen: set[int] = set()
        count, full = 0, False
        for count, ident in enumerate(make_ids(), 1):
            if "\x00" in ident:
                raise _nul_error(ident, count)
            key = hash(ident)
            if key % parts != part:
                continue
            if key in seen:
                candidates.add(key)
            elif not full:
                seen.add(key)
                full = len(seen) > _SET_HASHES
        if total is None:
            if not count:
                raise _empty_error()
            total = count
        elif count != total:
            raise _changed(total, count)
        if full:  # this part did not fit: more, smaller parts, from the start
            parts, part = max(parts * 2, 2 * math.ceil(count / _SET_HASHES)), 0
            candidates.clear()
            continue
        part += 1
    assert total is not None
    if candidates:
        _raise_duplicates(make_ids(), candidates, template)
    return total


def _raise_duplicates(ids: Iterator[str], candidates: set[int], template: str | None) -> None:
    """The ids among the candidates' that a later item repeats, in the order of their second item."""
    first: dict[str, int] = {}
    duplicated: dict[str, int] = {}  # id -> position of its second item
    for position, ident in enumerate(ids):
        if hash(ident) not in candidates:
            continue
        if ident in first:
            duplicated.setdefault(ident, position)
        else:
            first[ident] = position
    if duplicated:
        shown = sorted(duplicated, key=duplicated.__getitem__)
        raise _duplicates_error(shown, len(duplicated), template)


def count_unique_ids(items: Callable[[], Iterable[Any]] | Iterable[Any], template: str | None) -> int:
    """How many items `items()` gives, with the errors of item_ids: each call of `items` must
    start a new read of the same universe (pass a factory, e.g. `lambda: iter_items(...)`; the
    source is read once when its ids are distinct). Memory is bounded (see above): the items
    are not kept, nor their ids. A product (what iter_items gives for one) is checked from its
    value lists (`product_id_count`).

    A collection is read again as it is; a one-shot iterator cannot be, so its ids are kept
    (memory grows with it): only for small universes."""
    if isinstance(items, ProductItems):
        return product_id_count(items.product, template)
    if not callable(items):
        if iter(items) is not items:
            collection = items
            return count_unique_ids(lambda: collection, template)
        return _count_unique_once(iter(items), template)
    first: list[Iterable[Any]] = [items()]
    if isinstance(first[0], ProductItems):
        return product_id_count(first[0].product, template)

    def ids() -> Iterator[str]:
        source = first.pop() if first else items()  # the first read is the one opened above
        return map(item_id, source, itertools.repeat(template))

    return _count_unique(ids, template)


def _count_unique_once(items: Iterator[Any], template: str | None) -> int:
    ids: list[str] = []
    failure: Exception | None = None
    try:
        ids.extend(map(item_id, items, itertools.repeat(template)))
    except Exception as exc:  # the ids before it are checked first: their errors come first
        failure = exc
    for number, ident in enumerate(ids, 1):
        if "\x00" in ident:
            raise _nul_error(ident, number)
    if failure is not None:
        raise failure
    return _count_unique(lambda: iter(ids), template)


# -- the ids of a product, from its value lists ------------------------------------------------
#
# A product of 10^9 items is never expanded to check its ids. Without idTemplate an id is the
# canonical JSON of the item, which decodes back to it: ids are unique iff no key lists the
# same value (as JSON) twice. With idTemplate an id is the template's literals and the fields'
# texts; they are unique when (1) every key with more than one value is in the template, (2) no
# key has two values written the same, and (3) the id can be cut back into its fields: read
# left to right, each field but the last is followed by fixed text (literals, and the fields of
# one value) holding a character that none of the field's values contains, or all its values
# have the same length. (The last field ends where the final literal starts.) When (1) or (2)
# fails there are duplicates; when only (3) fails there may be none. Either way a product of up
# to MAX_BUILT_PRODUCT_IDS items is then checked id by id (exactly as a streamed source, with
# the same messages); a bigger one is refused, saying why. The first id that is too long or has
# a NUL is found from the value lists too, as the item-by-item check would find it first.


def _product_item(product: Product, position: int) -> dict[str, Any]:
    """The item at `position` of the product (the last key varies fastest)."""
    digits: dict[str, Any] = {}
    for key, values in reversed(product):
        position, digit = divmod(position, len(values))
        digits[key] = values[digit]
    return {key: digits[key] for key, _ in product}


def _position(product: Product, digits: dict[str, int]) -> int:
    position = 0
    for key, values in product:
        position = position * len(values) + digits.get(key, 0)
    return position


def _first_bad_item(product: Product, literals: tuple[str, ...], fields: tuple[str, ...]) -> int | None:
    """The position of the first item whose templated id is too long or has a NUL, or None: key by
    key, the first value for which some choice of the later keys still makes a bad id."""
    uses = Counter(fields)
    texts = [[_field_text(v) for v in values] for _, values in product]
    # What the keys from k on can add at most: length, and whether a NUL.
    most, nul = [0] * (len(product) + 1), [False] * (len(product) + 1)
    for k in reversed(range(len(product))):
        n = uses[product[k][0]]
        most[k] = most[k + 1] + (n * max(map(len, texts[k])) if n else 0)
        nul[k] = nul[k + 1] or bool(n and any("\x00" in t for t in texts[k]))
    size, has_nul = sum(map(len, literals)), any("\x00" in literal for literal in literals)
    if not (has_nul or nul[0] or size + most[0] > MAX_ID_LENGTH):
        return None
    position = 0
    for k, (key, _) in enumerate(product):
        n = uses[key]
        for digit in range(len(texts[k])):  # one of them does: a bad id was seen possible above
            text = texts[k][digit]
            grown, with_nul = size + n * len(text), has_nul or bool(n and "\x00" in text)
            if with_nul or nul[k + 1] or grown + most[k + 1] > MAX_ID_LENGTH:
                break
        position = position * len(texts[k]) + digit
        size, has_nul = grown, with_nul
    return position


def _duplicated_values(product: Product, written: Callable[[Any], str]) -> tuple[str, int, int] | None:
    """(key, i, j): the first key listing two values (i < j) that `written` writes the same."""
    for key, values in product:
        seen: dict[str, int] = {}
        for j, value in enumerate(values):
            i = seen.setdefault(written(value), j)
            if i != j:
                return key, i, j
    return None


def _json_ids_problem(product: Product) -> str | None:
    """Why a product's JSON ids repeat (None: they do not)."""
    same = _duplicated_values(product, canonical_json)
    if same is None:
        return None
    key, i, j = same
    ident = canonical_json(_product_item(product, _position(product, {key: i})))
    value = canonical_json(dict(product)[key][i])
    return (
        f"spec.items: item ids must be unique; duplicated: {ident[:200]!r} and others: product key {key!r} "
        f"lists the same value twice (values {i + 1} and {j + 1}: {value[:80]})"
    )


def _template_ids_problem(product: Product, template: str, count: int) -> str | None:
    """Why a product's templated ids repeat, or cannot be shown not to (None: they do not)."""
    literals, fields = id_template_parts(template)
    varying = {key for key, values in product if len(values) > 1}
    values_of = dict(product)
    unused = [key for key, _ in product if key in varying and key not in fields]
    if unused:
        key = unused[0]
        ident = item_id(_product_item(product, 0), template)
        return (
            f"spec.items: item ids must be unique; duplicated: {ident!r} and others: spec.items.idTemplate "
            f"does not use product key {key!r}, so its {len(values_of[key])} values give the same ids"
        )
    same = _duplicated_values(product, _field_text)
    if same is not None:
        key, i, j = same
        ident = item_id(_product_item(product, _position(product, {key: i})), template)
        return (
            f"spec.items: item ids must be unique; duplicated: {ident!r} and others: values {i + 1} and "
            f"{j + 1} of product key {key!r} ({values_of[key][i]!r:.60} and {values_of[key][j]!r:.60}) "
            f"are written the same in the id"
        )
    # (3): each varying field but the last, with the fixed text up to the next varying field.
    followed: list[tuple[str, str]] = []
    for name, literal in zip(fields, literals[1:], strict=True):
        if name in varying:
            followed.append((name, literal))
        elif followed:
            followed[-1] = (followed[-1][0], followed[-1][1] + _field_text(values_of[name][0]) + literal)
    for name, after in followed[:-1]:
        texts = [_field_text(v) for v in values_of[name]]
        if len({len(t) for t in texts}) == 1 or set(after) - set().union(*texts):
            continue
        why = (
            "directly by another field"
            if not after
            else f"by {after[:40]!r}, each character of which is in some value of {name}"
        )
        return (
            f"spec.items.idTemplate: cannot tell from the template that the ids of the {count} product items "
            f"are unique, and building each id to check is limited to {MAX_BUILT_PRODUCT_IDS} items "
            f"(MAX_BUILT_PRODUCT_IDS): {{{name}}} is followed {why}; follow it with a character that none "
            f"of its values contains, or give all its values the same length"
        )
    return None


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _product_ids(product: Product, template: str | None) -> Iterator[str]:
    """The ids of a product's items in order, what item_id gives for each (once the template's
    fields are known to be keys and no id too long), built from each key's written values."""
    keys = [key for key, _ in product]
    if template:
        literals, fields = id_template_parts(template)
        texts = [[_field_text(v) for v in values] for _, values in product]
        pattern = _braces(literals[0]) + "".join(
            f"{{{keys.index(name)}}}{_braces(literal)}" for name, literal in zip(fields, literals[1:], strict=True)
        )
    else:  # canonical_json of the item: its keys sorted, each with its value's canonical JSON
        texts = [[canonical_json(v) for v in values] for _, values in product]
        by_name = sorted(range(len(keys)), key=keys.__getitem__)
        pattern = "{{" + ",".join(f"{_braces(canonical_json(keys[k]))}:{{{k}}}" for k in by_name) + "}}"
    return itertools.starmap(pattern.format, itertools.product(*texts))


def product_id_count(product: Product, template: str | None) -> int:
    """The number of items of a product, with the errors of count_unique_ids, from the value
    lists (O(their total length)); only a product whose ids cannot be shown unique that way is
    checked id by id, up to MAX_BUILT_PRODUCT_IDS items (see above)."""
    count = math.prod(len(values) for _, values in product)
    if not count:
        raise _empty_error()
    if template:
        literals, fields = id_template_parts(template)
        if not set(fields) <= {key for key, _ in product}:
            item_id(_product_item(product, 0), template)  # not a validated spec: the first item says which
        bad = _first_bad_item(product, literals, fields)
        if bad is not None:
            ident = item_id(_product_item(product, bad), template)  # refuses one too long
            raise _nul_error(ident, bad + 1)
        problem = _template_ids_problem(product, template, count)
    else:
        problem = _json_ids_problem(product)
    if problem is None:
        return count
    if count <= MAX_BUILT_PRODUCT_IDS:  # exactly what an item-by-item check says, duplicates listed
        return _count_unique(lambda: _product_ids(product, template), template)
    raise SpecError([problem])
