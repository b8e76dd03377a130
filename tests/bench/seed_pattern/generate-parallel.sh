#!/bin/bash
# The original hand-rolled pattern, reproduced faithfully for comparison: split the items over
# N background processes (1 s apart), unique --name per process, wait with exit tracking.
# Usage: generate-parallel.sh ITEMS_FILE OUT_DIR NUM_PROCESSES
set -e
ITEMS_FILE=$1
OUT_DIR=$2
NUM_PROCESSES=${3:-10}
HERE="$(cd "$(dirname "$0")" && pwd)"
mapfile -t ITEMS < "$ITEMS_FILE"

TOTAL=${#ITEMS[@]}
ITEMS_PER_PROCESS=$((TOTAL / NUM_PROCESSES))
mkdir -p "$OUT_DIR/logs"

PIDS=()
for i in $(seq 0 $((NUM_PROCESSES - 1))); do
  START=$((i * ITEMS_PER_PROCESS))
  END=$((START + ITEMS_PER_PROCESS - 1))
  if [ $i -eq $((NUM_PROCESSES - 1)) ]; then
    END=$((TOTAL - 1))
  fi
  SUBSET=()
  for j in $(seq $START $END); do
    SUBSET+=("${ITEMS[$j]}")
  done
  ITEM_LIST=$(IFS=,; echo "${SUBSET[*]}")
  PROCESS_ID=$((i + 1))
  DATASET_NAME="process-${PROCESS_ID}"
  python "$HERE/generate-dataset.py" --items "$ITEM_LIST" --name "$DATASET_NAME" --out "$OUT_DIR" \
    > "$OUT_DIR/logs/process-${PROCESS_ID}.log" 2>&1 &
  PIDS+=($!)
  sleep 1
done

FAILED=0
for i in "${!PIDS[@]}"; do
  if ! wait "${PIDS[$i]}"; then
    FAILED=$((FAILED + 1))
  fi
done
[ $FAILED -eq 0 ] || { echo "$FAILED processes failed"; exit 1; }
