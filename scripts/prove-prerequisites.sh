#!/usr/bin/env bash
# Proves scripts/prerequisites.txt on a clean machine: a minimal Debian root file system of this
# machine's release (mmdebstrap --variant=minbase, plus python3, which every machine of this
# project comes with) runs scripts/install-prerequisites.sh in a container (podman,
# --network host, the machine's apt configuration), then `scripts/doctor.py
# --installed-by-scripts` there: exit 0 only when nothing the scripts should install is missing.
#
# The root file system is cached under $DATASETJOB_BUILD_CACHE/rootfs (keyed by suite, packages
# and apt sources) and imported once into the project's podman storage; every run starts from it
# unchanged, and the container is removed afterwards.
#
#   scripts/prove-prerequisites.sh                     install with scripts/install-prerequisites.sh
#   scripts/prove-prerequisites.sh --install 'CMD'     install with CMD instead (run in the
#                                                      checkout, e.g. an older install path)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
CONF_DIR=$SCRIPT_DIR/images
CACHE_DIR=${DATASETJOB_BUILD_CACHE:-$HOME/.cache/datasetjob}
STORE_DIR=$CACHE_DIR/containers
ROOTFS_DIR=$CACHE_DIR/rootfs
WORK_ROOT=$CACHE_DIR/work
KEEP=2
LOG_TAG=clean-root
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"
# shellcheck source=container-engine.sh
source "$SCRIPT_DIR/container-engine.sh"

INSTALL=scripts/install-prerequisites.sh
case ${1:-} in
--install)
    [[ -n ${2:-} ]] || die "usage: $0 [--install 'CMD']"
    INSTALL=$2
    ;;
"") ;;
*) die "usage: $0 [--install 'CMD']" ;;
esac

T0=$(now)
"$SCRIPT_DIR/install-prerequisites.sh" >/dev/null || die "this machine lacks its own prerequisites (make doctor)"
setup_engine
mkdir -p "$WORK_ROOT"
check_engine
STEP_LOG=$WORK_ROOT/clean-root.log

rootfs clean-root minbase python3
ref=localhost/dsj-build/clean-root:$(sha256sum "$ROOTFS_TAR" | cut -c1-16)
if ! podman image exists "$ref"; then
    podman import --quiet --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$ROOTFS_TAR" "$ref" >/dev/null || die "podman import of $ROOTFS_TAR failed"
fi
log "a clean Debian $SUITE (minbase + python3) from $ROOTFS_TAR ($(elapsed "$T0"))"
log "installing with: $INSTALL"

# The checkout read-only at /src; the machine's apt sources and settings, as a new machine has them.
status=0
podman run --rm --network host --pull=never \
    -v "$REPO:/src:ro" -v /etc/apt:/etc/apt:ro -v /etc/ssl/certs:/etc/ssl/certs:ro \
    -e PYTHONDONTWRITEBYTECODE=1 -e DEBIAN_FRONTEND=noninteractive -w /src "$ref" \
    bash -c "if ($INSTALL) >/tmp/install.log 2>&1; then grep '^\[prerequisites\]' /tmp/install.log || true
        else echo '--- the install failed; its last lines:'; tail -n 15 /tmp/install.log; fi
        python3 scripts/doctor.py --installed-by-scripts" || status=$?
log "done in $(elapsed "$T0")"
exit "$status"
