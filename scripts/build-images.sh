#!/usr/bin/env bash
# Builds the project's container images without a Docker engine or a registry:
#
#   dsj-python           Python base made from Debian packages (mmdebstrap), in local storage only
#   datasetjob/worker, datasetjob/worker-tables, datasetjob/smart-money-example,
#   datasetjob/llm-labels-example, datasetjob/operator
#                        from the repository's Dockerfiles as they are (build args only)
#
# Each of the five is also written as a docker-archive under $CACHE/images/ with its short name
# (`ctr -n k8s.io images import`, `kind load image-archive`, `podman load` take it). The test
# node's own images (pause, CoreDNS, S3, Redis) are tests/e2e/harness/node-images.sh's; both
# scripts share scripts/image-build.sh (keys, archives, storage, lock).
#
# A Dockerfile image's key covers the Dockerfile, the files it copies, the build args and the
# key of its base image. Podman runs with this project's own config (scripts/images/*.conf);
# storage lives in $CACHE/containers. An image is rebuilt only when its inputs change.
#
#   scripts/build-images.sh                   build what is missing or stale
#   scripts/build-images.sh --print-archives  print image-ref=archive lines, build nothing
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_TAG=images
usage() {
    cat <<EOF
usage: $0 [--print-archives]
  --print-archives  print one image-ref=/path/to/archive.tar line per image and exit
EOF
}
# shellcheck source=image-build.sh
source "$SCRIPT_DIR/image-build.sh"
parse_args "$@"

# The chart's appVersion is the version of the project's own images.
APP_VERSION=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$REPO/helm/datasetjob/Chart.yaml")
PYTHON_DEB=$(deb_version python3)
PY_MINOR=$(upstream_version "$PYTHON_DEB" | cut -d. -f1,2)
BASE_REF=localhost/dsj-python:$PY_MINOR-$SUITE
# Every pod pulls the base: the Essential packages only (no apt: images add Python libraries
# with pip, never Debian packages), merged /usr made by the hook (the usrmerge package would pull
# in perl, ~45 MB), no glibc charset converters (Python has its own codecs) and, once every
# package is installed, no perl-base (only package maintainer scripts run it).
# libstdc++ for the compiled wheels (numpy, pyarrow, DuckDB, re2).
BASE_VARIANT=essential
BASE_INCLUDE=python3=$PYTHON_DEB,python3-venv,python-is-python3,ca-certificates,libstdc++6
# shellcheck disable=SC2016 # $1 is the rootfs, expanded by mmdebstrap's hook
BASE_OPTS=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --dpkgopt='path-exclude=/usr/lib/*/gconv/*'
    'rm -rf "$1"/usr/lib/*/perl-base "$1"/usr/bin/perl "$1"/usr/bin/perl5.*')
BASE_CHANGES=('ENV=LANG=C.UTF-8' 'CMD=["python3"]')
# Network for pip (the package index); the host's CA bundle for machines behind a TLS proxy.
PIP_BUILD_OPTS=(--network host -v /etc/ssl/certs:/etc/ssl/certs:ro)

IMAGES=(worker worker-tables smart-money-example llm-labels-example operator)
UNARCHIVED=(base)
REF=(
    [worker]=datasetjob/worker:$APP_VERSION
    [worker-tables]=datasetjob/worker-tables:$APP_VERSION
    [smart-money-example]=datasetjob/smart-money-example:$APP_VERSION
    [llm-labels-example]=datasetjob/llm-labels-example:$APP_VERSION
    [operator]=datasetjob/operator:$APP_VERSION
)

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
    local file=$1 sources
    shift
    mapfile -t sources < <(copy_sources "$REPO/$file")
    {
        cat "$REPO/$file"
        printf '%s\n' "$@" "${PIP_BUILD_OPTS[@]}"
        # no path: find would read the whole repository
        if ((${#sources[@]})); then files_key "$REPO" "${sources[@]}"; fi
        cat "$REPO/.dockerignore" 2>/dev/null || true
    } | sha
}

KEY[base]=$(import_key "$(rootfs_key "$BASE_VARIANT" "$BASE_INCLUDE" "${BASE_OPTS[@]}")" "${BASE_CHANGES[@]}")
KEY[worker]=$(dockerfile_key generator-image/Dockerfile "${KEY[base]}" PYTHON_IMAGE="$(build_ref base)")
KEY[worker-tables]=$(dockerfile_key generator-image/tables.Dockerfile "${KEY[worker]}" WORKER_IMAGE="$(build_ref worker)")
KEY[smart-money-example]=$(dockerfile_key generator-image/examples/smart_money/Dockerfile \
    "${KEY[worker]}" WORKER_IMAGE="$(build_ref worker)")
KEY[llm-labels-example]=$(dockerfile_key generator-image/examples/llm_labels/Dockerfile \
    "${KEY[worker]}" WORKER_IMAGE="$(build_ref worker)")
KEY[operator]=$(dockerfile_key operator/Dockerfile "${KEY[base]}" PYTHON_IMAGE="$(build_ref base)")
print_archives

# The base is not archived (no node runs it); the plain name points at the current build.
build_base() {
    local ref
    ref=$(build_ref base)
    if image_exists "$ref"; then
        RESULT=cached
    else
        rootfs python "$BASE_VARIANT" "$BASE_INCLUDE" "${BASE_OPTS[@]}"
        import_rootfs "$ROOTFS_TAR" "$ref" "${BASE_CHANGES[@]}"
    fi
    podman tag "$ref" "$BASE_REF"
    log "  $BASE_REF = $ref"
}

# dockerfile_image DOCKERFILE BUILD_ARG... REF: the repository's Dockerfile as it is.
dockerfile_image() {
    local file=$1 args=() a
    shift
    for a in "${@:1:$#-1}"; do args+=(--build-arg "$a"); done
    podman_build "$REPO" "$REPO/$file" "${PIP_BUILD_OPTS[@]}" "${args[@]}" "${@: -1}"
}

start_build "python3 $PYTHON_DEB"
step base build_base
step worker produce worker dockerfile_image generator-image/Dockerfile PYTHON_IMAGE="$(build_ref base)"
step worker-tables produce worker-tables dockerfile_image generator-image/tables.Dockerfile \
    WORKER_IMAGE="$(build_ref worker)"
step smart-money-example produce smart-money-example dockerfile_image generator-image/examples/smart_money/Dockerfile \
    WORKER_IMAGE="$(build_ref worker)"
step llm-labels-example produce llm-labels-example dockerfile_image generator-image/examples/llm_labels/Dockerfile \
    WORKER_IMAGE="$(build_ref worker)"
step operator produce operator dockerfile_image operator/Dockerfile PYTHON_IMAGE="$(build_ref base)"
prune_if_built
finish_build
