#!/usr/bin/env bash
# End to end on a kind cluster, for machines with Docker and kind (the test suite itself runs
# on the local one-node cluster of `make cluster` and needs neither). It shares that path's
# steps: the images of scripts/build-images.sh and tests/e2e/harness/node-images.sh (loaded
# into kind from their archives) and the add-ons of the test harness (the S3 server, the chart
# with the same values, the output credentials), then runs the unmodified sample and waits for it.
#
#   tests/e2e/kind/run.sh            # create cluster "datasetjob", run, keep the cluster
#   KEEP=0 tests/e2e/kind/run.sh     # delete the cluster afterwards
set -euo pipefail
cd "$(dirname "$0")/../../.."
CLUSTER=${CLUSTER:-datasetjob}
NS=datasets

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "needs $tool on PATH" >&2; exit 1; }
done

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER"

make venv images
while IFS='=' read -r _ archive; do
  kind load image-archive --name "$CLUSTER" "$archive"
done < <(scripts/build-images.sh --print-archives && tests/e2e/harness/node-images.sh --print-archives)

.venv/bin/python -m tests.e2e.harness install --namespace "$NS"

kubectl -n "$NS" apply -f manifests/samples/smart-money-flow.yaml
kubectl -n "$NS" wait --for=condition=Ready dsj/smart-money-flow --timeout=1200s
kubectl -n "$NS" get dsj

if [ "${KEEP:-1}" = "0" ]; then kind delete cluster --name "$CLUSTER"; fi
