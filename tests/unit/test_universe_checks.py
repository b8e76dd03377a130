"""Whole-universe checks in bounded memory: `count_unique_ids` (hashes, sorted; the source read
again only to confirm candidates), `product_id_count` (from the value lists), and MAX_ITEMS.

The reference for every result is the simple check the bounded one replaced: a set of every id.
Small buffers (`_HASH_BUDGET`, `_BLOCK`, `_BATCH`) and a weak hash are patched in to drive the
split into parts, the squeezing of the buffer and hash collisions with a few ids.
"""

from __future__ import annotations

import itertools
import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasetjob.errors import SpecError
from datasetjob.spec import item_source, limits
from datasetjob.spec.item_source import count_unique_ids, item_id, iter_items, product_id_count
from datasetjob.spec.model import spec_from_dict
from datasetjob_operator.cluster_spec import checked_item_total

GENERATOR = {"function": "m:f"}
CHECKS = settings(max_examples=150, deadline=None, derandomize=True)


def spec_of(name: str, **items):
    return spec_from_dict(name, {"items": items, "generator": GENERATOR})


def reference(items: list, template: str | None = None) -> int | list[str]:
    """What a set of every id says: the count, or the problems."""
    seen: set[str] = set()
    dupes: dict[str, None] = {}
    try:
        for number, item in enumerate(items, 1):
            ident = item_id(item, template)
            if "\x00" in ident:
                return item_source._nul_error(ident, number).problems
            if ident in seen:
                dupes[ident] = None
            seen.add(ident)
    except SpecError as exc:
        return exc.problems
    if dupes:
        return item_source._duplicates_error(list(dupes), len(dupes), template).problems
    if not items:
        return ["spec.items: the item source is empty"]
    return len(items)


def checked(items: list, template: str | None = None) -> int | list[str]:
    try:
        return count_unique_ids(lambda: iter(items), template)
    except SpecError as exc:
        return exc.problems


def product_checked(product: tuple, template: str | None) -> int | list[str]:
    try:
        return product_id_count(product, template)
    except SpecError as exc:
        return exc.problems


def product_reference(product: tuple, template: str | None) -> int | list[str]:
    return reference(list(item_source._product_items(product)), template)


@pytest.fixture
def tiny_buffers(monkeypatch):
    """A buffer of 8 hashes: a universe of a few dozen ids is split into parts and squeezed."""
    monkeypatch.setattr(item_source, "_HASH_BUDGET", 8)
    monkeypatch.setattr(item_source, "_BLOCK", 3)
    monkeypatch.setattr(item_source, "_BATCH", 5)


def weak_hash(ident: str) -> int:
    return len(ident) % 3  # most ids collide: only the fingerprint and the texts tell them apart


ids_lists = st.lists(st.integers(0, 60).map(lambda i: f"id-{i}"), max_size=120)


# -- count_unique_ids: the same answer as a set of every id ----------------------------------


@CHECKS
@given(ids_lists)
def test_random_ids_give_what_a_set_gives(ids):
    assert checked(ids) == reference(ids)


@CHECKS
@given(ids_lists)
def test_distinct_ids_are_never_reported_duplicated(ids):
    distinct = list(dict.fromkeys(ids))
    assert checked(distinct) == (len(distinct) if distinct else ["spec.items: the item source is empty"])


@CHECKS
@given(ids_lists, st.sampled_from([(8, 3, 5), (16, 16, 1), (4, 1, 7)]))
def test_a_universe_split_into_parts_gives_the_same_answer(ids, sizes):
    budget, block, batch = sizes
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(item_source, "_HASH_BUDGET", budget)
        patch.setattr(item_source, "_BLOCK", block)
        patch.setattr(item_source, "_BATCH", batch)
        assert checked(ids) == reference(ids)


@CHECKS
@given(ids_lists, st.sampled_from([1 << 20, 4, 0]))
def test_hash_collisions_never_make_a_false_error(ids, text_budget):
    """A weak hash: nearly every id is a candidate; pass 2 (fingerprints, texts) and pass 3
    (when too few texts were kept) must still say exactly what a set says."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(item_source, "hash", weak_hash, raising=False)
        patch.setattr(item_source, "_TEXT_BUDGET", text_budget)
        assert checked(ids) == reference(ids)
        distinct = list(dict.fromkeys(ids))
        assert checked(distinct) == reference(distinct)


def test_many_duplicates_are_listed_five_and_counted(tiny_buffers):
    ids = [f"x{i}" for i in range(40)] * 3
    problems = checked(ids)
    assert problems == reference(ids)
    assert problems[0].startswith("spec.items: item ids must be unique; duplicated: 'x0', 'x1', 'x2', 'x3', 'x4'")
    assert "and 35 more" in problems[0]


def test_duplicates_far_apart_are_found():
    ids = ["far"] + [f"n{i}" for i in range(200_000)] + ["far"]
    assert checked(ids) == [
        "spec.items: item ids must be unique; duplicated: 'far' (set spec.items.idTemplate to build ids from fields)"
    ]


def test_duplicates_far_apart_in_different_parts_are_found(tiny_buffers):
    ids = ["a"] + [f"n{i}" for i in range(300)] + ["b", "a"] + [f"m{i}" for i in range(300)] + ["b"]
    assert checked(ids) == reference(ids)
    assert "'a', 'b'" in checked(ids)[0]


def test_a_nul_comes_first_in_item_order_and_the_template_hint_only_without_one():
    assert checked(["a", "b\x00", "a"])[0].startswith("spec.items: item 2 (id 'b\\x00')")
    items = [{"k": "a"}, {"k": "a"}, {"k": "b\x00"}]
    assert checked(items, "{k}")[0].startswith("spec.items: item 3 ")  # a NUL is refused before duplicates
    assert "idTemplate" not in checked([{"k": "a"}, {"k": "a"}], "{k}")[0]
    assert checked([]) == ["spec.items: the item source is empty"]
    # an item error and a NUL in the same batch: the earlier item's error wins
    assert "has no field" in checked([{"k": "a"}, {"j": 1}, {"k": "\x00"}], "{k}")[0]
    assert "item 2 " in checked([{"k": "a"}, {"k": "\x00"}, {"j": 1}], "{k}")[0]


def test_the_source_is_read_once_when_ids_are_distinct_and_again_only_for_candidates():
    reads = []

    def source(ids):
        def make():
            reads.append(1)
            return iter(ids)

        return make

    assert count_unique_ids(source([f"i{i}" for i in range(1000)]), None) == 1000
    assert len(reads) == 1
    reads.clear()
    with pytest.raises(SpecError):
        count_unique_ids(source(["a", "b", "a"]), None)
    assert len(reads) == 2


def test_a_source_that_changes_between_reads_is_refused():
    reads = iter([["a", "b", "a"], ["a", "b", "a", "c"]])
    with pytest.raises(SpecError, match="changed while its ids were checked"):
        count_unique_ids(lambda: iter(next(reads)), None)


def test_an_iterator_or_a_list_is_still_accepted():
    """Callers that pass a one-shot iterator get the same answers (its ids are kept)."""
    assert count_unique_ids(iter(["a", "b"]), None) == 2
    assert count_unique_ids(["a", "b"], None) == 2
    with pytest.raises(SpecError, match="duplicated: 'a'"):
        count_unique_ids(iter(["a", "b", "a"]), None)
    with pytest.raises(SpecError, match="item 2 "):
        count_unique_ids(iter([{"k": "a"}, {"k": "\x00"}, {"j": 1}]), "{k}")


def test_memory_is_a_fixed_buffer_not_a_set_of_ids(monkeypatch):
    """100,000 ids of 60 characters through a buffer of 2^15 hashes (256 KiB): read in 8 parts."""
    monkeypatch.setattr(item_source, "_HASH_BUDGET", 1 << 15)
    n = 100_000

    def ids():
        return (f"{i:060d}" for i in range(n))

    import numpy  # noqa: F401  (loaded once, as in any process that checked ids before)

    tracemalloc.start()
    try:
        assert count_unique_ids(ids, None) == n
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # a set of the ids: ~14 MB


def test_a_from_uri_file_is_checked_streaming(tmp_path):
    from datasetjob.spec.documents import load_spec_file
    from datasetjob.store.universe import check_universe

    lines = tmp_path / "items.txt"
    lines.write_text("".join(f"item-{i:07d}\n" for i in range(50_000)) + "\n")
    doc = {
        "apiVersion": "datagen.dev/v1alpha1",
        "kind": "DatasetJob",
        "metadata": {"name": "uri"},
        "spec": {"items": {"fromUri": f"file://{lines}"}, "generator": GENERATOR},
    }
    spec_path = tmp_path / "job.json"
    spec_path.write_text(json.dumps(doc))
    assert check_universe(load_spec_file(spec_path)) == 50_000
    with open(lines, "a") as f:
        f.write("item-0000007\n")
    with pytest.raises(SpecError, match="duplicated: 'item-0000007'"):
        check_universe(load_spec_file(spec_path))


# -- products: from the value lists ----------------------------------------------------------

values = st.sampled_from(["a", "b", "ab", "a-b", "-", ":", "1", 1, 2, 12, 1.0, True, None, "\x00", "x" * 300, ""])
products = st.lists(st.lists(values, min_size=1, max_size=4), min_size=1, max_size=3).map(
    lambda lists: tuple((f"k{k}", tuple(v)) for k, v in enumerate(lists))
)
templates = st.none() | st.lists(
    st.tuples(st.sampled_from(["", "-", ":", "/", "{{", "x"]), st.integers(0, 2)), min_size=1, max_size=4
)


def template_text(parts, keys: int) -> str | None:
    if parts is None:
        return None
    return "".join(f"{literal}{{k{k % keys}}}" for literal, k in parts)


@CHECKS
@given(products, templates)
def test_a_product_gives_what_a_set_of_its_ids_gives(product, parts):
    template = template_text(parts, len(product))
    assert product_checked(product, template) == product_reference(product, template)


@CHECKS
@given(products, templates)
def test_a_product_too_big_to_build_is_never_passed_with_duplicates(product, parts):
    """Checked from the value lists only: unique ids pass (or are refused as not provable), duplicates
    are refused, and a NUL or an id too long is found as the item-by-item check finds it."""
    template = template_text(parts, len(product))
    want = product_reference(product, template)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(item_source, "MAX_BUILT_PRODUCT_IDS", 0)
        patch.setattr(item_source, "_count_unique", None)  # building ids would fail
        got = product_checked(product, template)
    if isinstance(want, int):
        assert got == want or "cannot tell from the template" in got[0], got
    elif "must be unique" in want[0]:
        assert "must be unique" in got[0] or "cannot tell from the template" in got[0], got
    else:
        assert got == want


@CHECKS
@given(products, templates)
def test_product_ids_are_built_as_item_id_builds_them(product, parts):
    template = template_text(parts, len(product))
    try:
        want = [item_id(i, template) for i in item_source._product_items(product)]
    except SpecError:
        return  # an id too long: refused before ids are built
    assert list(item_source._product_ids(product, template)) == want


def big_product(keys: int, size: int, text=str) -> tuple:
    return tuple((f"k{k}", tuple(text(i) for i in range(size))) for k in range(keys))


def test_a_product_of_a_billion_items_is_checked_without_building_an_id(monkeypatch):
    monkeypatch.setattr(item_source, "_count_unique", None)
    monkeypatch.setattr(item_source, "item_id", None)
    assert product_id_count(big_product(3, 1000), None) == 10**9
    padded = big_product(3, 1000, lambda i: f"{i:03d}")
    assert product_id_count(padded, "{k0}{k1}{k2}") == 10**9  # same widths: no separator needed
    assert product_id_count(big_product(3, 1000), "{k0}-{k1}-{k2}") == 10**9  # '-' is in no value
    assert product_id_count(big_product(3, 1000), "{k2}:{k0}:{k1}.json") == 10**9


def test_a_big_product_with_duplicates_is_refused_from_its_value_lists(monkeypatch):
    monkeypatch.setattr(item_source, "_count_unique", None)
    product = big_product(3, 1000) + (("k3", ("a", "b")),)
    problems = product_checked(product, "{k0}-{k1}-{k2}")
    assert problems[0].startswith("spec.items: item ids must be unique; duplicated: '0-0-0'")
    assert "does not use product key 'k3'" in problems[0]
    product = big_product(3, 1000) + (("k3", (1, "1")),)
    problems = product_checked(product, "{k0}-{k1}-{k2}-{k3}")
    assert "duplicated: '0-0-0-1'" in problems[0] and "written the same" in problems[0]
    product = big_product(3, 1000) + (("k3", ("a", "b", "a")),)
    assert "lists the same value twice" in product_checked(product, None)[0]


def test_a_big_product_whose_template_cannot_show_unique_ids_is_refused_naming_the_field(monkeypatch):
    monkeypatch.setattr(item_source, "_count_unique", None)
    problems = product_checked(big_product(3, 1000), "{k0}{k1}-{k2}")
    assert problems[0].startswith("spec.items.idTemplate: cannot tell")
    assert "{k0} is followed directly by another field" in problems[0]
    assert str(limits.MAX_BUILT_PRODUCT_IDS) in problems[0] and "MAX_BUILT_PRODUCT_IDS" in problems[0]
    problems = product_checked(big_product(3, 1000, lambda i: f"{i}-"), "{k0}-{k1}-{k2}")
    assert "{k0} is followed by '-'" in problems[0]


def test_a_small_product_that_cannot_be_shown_unique_is_checked_id_by_id():
    product = (("a", ("x", "xy")), ("b", ("yz", "z")))
    assert product_checked(product, "{a}{b}") == product_reference(product, "{a}{b}")  # 'xyz' twice
    assert "duplicated: 'xyz'" in product_checked(product, "{a}{b}")[0]
    assert product_checked(product, "{a}/{b}") == 4


def test_the_first_bad_id_of_a_big_product_is_found_as_the_stream_finds_it(monkeypatch):
    product = big_product(3, 1000) + (("k3", ("ok", "bad\x00")),)
    problems = product_checked(product, "{k0}-{k1}-{k2}-{k3}")
    assert problems[0].startswith("spec.items: item 2 (id '0-0-0-bad\\x00') has a NUL")
    product = (("k0", ("x" * 10, "x" * 509)), ("k1", tuple(range(1000))), ("k2", tuple(range(1000))))
    problems = product_checked(product, "{k0}{k1}{k2}")
    assert "would be longer than" in problems[0] and '"k0":"' + "x" * 20 in problems[0]
    monkeypatch.setattr(item_source, "_BATCH", 7)
    small = (("a", ("p", "q\x00")), ("b", (1, 2, 3)))
    assert product_checked(small, "{a}{b}") == product_reference(small, "{a}{b}")


def test_iter_items_of_a_product_is_checked_from_its_value_lists(monkeypatch):
    """What check_universe passes (a factory of iter_items) reaches the product check."""
    spec = spec_of("big", product={"a": list(range(1000)), "b": list(range(1000))})
    monkeypatch.setattr(item_source, "_count_unique", None)
    assert count_unique_ids(lambda: iter_items(spec.items), None) == 10**6
    assert count_unique_ids(iter_items(spec.items), None) == 10**6
    items = iter_items(spec.items)
    assert next(items) == {"a": 0, "b": 0} and list(itertools.islice(items, 2)) == [{"a": 0, "b": 1}, {"a": 0, "b": 2}]


# -- the operator: never a universe expanded -------------------------------------------------


def test_the_operator_checks_a_billion_item_product_from_its_value_lists(monkeypatch):
    monkeypatch.setattr(item_source, "_count_unique", None)
    product = {f"k{k}": list(range(1000)) for k in range(3)}
    spec = spec_of("big", product=product)
    assert checked_item_total(spec, None) == 10**9
    spec = spec_of("big", product=product, idTemplate="{k0}_{k1}_{k2}")
    assert checked_item_total(spec, None) == 10**9
    spec = spec_of("big", product=product, idTemplate="{k0}{k1}{k2}")
    with pytest.raises(SpecError, match="MAX_BUILT_PRODUCT_IDS"):
        checked_item_total(spec, None)


def test_the_operator_refuses_a_range_with_an_id_template_at_its_first_item():
    spec = spec_of("r", range={"stop": limits.MAX_ITEMS}, idTemplate="{k}")
    with pytest.raises(SpecError, match="items must be objects"):
        checked_item_total(spec, None)


def test_the_operator_checks_a_config_map(monkeypatch):
    spec = spec_of("cm", fromConfigMap={"name": "c", "key": "k"})
    assert checked_item_total(spec, "a\nb\n\nc\n") == 3
    with pytest.raises(SpecError, match="duplicated: 'a'"):
        checked_item_total(spec, "a\nb\na\n")


# -- the item limit --------------------------------------------------------------------------


def test_the_item_limit_is_at_least_a_hundred_million():
    assert limits.MAX_ITEMS >= 10**8
    assert limits.MAX_ITEM_SOURCE_BYTES // 2 < limits.MAX_ITEMS  # a file is held by its byte cap first


@pytest.mark.parametrize("n", [10**8, limits.MAX_ITEMS])
def test_a_range_up_to_the_limit_is_accepted_and_counted_without_expanding(n):
    from datasetjob.store.universe import check_universe

    spec = spec_of("r", range={"stop": n})
    assert check_universe(spec) == n
    assert checked_item_total(spec, None) == n


def test_one_item_over_the_limit_is_refused_naming_the_field():
    with pytest.raises(SpecError) as refused:
        spec_of("r", range={"start": 5, "stop": limits.MAX_ITEMS + 6})
    assert refused.value.problems == [
        f"spec.items.range: {limits.MAX_ITEMS + 1} items, over the limit of {limits.MAX_ITEMS} items per run"
    ]
    product = {"a": list(range(1000)), "b": list(range(1000)), "c": list(range(1001))}
    with pytest.raises(SpecError) as refused:
        spec_of("p", product=product)
    assert refused.value.problems[0].startswith("spec.items.product: 1000 x 1000 x 1001 = 1001000000 items")


def test_dsj_validate_of_a_hundred_million_range(tmp_path: Path, capsys):
    from datasetjob.cli import main

    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: datagen.dev/v1alpha1\nkind: DatasetJob\nmetadata: {name: big}\nspec:\n"
        "  items:\n    range: {stop: 100000000}\n  shards: 100\n  generator: {function: 'json:dumps'}\n"
    )
    assert main(["validate", str(path)]) == 0
    assert "100000000 items" in capsys.readouterr().out


# -- without numpy (the operator's image): the same answers from sets of hashes -----------------


@CHECKS
@given(ids_lists, st.sampled_from([1 << 20, 3, 1]))
def test_without_numpy_the_answer_is_what_a_set_gives(ids, set_hashes):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(item_source, "_have_numpy", lambda: False)
        patch.setattr(item_source, "_SET_HASHES", set_hashes)  # small: the universe is read in parts
        assert checked(ids) == reference(ids)
        distinct = list(dict.fromkeys(ids))
        assert checked(distinct) == reference(distinct)


@CHECKS
@given(ids_lists)
def test_without_numpy_hash_collisions_never_make_a_false_error(ids):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(item_source, "_have_numpy", lambda: False)
        patch.setattr(item_source, "hash", weak_hash, raising=False)
        assert checked(ids) == reference(ids)
        distinct = list(dict.fromkeys(ids))
        assert checked(distinct) == reference(distinct)


def test_without_numpy_a_nul_and_a_changing_source_are_refused(monkeypatch):
    monkeypatch.setattr(item_source, "_have_numpy", lambda: False)
    assert checked(["a", "b\x00", "a"]) == reference(["a", "b\x00", "a"])
    reads = iter([["a", "b"], ["a"]])
    monkeypatch.setattr(item_source, "_SET_HASHES", 1)  # two parts: a second read that differs
    with pytest.raises(SpecError, match="changed while its ids were checked"):
        count_unique_ids(lambda: iter(next(reads)), None)
