# shellcheck shell=bash source-path=SCRIPTDIR
# Sourced by the two image builds, scripts/build-images.sh (the project's images) and
# tests/e2e/harness/node-images.sh (the test node's own images): the machinery they share, so
# that both name, build, archive and prune their images the same way, in the same podman storage
# and under the same lock. The caller sets LOG_TAG and defines usage before sourcing, then fills
# IMAGES (its archived images, in order), UNARCHIVED (images only built on, e.g. a base),
# REF (name -> short reference) and KEY (name -> key).
#
#   parse_args ARG...          PRINT=1 for --print-archives; VERIFY=1 for --verify where the
#                              caller offers it (sets VERIFY=0 before the call)
#   print_archives             with PRINT=1: one ref=archive line per image of IMAGES, then exit
#   start_build WHAT           prerequisites, engine, the build lock, a log line naming WHAT
#   step NAME FN ARGS...       runs FN, logs how long it took (FN sets RESULT=cached or checked)
#   produce NAME BUILD_FN ...  the keyed image and its archive, each made only when missing
#   prune_if_built             after a build: keeps the $KEEP newest keys of IMAGES and the
#                              $KEEP newest builds of UNARCHIVED, removes the rest
#   finish_build               logs every image of IMAGES with its archive, then one
#                              "NAME SIZE MB" line per image (its size unpacked, as a node holds it)
#
# Images and archives are named by the key of their inputs (what makes them, the key of the
# image they start from): several checkouts with different code share the cache without
# rebuilding each other's images or overwriting each other's archives, and --print-archives
# names this checkout's archives without building anything.

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # read by the scripts that source this file
REPO=$(cd "$SCRIPTS_DIR/.." && pwd)
# Podman's config (scripts/images/*.conf), for container-engine.sh.
CONF_DIR=$SCRIPTS_DIR/images
# shellcheck source=common.sh
source "$SCRIPTS_DIR/common.sh"

CACHE_DIR=${DATASETJOB_BUILD_CACHE:-$HOME/.cache/datasetjob}
IMAGES_DIR=$CACHE_DIR/images
ROOTFS_DIR=$CACHE_DIR/rootfs
WORK_ROOT=$CACHE_DIR/work
STORE_DIR=$CACHE_DIR/containers
# Images and archives of this many input keys per image stay in the cache.
KEEP=${DSJ_IMAGES_KEEP:-4}
# shellcheck source=container-engine.sh
source "$SCRIPTS_DIR/container-engine.sh"

IMAGES=()
UNARCHIVED=()
declare -A REF KEY

parse_args() {
    local arg
    PRINT=0
    for arg in "$@"; do
        case $arg in
        --print-archives) PRINT=1 ;;
        --verify)
            [[ -n ${VERIFY:-} ]] || { usage >&2; exit 2; }
            VERIFY=1
            ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
        esac
    done
}

# ---------------------------------------------------------------------------------------
# Debian: package versions come from the machine's own apt sources, so a rootfs builds from
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

# ---------------------------------------------------------------------------------------
# Names, computed from the keys alone (no engine needed).

archive_of() { printf '%s/%s-%s-%s.tar' "$IMAGES_DIR" "$1" "${REF[$1]##*:}" "${KEY[$1]:0:12}"; }
# Podman keeps short names under its local prefix; the plain name points at the newest build.
local_ref() { printf 'localhost/%s' "${REF[$1]}"; }
# The name of the build of the current inputs.
build_ref() { printf 'localhost/dsj-build/%s:%s' "$1" "${KEY[$1]:0:16}"; }

# import_key ROOTFS_KEY CHANGE...: key of an image imported from a rootfs tarball.
import_key() { printf '%s\n' "$@" | sha; }

print_archives() {
    [[ $PRINT == 1 ]] || return 0
    local name
    for name in "${IMAGES[@]}"; do printf '%s=%s\n' "${REF[$name]}" "$(archive_of "$name")"; done
    exit 0
}

# ---------------------------------------------------------------------------------------
# The engine (set up and checked in container-engine.sh) and the lock.

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

start_build() {
    T0=$(now)
    "$SCRIPTS_DIR/install-prerequisites.sh"
    setup_engine
    mkdir -p "$IMAGES_DIR" "$WORK_ROOT"
    # One build at a time per cache, whichever of the two scripts: they share the storage and
    # the archives.
    exec 9>"$IMAGES_DIR/.lock"
    flock -n 9 || {
        log "another build holds $IMAGES_DIR/.lock; waiting for it"
        flock 9
    }
    check_engine
    remove_stale_containers
    log "podman $(podman version --format '{{.Client.Version}}'), $(runc --version | head -n1), storage $STORE_DIR"
    log "Debian $SUITE: $1"
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

# ---------------------------------------------------------------------------------------

# Temporary directories of the steps, removed however the script ends.
WORK_DIRS=()
cleanup() {
    local d
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

# prune: drops the archives and builds of all but the $KEEP most recently used keys of each
# image of IMAGES, and all but the $KEEP newest builds of each image of UNARCHIVED.
prune() {
    local name tag
    for name in "${IMAGES[@]}"; do
        keep_newest "$IMAGES_DIR" "$name-*-????????????.tar"
        for tag in $(podman images --noheading --format '{{.Tag}}' "localhost/dsj-build/$name"); do
            compgen -G "$IMAGES_DIR/$name-*-${tag:0:12}.tar" >/dev/null ||
                podman rmi --force "localhost/dsj-build/$name:$tag" >/dev/null 2>&1 || true
        done
    done
    for name in "${UNARCHIVED[@]}"; do
        for tag in $(podman images --noheading --sort created --format '{{.Tag}}' "localhost/dsj-build/$name" | tail -n +$((KEEP + 1))); do
            podman rmi "localhost/dsj-build/$name:$tag" >/dev/null 2>&1 || true # still in use: kept
        done
    done
    # Replaced and removed images leave untagged layers behind.
    podman image prune --force >/dev/null 2>&1 || true
    RESULT=checked
}

# prune_if_built: the prune step, when a step built something (else there is nothing to drop).
prune_if_built() {
    if [[ $BUILT == 1 ]]; then step prune prune; fi
}

finish_build() {
    local name
    declare -A size
    for name in "${IMAGES[@]}"; do
        size[$name]=$(podman image inspect --format '{{.Size}}' "$(build_ref "$name")" | awk '{ printf "%.0f MB", $1 / 1e6 }')
    done
    log "all images ready in $(elapsed "$T0"):"
    for name in "${IMAGES[@]}"; do log "  ${REF[$name]}=$(archive_of "$name")"; done
    log "image sizes:"
    for name in "${IMAGES[@]}"; do log "  $name ${size[$name]}"; done
}
