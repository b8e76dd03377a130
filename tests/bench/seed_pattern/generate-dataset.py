"""The per-process generator of the original pattern: items from --items, output --name.csv,
sharing the same on-disk cache as the DatasetJob runs it is compared with."""

import argparse
import csv
import os
import sys

from datasetjob.cache import EmbeddedCache
from datasetjob.sdk.context import Counters, ItemContext
from smart_money.generate import example


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--items", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    cache = EmbeddedCache(os.environ.get("DSJ_EMBEDDED_CACHE_DIR"), namespace="smart-money-flow")
    rows = []
    for item_id in args.items.split(","):
        symbol, date = item_id.split(":")
        ctx = ItemContext(
            item=None, item_id=item_id, shard=args.name, index=0, run_id="seed", cache=cache, counters=Counters()
        )
        rows.append(example({"symbol": symbol, "date": date}, ctx))
        print("✓ Example generated", item_id, flush=True)
    with open(os.path.join(args.out, f"{args.name}.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
