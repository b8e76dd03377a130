#!/usr/bin/env bash
# Installs the local services that the integration tests, e2e tests and benchmarks run:
#   - redis-server / redis-cli / redis-benchmark (Debian packages: scripts/install-prerequisites.sh)
#   - versitygw, an S3-compatible server (posix backend), built from its Go module into
#     $DATASETJOB_BUILD_CACHE/versitygw-<version>/ (default ~/.cache/datasetjob)
# Versions are pinned in scripts/services.env. Safe to re-run: it only does work that is missing.
#
#   scripts/install-services.sh             both
#   scripts/install-services.sh versitygw   only versitygw (tests/e2e/harness/node-images.sh uses it)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=services.env
source "$SCRIPT_DIR/services.env"

CACHE_DIR="${DATASETJOB_BUILD_CACHE:-$HOME/.cache/datasetjob}"
VERSITYGW_DIR="$CACHE_DIR/versitygw-$VERSITYGW_VERSION"
VERSITYGW_BIN="$VERSITYGW_DIR/versitygw"

T_START=$SECONDS
LOG_TAG=services
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"
took() { log "  done in $(( SECONDS - $1 ))s"; }

redis_version() { redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'; }

install_versitygw() {
    local t=$SECONDS
    if [ -x "$VERSITYGW_BIN" ] && "$VERSITYGW_BIN" --version >/dev/null 2>&1; then
        log "versitygw: present ($VERSITYGW_VERSION)"
        return 0
    fi
    command -v go >/dev/null 2>&1 \
        || die "the Go toolchain is needed to build versitygw and 'go' is not on PATH"
    log "versitygw: building $VERSITYGW_MODULE/cmd/versitygw@$VERSITYGW_VERSION with $(go env GOVERSION)"
    log "  (first build downloads modules and compiles; takes a few minutes on 2 cores)"
    mkdir -p "$VERSITYGW_DIR" "$CACHE_DIR/go/mod" "$CACHE_DIR/go/build"
    # Install into a staging dir so an interrupted build never leaves a half-written binary.
    local stage
    stage="$(mktemp -d "$VERSITYGW_DIR/.stage.XXXXXX")"
    if ! GOBIN="$stage" GOMODCACHE="$CACHE_DIR/go/mod" GOCACHE="$CACHE_DIR/go/build" \
        GOFLAGS="-trimpath -modcacherw" CGO_ENABLED=0 \
        go install -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" \
        "$VERSITYGW_MODULE/cmd/versitygw@$VERSITYGW_VERSION"; then
        rm -rf "$stage"
        die "go install $VERSITYGW_MODULE/cmd/versitygw@$VERSITYGW_VERSION failed (see the output above)"
    fi
    mv -f "$stage/versitygw" "$VERSITYGW_BIN"
    rm -rf "$stage"
    "$VERSITYGW_BIN" --version >/dev/null 2>&1 \
        || die "built $VERSITYGW_BIN but '$VERSITYGW_BIN --version' fails"
    log "versitygw: installed $VERSITYGW_VERSION"
    took "$t"
}

case "${1:-all}" in
versitygw)
    install_versitygw
    log "versitygw ready: $VERSITYGW_BIN"
    exit 0
    ;;
all) ;;
*) die "usage: $0 [versitygw]" ;;
esac

log "installing test services (versions from scripts/services.env)"
# redis-server and its tools are Debian packages on the prerequisites list.
"$SCRIPT_DIR/install-prerequisites.sh"
install_versitygw

log "ready in $(( SECONDS - T_START ))s (redis $(redis_version)):"
log "  redis-server     $(command -v redis-server)"
log "  redis-cli        $(command -v redis-cli)"
log "  redis-benchmark  $(command -v redis-benchmark)"
log "  versitygw        $VERSITYGW_BIN"
