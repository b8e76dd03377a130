#!/usr/bin/env bash
# PID 1 of the node: runs inside the node's network namespace and in a mount and PID
# namespace of its own (see node.py). When it exits, the kernel kills every process of the
# namespace (containerd, its shims, every container), and the mounts they made vanish with
# the mount namespace: stopping the node can leave nothing running or mounted behind.
#
#   node-init.sh ROOT      (ROOT/node.env names the binaries and config files)
set -euo pipefail
root=$1
# shellcheck source=/dev/null
source "$root/node.env"

log() { printf '[node-init] %s\n' "$*"; }

# Paths that containerd, runc and the kubelet hard-code get private copies here, so the host's
# /run and /var/log never see this node's network namespaces, runc state or pod logs.
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
# /var/lib too: the CNI library keeps its cache under /var/lib/cni whatever the config says.
# Nothing of the node needs the host's /var/lib (containerd and kubelet roots are under ROOT).
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mkdir -p /run/netns "$root/var-log"
mount --bind "$root/var-log" /var/log
# The kubelet wants its root directory shared for mount propagation into containers.
mount --bind "$KUBELET_ROOT" "$KUBELET_ROOT"
mount --make-rshared "$KUBELET_ROOT"

pids=()
# shellcheck disable=SC2317 # reached through the trap below
stop() {
    log "stopping"
    exit 0 # as PID 1, exiting makes the kernel kill everything left in the namespace
}
trap stop TERM INT

start() {
    local name=$1
    shift
    log "starting $name"
    "$@" >>"$LOG_DIR/$name.log" 2>&1 &
    pids+=($!)
}

# wait_socket PATH: containerd is serving once its socket exists.
wait_socket() {
    for _ in $(seq 1 300); do
        [[ -S $1 ]] && return 0
        sleep 0.1
    done
    log "containerd did not create $1"
    exit 1
}

# The host says when the root is in place (another node's copy may still be on its way).
for _ in $(seq 1 6000); do
    [[ -e $root/root.ready ]] && break
    sleep 0.1
done
[[ -e $root/root.ready ]] || { log "the containerd root was never made ready"; exit 1; }

# First a containerd without the CRI plugin on the (kept) root: the host drops what an earlier
# run left there and imports the images that changed, then lets the node's containerd start,
# so the CRI plugin never loads containers of another run and the kubelet finds every image.
log "starting containerd (image preparation)"
"$CONTAINERD" --config "$CONTAINERD_PREP_CONFIG" >>"$LOG_DIR/containerd-prep.log" 2>&1 &
prep=$!
wait_socket "$CONTAINERD_PREP_SOCKET"
: >"$root/containerd.ready"
for _ in $(seq 1 6000); do
    [[ -e $root/images.ready ]] && break
    kill -0 "$prep" 2>/dev/null || { log "containerd (image preparation) exited"; exit 1; }
    sleep 0.1
done
[[ -e $root/images.ready ]] || { log "images were never imported"; exit 1; }
# Not earlier: kube-proxy waits only about 30 s for the kubelet to register the Node.
start kube-proxy "$KUBE_PROXY" --config="$KUBE_PROXY_CONFIG" --v=1
kill -TERM "$prep"
wait "$prep" || true # the root is free once it has exited

start containerd "$CONTAINERD" --config "$CONTAINERD_CONFIG"
wait_socket "$CONTAINERD_SOCKET"
start kubelet "$KUBELET" --config="$KUBELET_CONFIG" --kubeconfig="$KUBELET_KUBECONFIG" \
    --root-dir="$KUBELET_ROOT" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1

# Any component exiting ends the node: a half-running node only produces confusing failures.
set +e
wait -n "${pids[@]}"
rc=$?
log "a component exited with $rc; stopping the node"
exit 1
