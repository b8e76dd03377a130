#!/usr/bin/env bash
# Builds the test node's own images, next to the project's (scripts/build-images.sh), without
# a Docker engine or a registry:
#
#   datasetjob/pause     the pod sandbox program in node-images/pause
#   datasetjob/coredns   CoreDNS built from its Go module
#   datasetjob/versitygw the S3-compatible server of the tests
#   datasetjob/redis     Debian's redis-server, for the chart's in-cluster Redis
#
# Each is written as a docker-archive under $CACHE/images/ with its short name; the node
# imports it with `ctr -n k8s.io images import`, which qualifies the name the same way a pod
# spec's image is qualified. The keys, archives, storage and lock are those of
# scripts/image-build.sh, shared with scripts/build-images.sh. A FROM scratch image's key covers
# its Containerfile and what makes its binary; Redis's the Debian packages of its rootfs.
#
#   tests/e2e/harness/node-images.sh                   build what is missing or stale
#   tests/e2e/harness/node-images.sh --print-archives  print image-ref=archive lines, build nothing
#   tests/e2e/harness/node-images.sh --verify          also import every archive (these and
#                                                      scripts/build-images.sh's) into a
#                                                      throw-away containerd
# shellcheck source-path=SCRIPTDIR/../../../scripts
set -euo pipefail

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCES_DIR=$HARNESS_DIR/node-images
LOG_TAG=node-images
usage() {
    cat <<EOF
usage: $0 [--print-archives] [--verify]
  --print-archives  print one image-ref=/path/to/archive.tar line per node image and exit
  --verify          after building, import every archive (also scripts/build-images.sh's) into
                    a throw-away containerd and check the names it lists
EOF
}
VERIFY=0
# shellcheck source=image-build.sh
source "$HARNESS_DIR/../../../scripts/image-build.sh"
parse_args "$@"
# shellcheck source=versions.env
source "$SCRIPTS_DIR/versions.env"
# shellcheck source=services.env
source "$SCRIPTS_DIR/services.env"
# shellcheck source=go-env.sh
source "$SCRIPTS_DIR/go-env.sh"
BIN_ROOT=$CACHE_DIR/bin

REDIS_DEB=$(deb_version "$REDIS_APT_PACKAGE")
REDIS_INCLUDE=$REDIS_APT_PACKAGE=$REDIS_DEB
# The chart runs redis-server as 999:999 with --dir /data (an emptyDir there).
# shellcheck disable=SC2016 # $1 is the rootfs, expanded by mmdebstrap's hook
REDIS_HOOKS=('mkdir -p "$1/data" && chown 999:999 "$1/data"')
# An imported rootfs has no PATH of its own; the pod's command is a bare "redis-server".
REDIS_CHANGES=('ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    'USER=999:999' 'WORKDIR=/data' 'EXPOSE=6379' 'CMD=["redis-server"]')

IMAGES=(redis versitygw coredns pause)
REF=(
    [redis]=datasetjob/redis:$(upstream_version "$REDIS_DEB")
    [versitygw]=datasetjob/versitygw:$VERSITYGW_VERSION
    [coredns]=datasetjob/coredns:$COREDNS_VERSION
    [pause]=datasetjob/pause:$PAUSE_VERSION
)

# scratch_key NAME WHAT...: key of a FROM scratch image (its Containerfile, what makes the binary).
scratch_key() {
    local name=$1
    shift
    { cat "$SOURCES_DIR/$name/Containerfile"; printf '%s\n' "${REF[$name]}" "$@"; } | sha
}

KEY[redis]=$(import_key "$(rootfs_key essential "$REDIS_INCLUDE" "${REDIS_HOOKS[@]}")" "${REDIS_CHANGES[@]}")
KEY[pause]=$(scratch_key pause "$(sha <"$SOURCES_DIR/pause/pause.c")" gcc -static -Os)
KEY[versitygw]=$(scratch_key versitygw "$VERSITYGW_MODULE@$VERSITYGW_VERSION")
KEY[coredns]=$(scratch_key coredns "github.com/coredns/coredns@$COREDNS_VERSION")
print_archives

# Runs the pause image (a container with no network): proves that runc can create
# namespaces, cgroups and the overlay root here, before anything slow is built.
check_run() {
    local out
    if ! out=$(timeout 60 podman run --rm --network none --pull=never "$(build_ref pause)" --version 2>&1); then
        die "runc: this machine cannot run a container ($(tail -n 3 <<<"$out" | tr '\n' ' '))"
    fi
    RESULT=checked
}

redis_image() {
    rootfs redis essential "$REDIS_INCLUDE" "${REDIS_HOOKS[@]}"
    import_rootfs "$ROOTFS_TAR" "$1" "${REDIS_CHANGES[@]}"
}

# ---------------------------------------------------------------------------------------
# Small images FROM scratch: one static binary each.

is_static() { ! readelf -lW "$1" 2>/dev/null | grep -q 'INTERP'; }

# scratch_image NAME BINARY_FN REF: BINARY_FN DIR puts the static binary into the context DIR.
scratch_image() {
    local name=$1 make_binary=$2 ref=$3 ctx bin
    ctx=$(mktemp -d "$WORK_ROOT/image-$name.XXXXXX")
    WORK_DIRS+=("$ctx")
    "$make_binary" "$ctx"
    for bin in "$ctx"/*; do
        is_static "$bin" || die "$bin is linked dynamically; a FROM scratch image needs a static binary"
    done
    podman_build "$ctx" "$SOURCES_DIR/$name/Containerfile" "$ref"
    rm -rf "$ctx"
}

pause_binary() {
    gcc -static -Os -s -Wall -Werror -DVERSION="\"$PAUSE_VERSION\"" -o "$1/pause" "$SOURCES_DIR/pause/pause.c" ||
        die "gcc -static could not build the pause program"
}

versitygw_binary() {
    local bin=$CACHE_DIR/versitygw-$VERSITYGW_VERSION/versitygw
    # A binary from an older build may be dynamic; build it again (CGO_ENABLED=0).
    if [[ -x $bin ]] && ! is_static "$bin"; then
        log "  $bin is not static; rebuilding it"
        rm -f "$bin"
    fi
    "$SCRIPTS_DIR/install-services.sh" versitygw >"$STEP_LOG" 2>&1 || {
        tail -n 30 "$STEP_LOG" | sed 's/^/    /' >&2
        die "scripts/install-services.sh could not build versitygw (log: $STEP_LOG)"
    }
    cp "$bin" "$1/versitygw"
}

coredns_binary() {
    local dir=$BIN_ROOT/coredns-$COREDNS_VERSION
    if [[ ! -x $dir/coredns ]]; then
        command -v go >/dev/null 2>&1 || die "go: the Go toolchain is needed to build CoreDNS and is not on PATH"
        local stage t
        t=$(now)
        log "  go install github.com/coredns/coredns@$COREDNS_VERSION (minutes on 2 cores)"
        stage=$(mktemp -d "$WORK_ROOT/coredns.XXXXXX")
        WORK_DIRS+=("$stage")
        (go_build_env "$CACHE_DIR" && GOBIN=$stage go install -trimpath -ldflags "-s -w" \
            "github.com/coredns/coredns@$COREDNS_VERSION") >"$STEP_LOG" 2>&1 || {
            tail -n 30 "$STEP_LOG" | sed 's/^/    /' >&2
            die "go install github.com/coredns/coredns@$COREDNS_VERSION failed (log: $STEP_LOG; pick a version the Go module proxy serves in scripts/versions.env)"
        }
        mkdir -p "$dir"
        mv "$stage/coredns" "$dir/coredns.new"
        mv "$dir/coredns.new" "$dir/coredns"
        log "  coredns $COREDNS_VERSION built in $(elapsed "$t")"
    fi
    cp "$dir/coredns" "$1/coredns"
}

# ---------------------------------------------------------------------------------------
# Check: import every archive a node imports (these and the project's) into a throw-away
# containerd and list the names it made.

verify_containerd() {
    local dir sock names ok=1 i lines name ref archive short
    lines=$("$SCRIPTS_DIR/build-images.sh" --print-archives) || die "scripts/build-images.sh --print-archives failed"
    for name in "${IMAGES[@]}"; do lines+=$'\n'"${REF[$name]}=$(archive_of "$name")"; done
    dir=$(mktemp -d /tmp/dsj-containerd.XXXXXX)
    CONTAINERD_DIR=$dir
    sock=$dir/containerd.sock
    # Import only: the CRI plugin (and with it CNI) stays off.
    cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
EOF
    containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
    CONTAINERD_PID=$!
    for ((i = 0; i < 100; i++)); do
        ctr --address "$sock" version >/dev/null 2>&1 && break
        kill -0 "$CONTAINERD_PID" 2>/dev/null || die "containerd did not start: $(tail -n 5 "$dir/containerd.log")"
        sleep 0.1
    done
    while IFS='=' read -r ref archive; do
        [[ -s $archive ]] || die "no archive $archive of $ref (build it first: make images)"
        ctr --address "$sock" -n k8s.io images import --snapshotter overlayfs "$archive" >/dev/null ||
            die "ctr images import $archive failed"
    done <<<"$lines"
    names=$(ctr --address "$sock" -n k8s.io images list --quiet)
    while IFS='=' read -r ref _; do
        short=${ref//./\\.}
        # A pod's short image name is qualified with the default registry's domain; the
        # import must have made exactly that name (a domain, then the short name).
        if grep -qxE "[a-z0-9-]+(\.[a-z0-9-]+)+/$short" <<<"$names"; then
            log "  containerd: $(grep -E "/$short\$" <<<"$names")"
        else
            ok=0
            log "  containerd has no qualified name for $ref"
        fi
    done <<<"$lines"
    stop_containerd
    [[ $ok == 1 ]] || die "containerd named the imported images: $names"
    RESULT=checked
}

CONTAINERD_PID=
CONTAINERD_DIR=
stop_containerd() {
    if [[ -n $CONTAINERD_PID ]]; then
        kill "$CONTAINERD_PID" 2>/dev/null || true
        wait "$CONTAINERD_PID" 2>/dev/null || true
        CONTAINERD_PID=
    fi
    if [[ -n $CONTAINERD_DIR ]]; then
        # Snapshots may still be mounted if containerd died mid-import.
        grep -o " $CONTAINERD_DIR/[^ ]*" /proc/self/mounts | sort -r | xargs -r umount 2>/dev/null || true
        rm -rf "$CONTAINERD_DIR"
        CONTAINERD_DIR=
    fi
}
trap 'stop_containerd; cleanup' EXIT

start_build "$REDIS_APT_PACKAGE $REDIS_DEB"
# The sandbox image first: it takes seconds, every pod needs it, and running it proves
# that this machine can run containers at all.
step pause produce pause scratch_image pause pause_binary
step run-check check_run
step redis produce redis redis_image
step versitygw produce versitygw scratch_image versitygw versitygw_binary
step coredns produce coredns scratch_image coredns coredns_binary
prune_if_built
if [[ $VERIFY == 1 ]]; then step verify-containerd verify_containerd; fi
finish_build
