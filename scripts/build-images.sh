#!/usr/bin/env bash
# Builds the container images of a real node without a Docker engine or a registry:
#
#   dsj-python           Python base made from Debian packages (mmdebstrap), in local storage only
#   datasetjob/worker, datasetjob/smart-money-example, datasetjob/operator
#                        from the repository's Dockerfiles as they are (build args only)
#   datasetjob/redis     Debian's redis-server, for the chart's in-cluster Redis
#   datasetjob/versitygw the S3-compatible server of the tests
#   datasetjob/coredns   CoreDNS built from its Go module
#   datasetjob/pause     the pod sandbox program in scripts/images/pause
#
# Every node image is also written as a docker-archive under $CACHE/images/ with its short
# name (`ctr -n k8s.io images import`, `kind load image-archive`, `podman load` take it; the
# importer qualifies the name the same way a pod spec's image is qualified).
#
# Images and archives are named by the key of their inputs (the Dockerfile, the files it
# copies, build args, the key of its base image): several checkouts with different code
# share the cache without rebuilding each other's images or overwriting each other's
# archives, and --print-archives names this checkout's archives without building anything.
# The newest $KEEP keys of each image are kept.
#
# Podman runs with this project's own config (scripts/images/*.conf through CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF); storage lives in $CACHE/containers.
# An image is rebuilt only when its inputs change: a warm run takes seconds.
#
#   scripts/build-images.sh                   build what is missing or stale
#   scripts/build-images.sh --print-archives  print image-ref=archive lines, build nothing
#   scripts/build-images.sh --verify          also import the archives into a scratch containerd
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
CONF_DIR=$SCRIPT_DIR/images
# shellcheck source=versions.env
source "$SCRIPT_DIR/versions.env"
# shellcheck source=services.env
source "$SCRIPT_DIR/services.env"
# shellcheck source=go-env.sh
source "$SCRIPT_DIR/go-env.sh"
LOG_TAG=images
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

CACHE_DIR=${DATASETJOB_BUILD_CACHE:-$HOME/.cache/datasetjob}
IMAGES_DIR=$CACHE_DIR/images
ROOTFS_DIR=$CACHE_DIR/rootfs
BIN_ROOT=$CACHE_DIR/bin
WORK_ROOT=$CACHE_DIR/work
STORE_DIR=$CACHE_DIR/containers

# The chart's appVersion is the version of the project's own images.
APP_VERSION=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$REPO/helm/datasetjob/Chart.yaml")

usage() {
    cat <<EOF
usage: $0 [--print-archives] [--verify]
  --print-archives  print one image-ref=/path/to/archive.tar line per node image and exit
  --verify          after building, import every archive into a throw-away containerd and
                    check the names it lists
EOF
}

PRINT=0
VERIFY=0
for arg in "$@"; do
    case $arg in
    --print-archives) PRINT=1 ;;
    --verify) VERIFY=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

# Images and archives of this many input keys per image stay in the cache.
KEEP=${DSJ_IMAGES_KEEP:-4}
# shellcheck source=container-engine.sh
source "$SCRIPT_DIR/container-engine.sh"

# ---------------------------------------------------------------------------------------
# Debian: package versions come from the machine's own apt sources, so the rootfs builds from
# the mirror this machine is configured for.

# deb_version PKG: the version apt would install (the candidate), e.g. 3.11.2-1+b1.
deb_version() {
    local v
    v=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    if [[ -z $v || $v == "(none)" ]]; then
        apt_update >&2
        v=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    fi
    [[ -n $v && $v != "(none)" ]] || die "apt knows no package $1; check the apt sources of this machine"
    printf '%s' "$v"
}

# upstream_version 5:7.0.15-1~deb12u10 -> 7.0.15
upstream_version() {
    local v=${1#*:}
    printf '%s' "${v%%-*}"
}

PYTHON_DEB=$(deb_version python3)
REDIS_DEB=$(deb_version "$REDIS_APT_PACKAGE")
PY_MINOR=$(upstream_version "$PYTHON_DEB" | cut -d. -f1,2)
REDIS_VERSION=$(upstream_version "$REDIS_DEB")

BASE_REF=localhost/dsj-python:$PY_MINOR-$SUITE

# The node images: name, short reference and archive.
NODE_IMAGES=(worker smart-money-example operator redis versitygw coredns pause)
declare -A REF=(
    [worker]=datasetjob/worker:$APP_VERSION
    [smart-money-example]=datasetjob/smart-money-example:$APP_VERSION
    [operator]=datasetjob/operator:$APP_VERSION
    [redis]=datasetjob/redis:$REDIS_VERSION
    [versitygw]=datasetjob/versitygw:$VERSITYGW_VERSION
    [coredns]=datasetjob/coredns:$COREDNS_VERSION
    [pause]=datasetjob/pause:$PAUSE_VERSION
)
declare -A KEY
archive_of() { printf '%s/%s-%s-%s.tar' "$IMAGES_DIR" "$1" "${REF[$1]##*:}" "${KEY[$1]:0:12}"; }
# Podman keeps short names under its local prefix; the plain name points at the newest build.
local_ref() { printf 'localhost/%s' "${REF[$1]}"; }
# The name of the build of the current inputs.
build_ref() { printf 'localhost/dsj-build/%s:%s' "$1" "${KEY[$1]:0:16}"; }

# ---------------------------------------------------------------------------------------
# The container engine (set up and checked in container-engine.sh).

# A build killed midway (Ctrl-C, a timeout) leaves its working container in the storage, its
# overlay still mounted. Called under the build lock: no build runs, so every one left is stale.
remove_stale_containers() {
    local ids
    ids=$(podman ps --all --external --quiet 2>/dev/null) || return 0
    [[ -z $ids ]] && return 0
    log "removing $(wc -w <<<"$ids") container(s) left in $STORE_DIR by an interrupted build"
    # shellcheck disable=SC2086 # one argument per id
    podman rm --force --storage $ids >/dev/null 2>&1 || log "  could not remove them all: podman rm --storage $ids"
}

# Runs the pause image (a container with no network): proves that runc can create
# namespaces, cgroups and the overlay root here, before anything slow is built.
check_run() {
    local out
    if ! out=$(timeout 60 podman run --rm --network none --pull=never "$(build_ref pause)" --version 2>&1); then
        die "runc: this machine cannot run a container ($(tail -n 3 <<<"$out" | tr '\n' ' '))"
    fi
    RESULT=checked
}

# ---------------------------------------------------------------------------------------
# Input keys, computed from the inputs alone (no engine needed).

# files_key CONTEXT PATH...: hash of the names and contents of the files under PATHs,
# leaving out what .dockerignore leaves out of the build context.
files_key() {
    local ctx=$1
    shift
    (cd "$ctx" && find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 |
        LC_ALL=C sort -z | xargs -0r sha256sum) | sha
}

# copy_sources DOCKERFILE: the build-context paths its COPY/ADD lines read.
copy_sources() {
    awk 'toupper($1) == "COPY" || toupper($1) == "ADD" {
        n = 0; from = 0
        for (i = 2; i <= NF; i++) { if ($i ~ /^--from=/) from = 1; else if ($i !~ /^--/) src[++n] = $i }
        if (!from) for (i = 1; i < n; i++) print src[i]
        delete src
    }' "$1"
}

# dockerfile_key DOCKERFILE BASE_KEY BUILD_ARG...
dockerfile_key() {
    local file=$1
    shift
    # shellcheck disable=SC2046
    {
        cat "$REPO/$file"
        printf '%s\n' "$@" "${PIP_BUILD_OPTS[@]}"
        files_key "$REPO" $(copy_sources "$REPO/$file")
        cat "$REPO/.dockerignore" 2>/dev/null || true
    } | sha
}

# scratch_key NAME WHAT...: key of a FROM scratch image (its Containerfile, what makes the binary).
scratch_key() {
    local name=$1
    shift
    { cat "$CONF_DIR/$name/Containerfile"; printf '%s\n' "${REF[$name]}" "$@"; } | sha
}

# import_key ROOTFS_KEY CHANGE...: key of an image imported from a rootfs tarball.
import_key() { printf '%s\n' "$@" | sha; }

# Network for pip (the package index); the host's CA bundle for machines behind a TLS proxy.
PIP_BUILD_OPTS=(--network host -v /etc/ssl/certs:/etc/ssl/certs:ro)

BASE_INCLUDE=python3=$PYTHON_DEB,python3-venv,python-is-python3,ca-certificates
BASE_CHANGES=('ENV=LANG=C.UTF-8' 'CMD=["python3"]')
REDIS_INCLUDE=$REDIS_APT_PACKAGE=$REDIS_DEB
# The chart runs redis-server as 999:999 with --dir /data (an emptyDir there).
# shellcheck disable=SC2016 # $1 is the rootfs, expanded by mmdebstrap's hook
REDIS_HOOKS=('mkdir -p "$1/data" && chown 999:999 "$1/data"')
# An imported rootfs has no PATH of its own; the pod's command is a bare "redis-server".
REDIS_CHANGES=('ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    'USER=999:999' 'WORKDIR=/data' 'EXPOSE=6379' 'CMD=["redis-server"]')

compute_keys() {
    KEY[base]=$(import_key "$(rootfs_key minbase "$BASE_INCLUDE")" "${BASE_CHANGES[@]}")
    KEY[worker]=$(dockerfile_key generator-image/Dockerfile "${KEY[base]}" PYTHON_IMAGE="$(build_ref base)")
    KEY[smart-money-example]=$(dockerfile_key generator-image/examples/smart_money/Dockerfile \
        "${KEY[worker]}" WORKER_IMAGE="$(build_ref worker)")
    KEY[operator]=$(dockerfile_key operator/Dockerfile "${KEY[base]}" PYTHON_IMAGE="$(build_ref base)")
    KEY[redis]=$(import_key "$(rootfs_key essential "$REDIS_INCLUDE" "${REDIS_HOOKS[@]}")" "${REDIS_CHANGES[@]}")
    KEY[pause]=$(scratch_key pause "$(sha <"$CONF_DIR/pause/pause.c")" gcc -static -Os)
    KEY[versitygw]=$(scratch_key versitygw "$VERSITYGW_MODULE@$VERSITYGW_VERSION")
    KEY[coredns]=$(scratch_key coredns "github.com/coredns/coredns@$COREDNS_VERSION")
}


# ---------------------------------------------------------------------------------------
# Building: each image is made under its keyed name unless that exists, and its archive is
# written unless it exists.

image_exists() { podman image exists "$1" 2>/dev/null; }

# write_archive NAME: docker-archive with the short name, written atomically.
write_archive() {
    local name=$1 archive t
    archive=$(archive_of "$name")
    t=$(now)
    rm -f "$archive.tmp"
    skopeo copy --quiet --policy "$POLICY" "containers-storage:$(build_ref "$name")" \
        "docker-archive:$archive.tmp:${REF[$name]}" ||
        die "skopeo could not write the archive of ${REF[$name]}"
    mv "$archive.tmp" "$archive"
    log "  archive $archive ($(du -m "$archive" | cut -f1) MB) in $(elapsed "$t")"
}

# produce NAME BUILD_FN ARGS...: BUILD_FN ARGS... REF builds the image as REF when it is
# missing; then the archive is written when missing, and the plain name points at REF.
produce() {
    local name=$1
    shift
    local ref archive
    ref=$(build_ref "$name")
    archive=$(archive_of "$name")
    if image_exists "$ref"; then
        if [[ -s $archive ]]; then
            RESULT=cached
            touch "$archive" # recently used: kept by keep_newest
        else
            write_archive "$name"
        fi
    else
        "$@" "$ref"
        write_archive "$name"
    fi
    podman tag "$ref" "$(local_ref "$name")"
}

# podman_build CONTEXT CONTAINERFILE ARGS... REF
podman_build() {
    local ctx=$1 file=$2
    shift 2
    local ref=${*: -1}
    podman build --pull=never --signature-policy "$POLICY" --layers=false \
        -f "$file" -t "$ref" "${@:1:$#-1}" "$ctx" >"$STEP_LOG" 2>&1 || {
        tail -n 40 "$STEP_LOG" | sed 's/^/    /' >&2
        die "podman build of $ref failed (log: $STEP_LOG)"
    }
}

build_base() {
    local ref
    ref=$(build_ref base)
    if image_exists "$ref"; then
        RESULT=cached
    else
        rootfs python minbase "$BASE_INCLUDE"
        import_rootfs "$ROOTFS_TAR" "$ref" "${BASE_CHANGES[@]}"
    fi
    podman tag "$ref" "$BASE_REF"
    log "  $BASE_REF = $ref"
}

redis_image() {
    rootfs redis essential "$REDIS_INCLUDE" "${REDIS_HOOKS[@]}"
    import_rootfs "$ROOTFS_TAR" "$1" "${REDIS_CHANGES[@]}"
}

# dockerfile_image DOCKERFILE BUILD_ARG... REF: the repository's Dockerfile as it is.
dockerfile_image() {
    local file=$1 args=() a
    shift
    for a in "${@:1:$#-1}"; do args+=(--build-arg "$a"); done
    podman_build "$REPO" "$REPO/$file" "${PIP_BUILD_OPTS[@]}" "${args[@]}" "${@: -1}"
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
    podman_build "$ctx" "$CONF_DIR/$name/Containerfile" "$ref"
    rm -rf "$ctx"
}

pause_binary() {
    gcc -static -Os -s -Wall -Werror -DVERSION="\"$PAUSE_VERSION\"" -o "$1/pause" "$CONF_DIR/pause/pause.c" ||
        die "gcc -static could not build the pause program"
}

versitygw_binary() {
    local bin=$CACHE_DIR/versitygw-$VERSITYGW_VERSION/versitygw
    # A binary from an older build may be dynamic; build it again (CGO_ENABLED=0).
    if [[ -x $bin ]] && ! is_static "$bin"; then
        log "  $bin is not static; rebuilding it"
        rm -f "$bin"
    fi
    "$SCRIPT_DIR/install-services.sh" versitygw >"$STEP_LOG" 2>&1 || {
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
# Check: import every archive into a throw-away containerd and list the names it made.

verify_containerd() {
    local dir sock names name ok=1 i
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
    for name in "${NODE_IMAGES[@]}"; do
        ctr --address "$sock" -n k8s.io images import --snapshotter overlayfs "$(archive_of "$name")" >/dev/null ||
            die "ctr images import $(archive_of "$name") failed"
    done
    names=$(ctr --address "$sock" -n k8s.io images list --quiet)
    local short
    for name in "${NODE_IMAGES[@]}"; do
        short=${REF[$name]//./\\.}
        # A pod's short image name is qualified with the default registry's domain; the
        # import must have made exactly that name (a domain, then the short name).
        if grep -qxE "[a-z0-9-]+(\.[a-z0-9-]+)+/$short" <<<"$names"; then
            log "  containerd: $(grep -E "/$short\$" <<<"$names")"
        else
            ok=0
            log "  containerd has no qualified name for ${REF[$name]}"
        fi
    done
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

# ---------------------------------------------------------------------------------------

WORK_DIRS=()
cleanup() {
    local d
    stop_containerd
    for d in "${WORK_DIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

# step NAME FN ARGS...: runs FN (which sets RESULT=cached when it had nothing to do) and
# prints how long it took.
BUILT=0
RESULT=
step() {
    local name=$1 t
    shift
    t=$(now)
    STEP_LOG=$WORK_ROOT/images-$name.log
    RESULT=built
    "$@"
    if [[ $RESULT == cached ]]; then
        log "$name: up to date ($(elapsed "$t"))"
    elif [[ $RESULT == checked ]]; then
        log "$name: ok ($(elapsed "$t"))"
    else
        BUILT=1
        log "$name: $RESULT in $(elapsed "$t")"
    fi
}

# prune: drops the archives and builds of all but the $KEEP most recently used keys per image.
prune() {
    local name tag
    for name in "${NODE_IMAGES[@]}"; do
        keep_newest "$IMAGES_DIR" "$name-*-????????????.tar"
        for tag in $(podman images --noheading --format '{{.Tag}}' "localhost/dsj-build/$name"); do
            compgen -G "$IMAGES_DIR/$name-*-${tag:0:12}.tar" >/dev/null ||
                podman rmi --force "localhost/dsj-build/$name:$tag" >/dev/null 2>&1 || true
        done
    done
    for tag in $(podman images --noheading --sort created --format '{{.Tag}}' localhost/dsj-build/base | tail -n +$((KEEP + 1))); do
        podman rmi "localhost/dsj-build/base:$tag" >/dev/null 2>&1 || true # still in use: kept
    done
    # Replaced and removed images leave untagged layers behind.
    podman image prune --force >/dev/null 2>&1 || true
    RESULT=checked
}

compute_keys
if [[ $PRINT == 1 ]]; then
    for name in "${NODE_IMAGES[@]}"; do printf '%s=%s\n' "${REF[$name]}" "$(archive_of "$name")"; done
    exit 0
fi

T0=$(now)
"$SCRIPT_DIR/install-prerequisites.sh"
setup_engine
mkdir -p "$IMAGES_DIR" "$WORK_ROOT"
# One build at a time per cache (the storage and the archives are shared).
exec 9>"$IMAGES_DIR/.lock"
flock -n 9 || {
    log "another build holds $IMAGES_DIR/.lock; waiting for it"
    flock 9
}
check_engine
remove_stale_containers
log "podman $(podman version --format '{{.Client.Version}}'), $(runc --version | head -n1), storage $STORE_DIR"
log "Debian $SUITE: python3 $PYTHON_DEB, $REDIS_APT_PACKAGE $REDIS_DEB"

# The sandbox image first: it takes seconds, every pod needs it, and running it proves
# that this machine can run containers at all.
step pause produce pause scratch_image pause pause_binary
step run-check check_run
step base build_base
step worker produce worker dockerfile_image generator-image/Dockerfile PYTHON_IMAGE="$(build_ref base)"
step smart-money-example produce smart-money-example dockerfile_image generator-image/examples/smart_money/Dockerfile \
    WORKER_IMAGE="$(build_ref worker)"
step operator produce operator dockerfile_image operator/Dockerfile PYTHON_IMAGE="$(build_ref base)"
step redis produce redis redis_image
step versitygw produce versitygw scratch_image versitygw versitygw_binary
step coredns produce coredns scratch_image coredns coredns_binary
[[ $BUILT == 1 ]] && step prune prune
[[ $VERIFY == 1 ]] && step verify-containerd verify_containerd

log "all images ready in $(elapsed "$T0"):"
for name in "${NODE_IMAGES[@]}"; do
    log "  ${REF[$name]}=$(archive_of "$name") ($(podman image inspect --format '{{.Size}}' "$(build_ref "$name")" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
done
