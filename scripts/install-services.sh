#!/usr/bin/env bash
# Installs the local services that the integration tests, e2e tests and benchmarks run:
#   - redis-server / redis-cli / redis-benchmark (Debian package, via apt-get)
#   - versitygw, an S3-compatible server (posix backend), built from its Go module into
#     $DATASETJOB_BUILD_CACHE/versitygw-<version>/ (default ~/.cache/datasetjob)
# Versions are pinned in scripts/services.env. Safe to re-run: it only does work that is missing.
#
#   scripts/install-services.sh             both
#   scripts/install-services.sh versitygw   only versitygw (scripts/build-images.sh uses it)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=services.env
source "$SCRIPT_DIR/services.env"

CACHE_DIR="${DATASETJOB_BUILD_CACHE:-$HOME/.cache/datasetjob}"
VERSITYGW_DIR="$CACHE_DIR/versitygw-$VERSITYGW_VERSION"
VERSITYGW_BIN="$VERSITYGW_DIR/versitygw"

T_START=$SECONDS
log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
took() { log "  done in $(( SECONDS - $1 ))s"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' and sudo is not installed; run this script as root or install sudo"
    fi
}

apt_install() {
    # Try without refreshing the package lists first; refresh only if that fails.
    if as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
        return 0
    fi
    log "  apt-get install failed; running apt-get update and retrying"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        || die "apt-get update failed (see the output above)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
        || die "apt-get install $* failed even after apt-get update (see the output above)"
}

# The Debian package starts a system-wide redis on port 6379 where an init system lets it.
# The tests start their own instances on free ports, so stop and disable that one.
stop_system_redis() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
    else
        # No running systemd (containers, CI): stop the SysV service if it started and drop
        # both the rc.d links and the systemd enablement links.
        if [ -x /etc/init.d/redis-server ]; then
            as_root /etc/init.d/redis-server stop >/dev/null 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            as_root update-rc.d redis-server disable >/dev/null 2>&1 || true
        fi
        if command -v systemctl >/dev/null 2>&1; then
            as_root systemctl disable redis-server >/dev/null 2>&1 || true
        fi
    fi
    log "  stopped and disabled the system redis-server service (tests start their own on free ports)"
}

redis_version() { redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'; }

install_redis() {
    local t=$SECONDS
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 \
        && command -v redis-benchmark >/dev/null 2>&1; then
        log "redis: present ($(redis_version))"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 \
        || die "redis-server is not on PATH and apt-get is not available; install redis-server (7.x) by hand"
    log "redis: installing Debian package '$REDIS_APT_PACKAGE' with apt-get"
    apt_install "$REDIS_APT_PACKAGE"
    command -v redis-server >/dev/null 2>&1 \
        || die "apt-get installed $REDIS_APT_PACKAGE but redis-server is still not on PATH"
    stop_system_redis
    log "redis: installed ($(redis_version))"
    took "$t"
}

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
install_redis
install_versitygw

log "ready in $(( SECONDS - T_START ))s:"
log "  redis-server     $(command -v redis-server)"
log "  redis-cli        $(command -v redis-cli)"
log "  redis-benchmark  $(command -v redis-benchmark)"
log "  versitygw        $VERSITYGW_BIN"
