#!/usr/bin/env bash
# Builds the local Kubernetes cluster binaries used by the e2e tests and `make cluster`:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the node's kubelet and
# kube-proxy, and helm, compiled from Go modules with the installed Go toolchain (no
# container engine and no release downloads needed).
#
# Versions come from scripts/versions.env. Everything is cached, keyed by version:
#
#   $DATASETJOB_BUILD_CACHE (default ~/.cache/datasetjob)/
#     bin/kubernetes-<v>/kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#     bin/etcd-<v>/etcd
#     bin/helm-<v>/helm
#     go/mod, go/build        GOMODCACHE and GOCACHE of these builds
#     work/                   throw-away wrapper modules (removed after a successful build)
#
# A run with every binary present exits at once. A cold run takes 10-20+ minutes on 2 cores.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules (k8s.io/api,
# k8s.io/client-go, ...) at v0.0.0 and points them at ./staging with replace directives,
# which only apply inside the kubernetes repository. The wrapper requires k8s.io/kubernetes
# and replaces every k8s.io/* module required at v0.0.0 with its published v0.X.Y release.
# etcd's server module has the same kind of sibling replaces, so it gets a wrapper too.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$SCRIPT_DIR/versions.env"
# shellcheck source=go-env.sh
source "$SCRIPT_DIR/go-env.sh"

CACHE_DIR=${DATASETJOB_BUILD_CACHE:-$HOME/.cache/datasetjob}
BIN_ROOT=$CACHE_DIR/bin
K8S_BIN=$BIN_ROOT/kubernetes-$KUBERNETES_VERSION
ETCD_BIN=$BIN_ROOT/etcd-$ETCD_VERSION
HELM_BIN=$BIN_ROOT/helm-$HELM_VERSION
WORK_ROOT=$CACHE_DIR/work
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

FORCE=0
HELM_ONLY=0
usage() {
    cat <<EOF
usage: $0 [--force] [--helm-only] [--print-paths]
  --force        rebuild even if the binaries for the pinned versions exist
  --helm-only    build only helm (all that make verify needs, to render the chart)
  --print-paths  print the binary paths for the pinned versions and exit
EOF
}
for arg in "$@"; do
    case $arg in
    --force) FORCE=1 ;;
    --helm-only) HELM_ONLY=1 ;;
    --print-paths)
        printf 'etcd=%s\nhelm=%s\n' "$ETCD_BIN/etcd" "$HELM_BIN/helm"
        for c in "${K8S_COMPONENTS[@]}"; do printf '%s=%s\n' "$c" "$K8S_BIN/$c"; done
        exit 0
        ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

LOG_TAG=controlplane
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

have() { [[ -x $1 && -s $1 ]]; }
have_kubernetes() {
    local c
    for c in "${K8S_COMPONENTS[@]}"; do have "$K8S_BIN/$c" || return 1; done
}
all_present() {
    have "$HELM_BIN/helm" && { [[ $HELM_ONLY == 1 ]] || { have "$ETCD_BIN/etcd" && have_kubernetes; }; }
}

T0=$(now)
if [[ $FORCE == 0 ]] && all_present; then
    what="kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION"
    [[ $HELM_ONLY == 1 ]] && what="helm $HELM_VERSION"
    log "$what already built in $BIN_ROOT ($(elapsed "$T0"))"
    exit 0
fi

command -v go >/dev/null || die "the Go toolchain is not installed (need go >= 1.24 on PATH)"
command -v python3 >/dev/null || die "python3 is needed to read 'go mod download -json' output"

mkdir -p "$BIN_ROOT" "$WORK_ROOT" "$CACHE_DIR/go/mod" "$CACHE_DIR/go/build"

# One build at a time per cache directory (e.g. `make e2e` and `make cluster` side by side).
hold_build_lock "$CACHE_DIR/.build.lock" all_present "binaries were"

go_build_env "$CACHE_DIR"

log "go: $(go version)"
log "cache: $CACHE_DIR"

# run_step NAME CONTEXT CMD... : runs CMD, logs its output to the step log, prints the time.
# On failure prints what was being built and the tail of the go output.
STEP_LOG=
run_step() {
    local name=$1 context=$2
    shift 2
    local t
    t=$(now)
    log "$name ..."
    if ! "$@" >"$STEP_LOG" 2>&1; then
        printf '[controlplane] ERROR: step "%s" failed (%s) after %s\n' "$name" "$context" "$(elapsed "$t")" >&2
        printf '[controlplane] command: %s\n' "$*" >&2
        printf '[controlplane] go said (last 40 lines of %s):\n' "$STEP_LOG" >&2
        tail -n 40 "$STEP_LOG" | sed 's/^/    /' >&2
        if grep -qE '403 Forbidden|404|410 Gone|not found|unknown revision|invalid version|not available' "$STEP_LOG"; then
            printf '[controlplane] hint: the Go module proxy does not serve a module at the version above; pick versions it serves in scripts/versions.env\n' >&2
        fi
        if grep -q 'GOTOOLCHAIN=local' "$STEP_LOG"; then
            printf '[controlplane] hint: a module needs a newer Go than %s; install it or set GOTOOLCHAIN in the environment of go\n' "$(go env GOVERSION)" >&2
        fi
        exit 1
    fi
    log "$name done in $(elapsed "$t")"
}

# fetch_modules CONTEXT MOD@VER... : downloads modules; names every one that the proxy refused.
fetch_modules() {
    local context=$1
    shift
    local out rc=0
    out=$(go mod download -json "$@" 2>"$STEP_LOG.err") || rc=$?
    local refused
    refused=$(printf '%s' "$out" | python3 -c '
import json, sys
text, dec, pos, bad = sys.stdin.read(), json.JSONDecoder(), 0, []
while True:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    obj, pos = dec.raw_decode(text, pos)
    if obj.get("Error"):
        bad.append("  module %s version %s: %s" % (obj.get("Path"), obj.get("Version"), obj["Error"]))
print("\n".join(bad))
')
    if [[ -n $refused || $rc != 0 ]]; then
        printf '[controlplane] ERROR: could not fetch Go modules (%s):\n' "$context" >&2
        [[ -n $refused ]] && printf '%s\n' "$refused" >&2
        [[ -s $STEP_LOG.err ]] && sed 's/^/    /' "$STEP_LOG.err" >&2
        printf '[controlplane] hint: pick versions the Go module proxy serves in %s\n' "$SCRIPT_DIR/versions.env" >&2
        exit 1
    fi
    printf '%s' "$out"
}

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

WORK_DIRS=()
cleanup() {
    local d
    for d in "${WORK_DIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

new_workdir() {
    mktemp -d "$WORK_ROOT/$1.XXXXXX"
}

# Moves freshly built binaries into place so that a half-finished build never looks complete.
install_dir() {
    local src=$1 dest=$2
    rm -rf "$dest.new"
    mv "$src" "$dest.new"
    rm -rf "$dest"
    mv "$dest.new" "$dest"
}

build_kubernetes() {
    local t work mod_json gomod godir staging
    t=$(now)
    log "== ${K8S_COMPONENTS[*]} $KUBERNETES_VERSION (staging modules $STAGING_VERSION)"
    work=$(new_workdir "kubernetes-$KUBERNETES_VERSION")
    STEP_LOG=$work/build.log
    WORK_DIRS+=("$work")

    log "resolve k8s.io/kubernetes@$KUBERNETES_VERSION ..."
    local ts
    ts=$(now)
    mod_json=$(fetch_modules "kube-apiserver/kube-controller-manager need k8s.io/kubernetes" "k8s.io/kubernetes@$KUBERNETES_VERSION")
    gomod=$(printf '%s' "$mod_json" | json_field GoMod)
    godir=$(awk '$1 == "go" { print $2; exit }' "$gomod")
    # Every k8s.io/* module that k8s.io/kubernetes requires at v0.0.0 is a staging module.
    staging=$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$gomod" | sort -u)
    [[ -n $staging ]] || die "found no v0.0.0 staging requirements in $gomod"
    log "resolve k8s.io/kubernetes@$KUBERNETES_VERSION done in $(elapsed "$ts") (go $godir, $(wc -w <<<"$staging") staging modules)"

    ts=$(now)
    log "check that the proxy serves all staging modules at $STAGING_VERSION ..."
    local mods=() m
    for m in $staging; do mods+=("$m@$STAGING_VERSION"); done
    fetch_modules "staging modules of k8s.io/kubernetes $KUBERNETES_VERSION at $STAGING_VERSION" "${mods[@]}" >/dev/null
    log "staging modules served, done in $(elapsed "$ts")"

    (
        cd "$work"
        go mod init datasetjob.local/controlplane-build >"$STEP_LOG" 2>&1
        local edits=(-go="$godir" -require="k8s.io/kubernetes@$KUBERNETES_VERSION")
        for m in $staging; do edits+=(-replace="$m=$m@$STAGING_VERSION"); done
        go mod edit "${edits[@]}"
        cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
        run_step "download dependencies of k8s.io/kubernetes $KUBERNETES_VERSION (go mod tidy)" \
            "wrapper module in $work" go mod tidy

        local major minor ldflags p
        major=${KUBERNETES_VERSION#v}
        major=${major%%.*}
        minor=${KUBERNETES_VERSION#v*.}
        minor=${minor%%.*}
        ldflags="-s -w"
        for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            ldflags+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
            ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        done
        mkdir -p out
        run_step "compile ${K8S_COMPONENTS[*]}" \
            "k8s.io/kubernetes $KUBERNETES_VERSION with staging $STAGING_VERSION" \
            go build -trimpath -ldflags "$ldflags" -o out/ \
            k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
        local reported
        reported=$(./out/kube-apiserver --version 2>&1 || true)
        [[ $reported == "Kubernetes $KUBERNETES_VERSION" ]] ||
            die "kube-apiserver --version says '$reported', expected 'Kubernetes $KUBERNETES_VERSION'"
    )
    install_dir "$work/out" "$K8S_BIN"
    rm -rf "$work"
    log "== kubernetes $KUBERNETES_VERSION ready in $K8S_BIN ($(elapsed "$t"))"
}

build_etcd() {
    local t work
    t=$(now)
    log "== etcd $ETCD_VERSION"
    work=$(new_workdir "etcd-$ETCD_VERSION")
    STEP_LOG=$work/build.log
    WORK_DIRS+=("$work")
    local ts
    ts=$(now)
    log "resolve go.etcd.io/etcd/server/v3@$ETCD_VERSION ..."
    fetch_modules "etcd needs go.etcd.io/etcd/server/v3" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
    log "resolve go.etcd.io/etcd/server/v3@$ETCD_VERSION done in $(elapsed "$ts")"
    (
        cd "$work"
        go mod init datasetjob.local/etcd-build >"$STEP_LOG" 2>&1
        # The server module points its etcd siblings at ../api etc.; require the released ones.
        go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
            -require="go.etcd.io/etcd/api/v3@$ETCD_VERSION" \
            -require="go.etcd.io/etcd/client/pkg/v3@$ETCD_VERSION" \
            -require="go.etcd.io/etcd/client/v3@$ETCD_VERSION" \
            -require="go.etcd.io/etcd/pkg/v3@$ETCD_VERSION"
        cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
        run_step "download dependencies of etcd $ETCD_VERSION (go mod tidy)" "wrapper module in $work" go mod tidy
        mkdir -p out
        run_step "compile etcd" "go.etcd.io/etcd/server/v3 $ETCD_VERSION" \
            go build -trimpath -ldflags "-s -w" -o out/etcd go.etcd.io/etcd/server/v3
        ./out/etcd --version >"$STEP_LOG" 2>&1 || die "the built etcd does not run: $(cat "$STEP_LOG")"
    )
    install_dir "$work/out" "$ETCD_BIN"
    rm -rf "$work"
    log "== etcd $ETCD_VERSION ready in $ETCD_BIN ($(elapsed "$t"))"
}

build_helm() {
    local t work major minor
    t=$(now)
    log "== helm $HELM_VERSION"
    work=$(new_workdir "helm-$HELM_VERSION")
    STEP_LOG=$work/build.log
    WORK_DIRS+=("$work")
    major=${KUBERNETES_VERSION#v}
    major=${major%%.*}
    minor=${KUBERNETES_VERSION#v*.}
    minor=${minor%%.*}
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
    mkdir -p "$work/out"
    (
        cd "$work"
        export GOBIN=$work/out
        run_step "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "helm.sh/helm/v3 $HELM_VERSION" \
            go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
        ./out/helm version --short >"$STEP_LOG" 2>&1 || die "the built helm does not run: $(cat "$STEP_LOG")"
    )
    install_dir "$work/out" "$HELM_BIN"
    rm -rf "$work"
    log "== helm $HELM_VERSION ready in $HELM_BIN ($(elapsed "$t"))"
}

if [[ $HELM_ONLY == 1 ]]; then
    if [[ $FORCE == 1 ]] || ! have "$HELM_BIN/helm"; then build_helm; fi
    log "helm $HELM_VERSION ready in $HELM_BIN ($(elapsed "$T0"))"
    exit 0
fi
if [[ $FORCE == 1 ]] || ! have "$ETCD_BIN/etcd"; then build_etcd; else log "etcd $ETCD_VERSION: cached"; fi
if [[ $FORCE == 1 ]] || ! have_kubernetes; then
    build_kubernetes
else
    log "kubernetes $KUBERNETES_VERSION: cached"
fi
if [[ $FORCE == 1 ]] || ! have "$HELM_BIN/helm"; then build_helm; else log "helm $HELM_VERSION: cached"; fi

log "all done in $(elapsed "$T0"): $ETCD_BIN/etcd, $K8S_BIN/kube-apiserver, $K8S_BIN/kube-controller-manager, $HELM_BIN/helm"
