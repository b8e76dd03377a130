# Sourced by the scripts that build Go programs (control plane, Kueue, CoreDNS): one place for
# how they call the go command.
#
#   go_build_env CACHE_DIR   exports the settings for builds cached under CACHE_DIR/go
go_build_env() {
    export GOMODCACHE=$1/go/mod
    export GOCACHE=$1/go/build
    export GOFLAGS="-modcacherw -buildvcs=false"
    export GOTOOLCHAIN=local # never fetch another toolchain behind the user's back
    export CGO_ENABLED=0     # static binaries: they run in FROM-scratch images and on any host
    export GO111MODULE=on
    unset GOBIN GOWORK GOOS GOARCH
}
