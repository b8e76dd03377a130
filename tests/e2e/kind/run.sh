#!/usr/bin/env bash
# End to end on a kind cluster, for machines with Docker (the test suite itself runs on a
# local control plane and does not need this). Builds the images with the same script as the
# real node (scripts/build-images.sh: podman, cached), loads its archives into kind, installs
# the chart with an in-cluster S3 stand-in, runs the sample and waits for Succeeded.
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

scripts/build-images.sh
REDIS_TAG=
while IFS='=' read -r ref archive; do
  kind load image-archive --name "$CLUSTER" "$archive"
  case $ref in datasetjob/redis:*) REDIS_TAG=${ref##*:} ;; esac
done < <(scripts/build-images.sh --print-archives)

# An S3-compatible server inside the cluster for the sample's output.
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f tests/e2e/kind/s3.yaml
kubectl -n "$NS" rollout status deploy/s3 --timeout=180s
kubectl -n "$NS" create secret generic s3-credentials \
  --from-literal=AWS_ACCESS_KEY_ID=datasetjob --from-literal=AWS_SECRET_ACCESS_KEY=datasetjob-secret \
  --dry-run=client -o yaml | kubectl apply -f -

kubectl apply -f helm/datasetjob/crds/
helm upgrade --install datasetjob helm/datasetjob -n datasetjob-system --create-namespace --wait \
  --set defaultOutput.prefix=s3://datasets \
  --set defaultOutput.endpointUrl=http://s3.$NS.svc:7070 \
  --set defaultOutput.credentialsSecret=s3-credentials \
  --set redis.image.repository=datasetjob/redis --set redis.image.tag="$REDIS_TAG"

kubectl -n "$NS" apply -f manifests/samples/smart-money-flow.yaml
kubectl -n "$NS" wait --for=condition=Ready dsj/smart-money-flow --timeout=1200s
kubectl -n "$NS" get dsj

if [ "${KEEP:-1}" = "0" ]; then kind delete cluster --name "$CLUSTER"; fi
