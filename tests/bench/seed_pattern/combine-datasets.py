"""The original combine step: concatenate process-*.csv under one header."""

import glob
import os
import sys

out_dir = sys.argv[1]
files = sorted(glob.glob(os.path.join(out_dir, "process-*.csv")))
header, rows = None, []
for path in files:
    lines = open(path).read().strip().split("\n")
    header = header or lines[0]
    rows.extend(line for line in lines[1:] if line.strip())
open(os.path.join(out_dir, "combined-dataset.csv"), "w").write("\n".join([header] + rows))
print(f"Total rows: {len(rows)}")
