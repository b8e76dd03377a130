# shellcheck shell=bash
# Sourced by the scripts that run podman (scripts/image-build.sh for the two image builds,
# scripts/prove-prerequisites.sh): podman with the project's own config and storage, and cached
# Debian root file systems.
# The caller sources common.sh first and sets CONF_DIR (scripts/images), STORE_DIR (podman's
# storage), ROOTFS_DIR (the tarballs), KEEP (tarballs kept per name) and, for rootfs, STEP_LOG.
#
#   setup_engine / check_engine        point podman at that config / fail clearly if it cannot run
#   rootfs NAME VARIANT PKGS [HOOK...] sets ROOTFS_TAR to a cached mmdebstrap tarball; a HOOK
#                                      starting with -- is an mmdebstrap option (--hook-dir=...)
#   rootfs_key VARIANT PKGS [HOOK...]  the key of such a tarball (no engine needed)
#   keep_newest DIR GLOB               deletes all but the $KEEP most recently used matches

sha() { sha256sum | cut -c1-64; }

# The machine's Debian suite: root file systems are made of the release the machine runs.
SUITE=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
[[ -n $SUITE ]] || die "cannot tell the Debian suite of this machine (no VERSION_CODENAME in /etc/os-release)"

# Points podman and skopeo at the project's config and storage, never /etc/containers.
setup_engine() {
    # shellcheck disable=SC2153 # ROOTFS_DIR is set by the caller (see the top of this file)
    mkdir -p "$STORE_DIR/storage" "$STORE_DIR/run" "$ROOTFS_DIR"
    sed -e "s|@GRAPHROOT@|$STORE_DIR/storage|" -e "s|@RUNROOT@|$STORE_DIR/run|" \
        "$CONF_DIR/storage.conf" >"$STORE_DIR/storage.conf.new"
    mv "$STORE_DIR/storage.conf.new" "$STORE_DIR/storage.conf"
    export CONTAINERS_CONF=$CONF_DIR/containers.conf
    export CONTAINERS_STORAGE_CONF=$STORE_DIR/storage.conf
    export CONTAINERS_REGISTRIES_CONF=$CONF_DIR/registries.conf
    # shellcheck disable=SC2034 # for the caller's podman build and skopeo copy
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

# rootfs_key VARIANT PKG=VER,... [HOOK...]: the key of a Debian rootfs with these inputs.
rootfs_key() {
    local sources
    sources=$(host_sources)
    {
        printf '%s\n' "$SUITE" "$@" "${DPKG_OPTS[@]}"
        [[ -n $sources ]] && cat "$sources"
    } | sha
}

# rootfs NAME VARIANT PKG=VER,... [HOOK...]: sets ROOTFS_TAR to the cached tarball, made if missing.
rootfs() {
    local name=$1 variant=$2 include=$3
    shift 3
    local sources key tar
    sources=$(host_sources)
    key=$(rootfs_key "$variant" "$include" "$@")
    tar=$ROOTFS_DIR/$name-$SUITE-${key:0:16}.tar
    if [[ ! -s $tar ]]; then
        local t hooks=() h
        t=$(now)
        log "  mmdebstrap --variant=$variant $SUITE: $include ${sources:+(apt sources of $sources)}"
        for h in "$@"; do
            if [[ $h == --* ]]; then hooks+=("$h"); else hooks+=(--customize-hook="$h"); fi
        done
        mmdebstrap --quiet --format=tar --variant="$variant" --include="$include" "${DPKG_OPTS[@]}" "${hooks[@]}" \
            "$SUITE" "$tar.tmp" ${sources:+"$sources"} >"$STEP_LOG" 2>&1 || {
            rm -f "$tar.tmp"
            tail -n 30 "$STEP_LOG" | sed 's/^/    /' >&2
            die "mmdebstrap of $name ($SUITE: $include) failed (log: $STEP_LOG; a version gone from the mirror needs 'apt-get update')"
        }
        mv "$tar.tmp" "$tar"
        log "  rootfs $tar ($(du -m "$tar" | cut -f1) MB) in $(elapsed "$t")"
    fi
    touch "$tar"
    keep_newest "$ROOTFS_DIR" "$name-$SUITE-*.tar"
    # shellcheck disable=SC2034 # the caller's result
    ROOTFS_TAR=$tar
}

# import_rootfs TAR REF CHANGE...: imports the tarball as REF with Dockerfile-style settings.
import_rootfs() {
    local tar=$1 ref=$2
    shift 2
    local changes=() c
    for c in "$@"; do changes+=(--change "$c"); done
    podman import --quiet "${changes[@]}" "$tar" "$ref" >/dev/null || die "podman import of $tar as $ref failed"
}

# keep_newest DIR GLOB: deletes all but the $KEEP most recently used files matching GLOB.
keep_newest() {
    local dir=$1 glob=$2
    # shellcheck disable=SC2012,SC2086 # names are ours (no newlines); GLOB is a pattern
    ls -1t "$dir"/$glob 2>/dev/null | tail -n +$((KEEP + 1)) | xargs -r rm -f
}
