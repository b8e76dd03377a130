#!/usr/bin/env bash
# Builds the Kueue controller that the e2e tests run against the local control plane
# (tests/e2e/test_kueue.py), from its Go module, with the installed Go toolchain.
#
# The version comes from KUEUE_VERSION in scripts/versions.env. It shares the cache of
# scripts/build-control-plane.sh:
#
#   $DATASETJOB_BUILD_CACHE (default ~/.cache/datasetjob)/
#     bin/kueue-<v>/kueue      the controller manager
#     go/mod, go/build         GOMODCACHE and GOCACHE (Kueue's CRDs and webhook manifests are
#                              read by the test harness from go/mod/sigs.k8s.io/kueue@<v>/config)
#
# A run with the binary present exits at once. A build takes about 5 minutes on 2 cores
# with a warm module cache. Kueue's module has no replace directives, so a plain
# `go install module/cmd@version` is enough (no wrapper module as for Kubernetes).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$SCRIPT_DIR/versions.env"
# shellcheck source=go-env.sh
source "$SCRIPT_DIR/go-env.sh"

CACHE_DIR=${DATASETJOB_BUILD_CACHE:-$HOME/.cache/datasetjob}
KUEUE_BIN=$CACHE_DIR/bin/kueue-$KUEUE_VERSION
KUEUE_SRC=$CACHE_DIR/go/mod/sigs.k8s.io/kueue@$KUEUE_VERSION

print_paths() { printf 'kueue=%s\nkueue-source=%s\n' "$KUEUE_BIN/kueue" "$KUEUE_SRC"; }
parse_build_args print_paths "$@"

LOG_TAG=kueue
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"
have() { [[ -x $1 && -s $1 ]]; }
present() { have "$KUEUE_BIN/kueue" && [[ -d $KUEUE_SRC/config/components/crd/bases ]]; }

T0=$(now)
if [[ $FORCE == 0 ]] && present; then
    log "kueue $KUEUE_VERSION already built in $KUEUE_BIN"
    exit 0
fi
command -v go >/dev/null || die "the Go toolchain is not installed (need go >= 1.24 on PATH)"

mkdir -p "$CACHE_DIR/bin" "$CACHE_DIR/go/mod" "$CACHE_DIR/go/build" "$CACHE_DIR/work"
# Own lock: the control-plane build may run side by side (the Go caches are safe to share).
hold_build_lock "$CACHE_DIR/.build-kueue.lock" present "kueue was"

go_build_env "$CACHE_DIR"

WORK=$(mktemp -d "$CACHE_DIR/work/kueue-$KUEUE_VERSION.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LOG=$WORK/build.log
mkdir -p "$WORK/out"

log "go: $(go version)"
log "go install sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION ..."
if ! (cd "$WORK" && GOBIN=$WORK/out go install -trimpath -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
    "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION") >"$LOG" 2>&1; then
    printf '[kueue] ERROR: build failed after %s; go said (last 40 lines):\n' "$(elapsed "$T0")" >&2
    tail -n 40 "$LOG" | sed 's/^/    /' >&2
    if grep -q 'GOTOOLCHAIN=local' "$LOG"; then
        printf '[kueue] hint: Kueue %s needs a newer Go than %s\n' "$KUEUE_VERSION" "$(go env GOVERSION)" >&2
    fi
    exit 1
fi
"$WORK/out/kueue" --help >/dev/null 2>&1 || die "the built kueue does not run"
[[ -d $KUEUE_SRC/config/components/crd/bases ]] || die "no CRDs under $KUEUE_SRC/config/components/crd/bases"

# Move into place last, so a half-finished build never looks complete.
rm -rf "$KUEUE_BIN.new"
mv "$WORK/out" "$KUEUE_BIN.new"
rm -rf "$KUEUE_BIN"
mv "$KUEUE_BIN.new" "$KUEUE_BIN"
log "kueue $KUEUE_VERSION ready in $KUEUE_BIN ($(elapsed "$T0"))"
