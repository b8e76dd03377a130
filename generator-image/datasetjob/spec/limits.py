"""The limits on what a spec may ask for, in one place. Pure constants.

Every process of a run (the runner, each worker, the combine) reads the spec and expands the
whole item universe, so these bound the memory and time of each one, whatever the input.
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
# Items in a run, whatever the source. Each worker holds the universe and its ids: measured
# (tests/bench/bench_validate.py) ~190 bytes an item for numbers, ~600 for small objects.
MAX_ITEMS = 2_000_000
# What fromUri (or a fromConfigMap key) may read: in total, and on one line.
MAX_ITEM_SOURCE_BYTES = 256 << 20
MAX_ITEM_LINE_BYTES = 1 << 20
# Characters of an item id that spec.items.idTemplate makes: ids are held once per item by every
# process, and travel in file names, argv and log lines.
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
