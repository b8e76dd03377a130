"""The limits on what a spec may ask for, in one place. Pure constants.

Every process of a run (the runner, each worker, the combine) reads the spec; the runner (or
the operator) checks the whole item universe once, and each worker holds only its own slice.
These bound the memory and time of each one, whatever the input.
"""

# A spec travels in a ConfigMap (1 MiB) in a cluster; locally the same bound keeps parsing cheap.
MAX_SPEC_BYTES = 1 << 20
# What a worker or combine reads is the spec as dsj run or the operator wrote it (indented JSON,
# defaults filled in), which can be a few times the size of the YAML it came from.
MAX_WRITTEN_SPEC_BYTES = 4 * MAX_SPEC_BYTES
# YAML aliases can make a tiny file expand to billions of nodes; count them as if written out.
MAX_EXPANDED_NODES = 1_000_000
# Nesting of mappings and lists (item objects included); far beyond any real spec.
MAX_DEPTH = 64
# Items written in the spec itself (spec.items.values); more go in a file through fromUri.
MAX_INLINE_ITEMS = 100_000
# Items in a run, whatever the source. No process holds the universe any more (a worker holds
# its slice: spec.shards sets its size), so this is not a memory bound; what it bounds is the
# checks of the whole universe and its ids, once per run, which stay bounded at any size
# (item_source; measured by tests/bench/bench_validate.py, 2 CPUs):
# - range: ids are the numbers, unique by construction: O(1) (10^9: `dsj validate` 0.4 s);
# - product: ids checked from the value lists, O(their total length) (10^9 items: 0.5 s),
#   or id by id up to MAX_BUILT_PRODUCT_IDS when the idTemplate cannot show them unique;
# - fromUri / fromConfigMap: streamed, 8 bytes of hash an id in a buffer of at most 128 MiB,
#   the source read again in parts past ~1.6e7 distinct ids (10^7 lines: 7 s, 155 MB peak RSS;
#   a 256 MiB file of 3.4e7 lines: ~75 s, 220 MB). MAX_ITEM_SOURCE_BYTES keeps such a source
#   under ~1.3e8 items (2 bytes a line), so it is held by that cap before this one.
# So 10^9 is a bound on one run's work, not on what checking it costs: at 1 ms of generator
# time an item it is ~12 CPU-days; a bigger dataset is better several DatasetJobs.
MAX_ITEMS = 1_000_000_000
# Product items whose ids are built one by one to check them, when the idTemplate cannot show
# from the value lists that they are unique (or they are not, and the duplicates are listed).
# It runs in the operator too: 10^7 ids take ~4 s and ~150 MB peak RSS (one read of the
# buffer); 10^8 took ~350 s (eight reads), ~200 MB. A bigger product with such a template is refused,
# naming the field and what would let the template show its ids unique.
MAX_BUILT_PRODUCT_IDS = 10_000_000
# What fromUri (or a fromConfigMap key) may read: in total, and on one line.
MAX_ITEM_SOURCE_BYTES = 256 << 20
MAX_ITEM_LINE_BYTES = 1 << 20
# Characters of an item id that spec.items.idTemplate makes: a worker holds its shard's ids, and
# ids travel in file names, argv and log lines.
MAX_ID_LENGTH = 512
# Characters of spec.items.idTemplate (a few hundred placeholders; longer cannot make a short id).
MAX_ID_TEMPLATE_LENGTH = 4096
# Integers a spec may hold: the API server stores them as int64.
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def size_text(n: int) -> str:
    """1048576 -> '1 MiB' (limits are powers of two)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"
