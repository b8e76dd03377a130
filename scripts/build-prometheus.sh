#!/usr/bin/env bash
# Builds Prometheus and promtool from their Go module, with the installed Go toolchain: promtool
# checks and unit-tests the chart's alert rules (tests/unit/test_alert_rules.py), and the e2e
# tests run Prometheus against the operator (tests/e2e/test_prometheus.py).
#
# It also writes the prometheus-operator CRDs (ServiceMonitor, PrometheusRule, ...) that the
# e2e tests apply to the test API server: controller-gen generates them from the Go API types
# module github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring, as that
# project's own build does (its main module, which ships them as YAML, is not served).
#
# The versions come from PROMETHEUS_VERSION, PROMETHEUS_OPERATOR_VERSION and
# CONTROLLER_TOOLS_VERSION in scripts/versions.env. It shares the cache of
# scripts/build-control-plane.sh:
#
#   $DATASETJOB_BUILD_CACHE (default ~/.cache/datasetjob)/
#     bin/prometheus-<v>/prometheus, promtool
#     bin/prometheus-operator-crds-<v>/monitoring.coreos.com_*.yaml
#     go/mod, go/build         GOMODCACHE and GOCACHE
#
# A run with everything present exits at once. A cold build takes 10-20 minutes on 2 cores.
# Prometheus' module has no replace directives, so a plain `go install module/cmd@version`
# is enough. Without the `builtinassets` tag the web UI is not embedded: the tests use the
# HTTP API only.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$SCRIPT_DIR/versions.env"
# shellcheck source=go-env.sh
source "$SCRIPT_DIR/go-env.sh"

CACHE_DIR=${DATASETJOB_BUILD_CACHE:-$HOME/.cache/datasetjob}
PROM_BIN=$CACHE_DIR/bin/prometheus-$PROMETHEUS_VERSION
PROM_OP_MODULE=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
PROM_OP_CRDS=$CACHE_DIR/bin/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION

print_paths() {
    printf 'prometheus=%s\npromtool=%s\nprometheus-operator-crds=%s\n' \
        "$PROM_BIN/prometheus" "$PROM_BIN/promtool" "$PROM_OP_CRDS"
}
parse_build_args print_paths "$@"

LOG_TAG=prometheus
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"
have() { [[ -x $1 && -s $1 ]]; }
present() {
    have "$PROM_BIN/prometheus" && have "$PROM_BIN/promtool" &&
        [[ -s $PROM_OP_CRDS/monitoring.coreos.com_servicemonitors.yaml ]]
}

T0=$(now)
if [[ $FORCE == 0 ]] && present; then
    log "prometheus $PROMETHEUS_VERSION already built in $PROM_BIN"
    exit 0
fi
command -v go >/dev/null || die "the Go toolchain is not installed (need go >= 1.26.7 on PATH)"
[[ -n ${CONTROLLER_TOOLS_VERSION:-} ]] || die "CONTROLLER_TOOLS_VERSION is not set in scripts/versions.env"

mkdir -p "$CACHE_DIR/bin" "$CACHE_DIR/go/mod" "$CACHE_DIR/go/build" "$CACHE_DIR/work"
# Own lock: the other Go builds may run side by side (the Go caches are safe to share).
hold_build_lock "$CACHE_DIR/.build-prometheus.lock" present "prometheus was"

go_build_env "$CACHE_DIR"

WORK=$(mktemp -d "$CACHE_DIR/work/prometheus-$PROMETHEUS_VERSION.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LOG=$WORK/build.log
mkdir -p "$WORK/out"

# The module's v0.3XX.Y is Prometheus 3.XX.Y: the version both binaries print.
release=${PROMETHEUS_VERSION#v0.}
VERSION_FLAGS="-X github.com/prometheus/common/version.Version=${release:0:1}.${release:1}"

log "go: $(go version)"
log "go install github.com/prometheus/prometheus/cmd/{prometheus,promtool}@$PROMETHEUS_VERSION ..."
if ! (cd "$WORK" && GOBIN=$WORK/out go install -trimpath -ldflags "-s -w $VERSION_FLAGS" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION") >"$LOG" 2>&1; then
    printf '[prometheus] ERROR: build failed after %s; go said (last 40 lines):\n' "$(elapsed "$T0")" >&2
    tail -n 40 "$LOG" | sed 's/^/    /' >&2
    if grep -q 'GOTOOLCHAIN=local' "$LOG"; then
        printf '[prometheus] hint: Prometheus %s needs a newer Go than %s\n' "$PROMETHEUS_VERSION" "$(go env GOVERSION)" >&2
    fi
    exit 1
fi
"$WORK/out/prometheus" --version >/dev/null 2>&1 || die "the built prometheus does not run"
"$WORK/out/promtool" --version >/dev/null 2>&1 || die "the built promtool does not run"

# The CRDs: controller-gen reads the API types through a throwaway module that requires them.
log "controller-gen $CONTROLLER_TOOLS_VERSION: CRDs of $PROM_OP_MODULE@$PROMETHEUS_OPERATOR_VERSION ..."
mkdir -p "$WORK/crdgen" "$WORK/tools" "$WORK/crds"
printf 'module crdgen\n\ngo 1.26.0\n' >"$WORK/crdgen/go.mod"
printf 'package crdgen\n\nimport _ "%s/v1"\n' "$PROM_OP_MODULE" >"$WORK/crdgen/types.go"
if ! (cd "$WORK/crdgen" &&
    GOBIN=$WORK/tools go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION" &&
    go get "$PROM_OP_MODULE@$PROMETHEUS_OPERATOR_VERSION" && go mod tidy &&
    "$WORK/tools/controller-gen" crd:crdVersions=v1 "paths=$PROM_OP_MODULE/v1" "output:crd:dir=$WORK/crds") >>"$LOG" 2>&1; then
    printf '[prometheus] ERROR: generating the prometheus-operator CRDs failed; last 40 lines:\n' >&2
    tail -n 40 "$LOG" | sed 's/^/    /' >&2
    exit 1
fi
[[ -s $WORK/crds/monitoring.coreos.com_servicemonitors.yaml ]] || die "controller-gen wrote no ServiceMonitor CRD"

# Move into place last, so a half-finished build never looks complete.
for pair in "$WORK/out:$PROM_BIN" "$WORK/crds:$PROM_OP_CRDS"; do
    from=${pair%%:*} to=${pair#*:}
    rm -rf "$to.new"
    mv "$from" "$to.new"
    rm -rf "$to"
    mv "$to.new" "$to"
done
log "prometheus $PROMETHEUS_VERSION ready in $PROM_BIN ($(elapsed "$T0"))"
