# shellcheck shell=bash
# Sourced by the scripts in this folder: logging, timing, root and apt. The caller sets LOG_TAG
# (the bracketed prefix of its lines) before sourcing.
#
#   log MSG / die MSG        a line on stdout / an error line on stderr, then exit 1
#   now / elapsed START      a timestamp / the seconds since START, e.g. 3.2s
#   as_root CMD...           CMD as root (directly, else through sudo)
#   apt_install PKG...       apt-get install, refreshing the package lists once if that fails

log() { printf '[%s] %s\n' "$LOG_TAG" "$*"; }
die() {
    printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2
    exit 1
}
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' and sudo is not installed; run this script as root or install sudo"
    fi
}

APT_UPDATED=0
apt_update() {
    [[ $APT_UPDATED == 1 ]] && return 0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || die "apt-get update failed (see the output above)"
    APT_UPDATED=1
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get is not available to install: $*"
    # Without refreshing the package lists first: a fresh machine's lists may be missing, so a
    # failure refreshes them once and tries again.
    if as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
        return 0
    fi
    log "  apt-get install failed; running apt-get update and retrying"
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" ||
        die "apt-get install $* failed even after apt-get update (see the output above)"
}
