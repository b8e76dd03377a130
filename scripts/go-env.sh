# shellcheck shell=bash
# Sourced by the scripts that build Go programs (control plane, Kueue, CoreDNS): one place for
# how they call the go command, and how they take turns.
#
#   go_build_env CACHE_DIR   exports the settings for builds cached under CACHE_DIR/go
#   hold_build_lock LOCK PRESENT WHAT
#                            one build at a time: holds LOCK until the script ends (waiting,
#                            with a log line, while another build holds it), then exits 0 when
#                            PRESENT (a function) says that other build made everything already.
#                            Uses the caller's log, elapsed, T0 and FORCE.
#   parse_build_args PRINT ARGS...
#                            sets FORCE from --force; --print-paths runs PRINT (a function) and
#                            exits; --help says the usage
go_build_env() {
    export GOMODCACHE=$1/go/mod
    export GOCACHE=$1/go/build
    export GOFLAGS="-modcacherw -buildvcs=false"
    export GOTOOLCHAIN=local # never fetch another toolchain behind the user's back
    export CGO_ENABLED=0     # static binaries: they run in FROM-scratch images and on any host
    export GO111MODULE=on
    unset GOBIN GOWORK GOOS GOARCH
}

hold_build_lock() {
    local lock=$1 present=$2 what=$3
    command -v flock >/dev/null || return 0
    exec 9>"$lock"
    if ! flock -n 9; then
        log "another build holds $lock; waiting for it"
        flock 9
    fi
    if [[ $FORCE == 0 ]] && "$present"; then
        log "$what built by the other run ($(elapsed "$T0"))"
        exit 0
    fi
}

parse_build_args() {
    local print=$1 arg
    shift
    FORCE=0
    for arg in "$@"; do
        case $arg in
        --force) FORCE=1 ;;
        --print-paths)
            "$print"
            exit 0
            ;;
        -h | --help)
            echo "usage: $0 [--force] [--print-paths]"
            exit 0
            ;;
        *)
            echo "usage: $0 [--force] [--print-paths]" >&2
            exit 2
            ;;
        esac
    done
}
