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
# Podman runs with this project's own config (scripts/images/*.conf through CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF); storage lives in $CACHE/containers.
# An image is rebuilt only when its inputs change (Dockerfile, the files it copies, build
# args, base image id): a warm run takes seconds.
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

CACHE_DIR=${DSJ_CACHE_DIR:-${DATASETJOB_CACHE_DIR:-$HOME/.cache/datasetjob}}
IMAGES_DIR=$CACHE_DIR/images
ROOTFS_DIR=$CACHE_DIR/rootfs
BIN_ROOT=$CACHE_DIR/bin
WORK_ROOT=$CACHE_DIR/work
STORE_DIR=$CACHE_DIR/containers

# The chart's appVersion is the version of the project's own images.
APP_VERSION=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$REPO/helm/datasetjob/Chart.yaml")
# Label that records the inputs an image was built from (compared on every run).
KEY_LABEL=dev.datagen.dsj.inputs

log() { printf '[images] %s\n' "$*"; }
die() {
    printf '[images] ERROR: %s\n' "$*" >&2
    exit 1
}
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
sha() { sha256sum | cut -c1-64; }

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

# ---------------------------------------------------------------------------------------
# Debian: suite and package versions come from the machine's own apt sources, so the
# rootfs builds from the mirror this machine is configured for.

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
    # Try without refreshing the package lists first; refresh only if that fails.
    if as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
        return 0
    fi
    log "  apt-get install failed; running apt-get update and retrying"
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" ||
        die "apt-get install $* failed even after apt-get update (see the output above)"
}

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

SUITE=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
[[ -n $SUITE ]] || die "cannot tell the Debian suite of this machine (no VERSION_CODENAME in /etc/os-release)"
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
archive_of() { printf '%s/%s-%s.tar' "$IMAGES_DIR" "$1" "${REF[$1]##*:}"; }
# Podman keeps short names under its local prefix.
local_ref() { printf 'localhost/%s' "${REF[$1]}"; }

if [[ $PRINT == 1 ]]; then
    for name in "${NODE_IMAGES[@]}"; do printf '%s=%s\n' "${REF[$name]}" "$(archive_of "$name")"; done
    exit 0
fi

# ---------------------------------------------------------------------------------------
# Tools and the container engine.

ensure_tools() {
    local missing=() cmd
    # command:package
    local need=(podman:podman runc:runc skopeo:skopeo mmdebstrap:mmdebstrap gcc:gcc readelf:binutils)
    [[ $VERIFY == 1 ]] && need+=(containerd:containerd ctr:containerd)
    for cmd in "${need[@]}"; do
        command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd#*:}")
    done
    # gcc -static needs the C library's static archive.
    [[ -e /usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x)/libc.a || -e /usr/lib/libc.a ]] || missing+=(libc6-dev)
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null 2>&1 || die "missing tools (${missing[*]}) and no apt-get to install them"
        log "installing with apt-get: ${missing[*]}"
        local pkgs
        mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
        apt_install "${pkgs[@]}"
    fi
}

# Points podman and skopeo at the project's config and storage, never /etc/containers.
setup_engine() {
    mkdir -p "$STORE_DIR/storage" "$STORE_DIR/run" "$IMAGES_DIR" "$ROOTFS_DIR" "$WORK_ROOT"
    sed -e "s|@GRAPHROOT@|$STORE_DIR/storage|" -e "s|@RUNROOT@|$STORE_DIR/run|" \
        "$CONF_DIR/storage.conf" >"$STORE_DIR/storage.conf.new"
    mv "$STORE_DIR/storage.conf.new" "$STORE_DIR/storage.conf"
    export CONTAINERS_CONF=$CONF_DIR/containers.conf
    export CONTAINERS_STORAGE_CONF=$STORE_DIR/storage.conf
    export CONTAINERS_REGISTRIES_CONF=$CONF_DIR/registries.conf
    POLICY=$CONF_DIR/policy.json
}

# One clear message when this machine cannot run containers, instead of a hang later.
check_engine() {
    local out
    out=$(runc --version 2>&1) || die "runc: cannot run ($out); containers need a working runc"
    if ! out=$(timeout 60 podman info --format '{{.Store.GraphDriverName}} {{.Host.OCIRuntime.Name}}' 2>&1); then
        die "podman cannot start with this machine's kernel or setup: $(tail -n 3 <<<"$out")"
    fi
    [[ $out == "overlay runc" ]] || die "podman uses '$out' (storage driver, runtime); expected 'overlay runc' from $CONF_DIR"
}

# Runs the pause image (a container with no network): proves that runc can create
# namespaces, cgroups and the overlay root here, before anything slow is built.
check_run() {
    local out
    if ! out=$(timeout 60 podman run --rm --network none --pull=never "$(local_ref pause)" --version 2>&1); then
        die "runc: this machine cannot run a container ($(tail -n 3 <<<"$out" | tr '\n' ' '))"
    fi
    RESULT=checked
}

# ---------------------------------------------------------------------------------------
# Input keys: an image is up to date when its label holds the key of its inputs and its
# archive sits next to a .key file with the same key.

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

image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
image_key() { podman image inspect --format "{{index .Labels \"$KEY_LABEL\"}}" "$1" 2>/dev/null || true; }

# up_to_date NAME KEY: the image in storage and its archive were both made from KEY.
up_to_date() {
    local name=$1 key=$2 archive
    archive=$(archive_of "$name")
    [[ $(image_key "$(local_ref "$name")") == "$key" && -s $archive && $(cat "$archive.key" 2>/dev/null) == "$key" ]]
}

# write_archive NAME KEY: docker-archive with the short name, written atomically.
write_archive() {
    local name=$1 key=$2 archive t
    archive=$(archive_of "$name")
    t=$(now)
    rm -f "$archive.tmp" "$archive.key"
    skopeo copy --quiet --policy "$POLICY" "containers-storage:$(local_ref "$name")" \
        "docker-archive:$archive.tmp:${REF[$name]}" ||
        die "skopeo could not write the archive of ${REF[$name]}"
    mv "$archive.tmp" "$archive"
    printf '%s\n' "$key" >"$archive.key"
    log "  archive $archive ($(du -m "$archive" | cut -f1) MB) in $(elapsed "$t")"
}

# podman_build NAME KEY CONTEXT CONTAINERFILE [ARGS...]: builds and tags the image.
podman_build() {
    local name=$1 key=$2 ctx=$3 file=$4
    shift 4
    podman build --pull=never --signature-policy "$POLICY" --layers=false \
        --label "$KEY_LABEL=$key" -f "$file" -t "$(local_ref "$name")" "$@" "$ctx" >"$STEP_LOG" 2>&1 || {
        tail -n 40 "$STEP_LOG" | sed 's/^/    /' >&2
        die "podman build of ${REF[$name]} failed (log: $STEP_LOG)"
    }
}

# ---------------------------------------------------------------------------------------
# Debian root filesystems (cached tarballs keyed by suite, packages and options).

# Reuse the machine's Debian sources when they name the suite (its mirror, e.g. a local
# one); otherwise mmdebstrap picks its default mirror for the suite.
host_sources() {
    local f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [[ -s $f ]] && grep -qE "^[^#]*(Suites:.*[[:space:]]|[[:space:]])$SUITE([[:space:]]|$)" "$f"; then
            printf '%s' "$f"
            return 0
        fi
    done
}

# Documentation, manual pages and translations are of no use inside a container.
DPKG_OPTS=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/info/*')

# rootfs NAME VARIANT PKG=VER,... [HOOK...]: sets ROOTFS_TAR to the cached tarball, made if missing.
rootfs() {
    local name=$1 variant=$2 include=$3
    shift 3
    local sources key tar
    sources=$(host_sources)
    key=$( {
        printf '%s\n' "$SUITE" "$variant" "$include" "${DPKG_OPTS[@]}" "$@"
        [[ -n $sources ]] && cat "$sources"
    } | sha)
    tar=$ROOTFS_DIR/$name-$SUITE-${key:0:16}.tar
    if [[ ! -s $tar ]]; then
        local t
        t=$(now)
        log "  mmdebstrap --variant=$variant $SUITE: $include ${sources:+(apt sources of $sources)}"
        local hooks=() h
        for h in "$@"; do hooks+=(--customize-hook="$h"); done
        mmdebstrap --quiet --format=tar --variant="$variant" --include="$include" "${DPKG_OPTS[@]}" "${hooks[@]}" \
            "$SUITE" "$tar.tmp" ${sources:+"$sources"} >"$STEP_LOG" 2>&1 || {
            rm -f "$tar.tmp"
            tail -n 30 "$STEP_LOG" | sed 's/^/    /' >&2
            die "mmdebstrap of $name ($SUITE: $include) failed (log: $STEP_LOG; a version gone from the mirror needs 'apt-get update')"
        }
        # Tarballs of older inputs are never used again.
        find "$ROOTFS_DIR" -maxdepth 1 -name "$name-$SUITE-*.tar" ! -name "${tar##*/}" -delete
        mv "$tar.tmp" "$tar"
        log "  rootfs $tar ($(du -m "$tar" | cut -f1) MB) in $(elapsed "$t")"
    fi
    ROOTFS_TAR=$tar
}

# import_rootfs REF TAR CHANGE...: imports the tarball with these Dockerfile-style settings,
# unless REF was already imported from the same tarball and settings.
import_rootfs() {
    local ref=$1 tar=$2
    shift 2
    local key changes=() c
    key=$( { basename "$tar"; printf '%s\n' "$ref" "$@"; } | sha)
    IMPORT_KEY=$key
    if [[ $(image_key "$ref") == "$key" ]]; then RESULT=cached; return 0; fi
    RESULT=built
    changes=(--change "LABEL=$KEY_LABEL=$key")
    for c in "$@"; do changes+=(--change "$c"); done
    podman import --quiet "${changes[@]}" "$tar" "$ref" >/dev/null || die "podman import of $tar as $ref failed"
}

build_base() {
    rootfs python minbase "python3=$PYTHON_DEB,python3-venv,python-is-python3,ca-certificates"
    import_rootfs "$BASE_REF" "$ROOTFS_TAR" 'ENV=LANG=C.UTF-8' 'CMD=["python3"]'
    log "  $BASE_REF $(image_id "$BASE_REF" | cut -c1-12)"
}

build_redis() {
    # The chart runs redis-server as 999:999 with --dir /data (an emptyDir there).
    # shellcheck disable=SC2016 # $1 is the rootfs, expanded by mmdebstrap's hook
    rootfs redis essential "$REDIS_APT_PACKAGE=$REDIS_DEB" 'mkdir -p "$1/data" && chown 999:999 "$1/data"'
    # An imported rootfs has no PATH of its own; the pod's command is a bare "redis-server".
    import_rootfs "$(local_ref redis)" "$ROOTFS_TAR" \
        'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'USER=999:999' 'WORKDIR=/data' 'EXPOSE=6379' 'CMD=["redis-server"]'
    if [[ $RESULT == cached && $(cat "$(archive_of redis).key" 2>/dev/null) == "$IMPORT_KEY" && -s $(archive_of redis) ]]; then
        return 0
    fi
    RESULT=built
    write_archive redis "$IMPORT_KEY"
}

# ---------------------------------------------------------------------------------------
# The project's images from its own Dockerfiles.

# Network for pip (the package index); the host's CA bundle for machines behind a TLS proxy.
PIP_BUILD_OPTS=(--network host -v /etc/ssl/certs:/etc/ssl/certs:ro)

# build_dockerfile NAME DOCKERFILE BASE_REF BUILD_ARG...: builds unless the inputs are unchanged.
build_dockerfile() {
    local name=$1 file=$2 base=$3
    shift 3
    local base_id key args=() a
    base_id=$(image_id "$base")
    [[ -n $base_id ]] || die "base image $base of ${REF[$name]} is not in storage"
    # shellcheck disable=SC2046
    key=$( {
        cat "$REPO/$file"
        printf '%s\n' "$base_id" "$@" "${PIP_BUILD_OPTS[@]}"
        files_key "$REPO" $(copy_sources "$REPO/$file")
        cat "$REPO/.dockerignore" 2>/dev/null || true
    } | sha)
    if up_to_date "$name" "$key"; then RESULT=cached; return 0; fi
    for a in "$@"; do args+=(--build-arg "$a"); done
    podman_build "$name" "$key" "$REPO" "$REPO/$file" "${PIP_BUILD_OPTS[@]}" "${args[@]}"
    write_archive "$name" "$key"
}

# ---------------------------------------------------------------------------------------
# Small images FROM scratch: one static binary each.

is_static() { ! readelf -lW "$1" 2>/dev/null | grep -q 'INTERP'; }

# build_scratch NAME KEY BINARY_FN: BINARY_FN DIR puts the binary into the build context DIR.
build_scratch() {
    local name=$1 key=$2 make_binary=$3 ctx
    if up_to_date "$name" "$key"; then RESULT=cached; return 0; fi
    ctx=$(mktemp -d "$WORK_ROOT/image-$name.XXXXXX")
    WORK_DIRS+=("$ctx")
    "$make_binary" "$ctx"
    local bin
    for bin in "$ctx"/*; do
        is_static "$bin" || die "$bin is linked dynamically; a FROM scratch image needs a static binary"
    done
    podman_build "$name" "$key" "$ctx" "$CONF_DIR/$name/Containerfile"
    write_archive "$name" "$key"
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
        GOBIN=$stage GOMODCACHE=$CACHE_DIR/go/mod GOCACHE=$CACHE_DIR/go/build GOTOOLCHAIN=local \
            GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0 \
            go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION" >"$STEP_LOG" 2>&1 || {
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

# scratch_key NAME VERSION [FILE...]: key of a FROM scratch image.
scratch_key() {
    local name=$1
    shift
    { cat "$CONF_DIR/$name/Containerfile"; printf '%s\n' "${REF[$name]}" "$@"; } | sha
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

T0=$(now)
ensure_tools
setup_engine
# One build at a time per cache (the storage and the archives are shared).
exec 9>"$IMAGES_DIR/.lock"
flock -n 9 || {
    log "another build holds $IMAGES_DIR/.lock; waiting for it"
    flock 9
}
check_engine
log "podman $(podman version --format '{{.Client.Version}}'), $(runc --version | head -n1), storage $STORE_DIR"
log "Debian $SUITE: python3 $PYTHON_DEB, $REDIS_APT_PACKAGE $REDIS_DEB"

# The sandbox image first: it takes seconds and every pod needs it.
step pause build_scratch pause "$(scratch_key pause "$(sha <"$CONF_DIR/pause/pause.c")")" pause_binary
step run-check check_run
step base build_base
BUILD_WORKER=(PYTHON_IMAGE="$BASE_REF")
step worker build_dockerfile worker generator-image/Dockerfile "$BASE_REF" "${BUILD_WORKER[@]}"
step smart-money-example build_dockerfile smart-money-example generator-image/examples/smart_money/Dockerfile \
    "$(local_ref worker)" WORKER_IMAGE="$(local_ref worker)"
step operator build_dockerfile operator operator/Dockerfile "$BASE_REF" PYTHON_IMAGE="$BASE_REF"
step redis build_redis
step versitygw build_scratch versitygw "$(scratch_key versitygw "$VERSITYGW_MODULE@$VERSITYGW_VERSION")" versitygw_binary
step coredns build_scratch coredns "$(scratch_key coredns "$COREDNS_VERSION")" coredns_binary

# Replaced images stay behind untagged; drop them so the storage does not grow per build.
if [[ $BUILT == 1 ]]; then podman image prune --force >/dev/null 2>&1 || true; fi
[[ $VERIFY == 1 ]] && step verify-containerd verify_containerd

log "all images ready in $(elapsed "$T0"):"
for name in "${NODE_IMAGES[@]}"; do
    log "  ${REF[$name]}=$(archive_of "$name") ($(podman image inspect --format '{{.Size}}' "$(local_ref "$name")" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
done
