"""The process kubelet: runs pod containers as local processes (test code).

There is no container runtime on the machines that run the e2e tests, so this stands in
for a kubelet on one Node. It polls the API server (every `poll_interval` seconds) and:

1. registers a Node (Ready, InternalIP 127.0.0.1, capacity/allocatable from this machine)
   and keeps its Ready heartbeat fresh;
2. binds pending pods (schedulerName default-scheduler) to that Node through the
   `pods/binding` subresource — there is no scheduler;
3. runs init containers one after another, then every container, as a process in its own
   process group. The image is ignored: a container with `command` runs it (args
   appended); one without `command` gets the entrypoint mapped from its image by
   `image_commands` (longest image prefix wins); an unmapped image fails the pod with
   reason StartError and a message saying so, instead of hanging;
4. reports status like a kubelet: Running with Ready conditions and containerStatuses
   (`state.running.startedAt`), then `state.terminated` {exitCode, reason Completed/Error,
   startedAt, finishedAt, message} and phase Succeeded/Failed; restartPolicy OnFailure and
   Always restart the process in place (restartCount, lastState);
5. on deletion (deletionTimestamp set): SIGTERM to the process group, SIGKILL after the
   grace period, a terminal phase if the pod had none, then delete with grace period 0.
   Finalizers (the Job controller's `batch.kubernetes.io/job-tracking`) are never touched.

What a container process gets (the "pod view" of the host):

- env as the kubelet resolves it: `value` with `$(VAR)` expansion, `envFrom`
  (configMapRef/secretRef, prefix, optional), `valueFrom.fieldRef` (metadata.name,
  namespace, uid, labels['k'], annotations['k'] — so `JOB_COMPLETION_INDEX` arrives from
  `metadata.annotations['batch.kubernetes.io/job-completion-index']` —, spec.nodeName,
  spec.serviceAccountName, status.podIP(s), status.hostIP(s)), `resourceFieldRef`,
  `configMapKeyRef`, `secretKeyRef`; `$(VAR)` in command/args is expanded too. Plus
  HOSTNAME, HOME (the pod's work dir), KUBERNETES_SERVICE_HOST/PORT (the API server),
  PYTHONUNBUFFERED=1 (unless set) and the `extra_env` given to the kubelet.
- PATH: `path_prepend` (default: the bin dir of the Python running the tests, i.e. the
  venv, so `dsj` and `python` resolve there) before the container's PATH (or the host's).
  An absolute argv[0] that does not exist on the host (`/usr/local/bin/dsj`) is looked up
  on PATH by its basename.
- Volumes are real directories under the pod's directory: configMap, secret, downwardAPI,
  projected (incl. serviceAccountToken through the TokenRequest API), emptyDir;
  persistentVolumeClaim maps to one directory per claim shared by all pods of the node;
  hostPath is the host path itself. A process cannot write to /etc or /data, so **mount
  paths are substituted**: every occurrence of a container's `mountPath` (and of its
  `terminationMessagePath`) in command, args and env values is rewritten to the host
  directory (file) that backs it — whole path components only, also after `file://`.
  `workingDir` is rewritten the same way; if it is not under a mount the process runs in
  the pod's work dir. `DSJ_POD_DIR` is the pod's directory and `DSJ_MOUNT_MAP` a JSON
  object {mountPath: host path} for programs that build paths themselves.
- Termination message: `DSJ_TERMINATION_LOG` and `KUBELET_TERMINATION_MESSAGE_PATH` both
  name a per-container file (also substituted for the terminationMessagePath, normally
  /dev/termination-log). Its first 4096 bytes become `state.terminated.message`; with
  `terminationMessagePolicy: FallbackToLogsOnError` a failed container with an empty file
  gets the tail of its log (80 lines, 2048 bytes) instead.
- stdout and stderr go to one log file per container; `pod_log(namespace, name)` reads it,
  and a small HTTPS endpoint (the Node's kubeletEndpoint) serves it to the API server, so
  `kubectl logs [-f] [--tail N]` works too. Logs outlive the pod until stop().
"""

from __future__ import annotations

import atexit
import base64
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .rest import ApiError, KubeRest

NODE_NAME = "dsj-node-0"
JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
DEFAULT_GRACE_SECONDS = 30

# Image prefix -> entrypoint used when a container has no `command`. Extend per test with
# ProcessKubelet(image_commands=...) / kubelet.map_image(), or with the env var
# DSJ_KUBELET_IMAGES='{"registry.example/acme/gen": ["python", "-m", "gen"]}'.
DEFAULT_IMAGE_COMMANDS: dict[str, list[str]] = {}


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- $(VAR) expansion, as in k8s.io/kubernetes third_party/forked/golang/expansion -------
def expand(text: str, lookup) -> str:
    """`$(NAME)` -> lookup(NAME) when defined (else left as written); `$$` -> `$`."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    value = lookup(name)
                    out.append(value if value is not None else text[i:end + 1])
                    i = end + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


def rewrite_paths(text: str, mapping: list[tuple[str, str]]) -> str:
    """Replaces whole-path occurrences of the source paths by their targets, in one pass
    (so a target is never rewritten again, e.g. with mounts at /tmp and /data)."""
    if not mapping:
        return text
    targets = {src.rstrip("/"): dst for src, dst in mapping}
    alternation = "|".join(re.escape(src) for src in sorted(targets, key=len, reverse=True))
    pattern = r"(?:^|(?<=[^\w./-])|(?<=file://))(" + alternation + r")(?![\w.-])"
    return re.sub(pattern, lambda m: targets[m.group(1)], text)


def _field_path_value(pod: dict, path: str) -> str | None:
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    if path in simple:
        return simple[path] or ""
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    return None


def parse_quantity(q: str | int | float) -> float:
    q = str(q).strip()
    suffixes = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
        "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    }
    for suf in sorted(suffixes, key=len, reverse=True):
        if q.endswith(suf):
            return float(q[: -len(suf)]) * suffixes[suf]
    return float(q)


class ConfigError(Exception):
    """The container cannot be configured yet (kubelet's CreateContainerConfigError)."""


@dataclass
class ContainerRun:
    name: str
    spec: dict
    init: bool
    log_path: Path
    term_path: Path
    process: subprocess.Popen | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str = ""
    restart_count: int = 0
    last_terminated: dict | None = None
    restart_after: float = 0.0
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    killed: bool = False
    spec_env_keys: set = field(default_factory=set)  # env names the pod spec sets (path-rewritten)

    @property
    def running(self) -> bool:
        return self.process is not None and self.exit_code is None

    @property
    def terminated(self) -> bool:
        return self.exit_code is not None

    def terminated_state(self) -> dict:
        state = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id(),
        }
        if self.message:
            state["message"] = self.message
        return state

    def container_id(self) -> str:
        return f"process://{self.process.pid}" if self.process else ""

    def status(self) -> dict:
        st = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "restartCount": self.restart_count,
            "ready": bool(self.running and not self.init),
            "started": bool(self.running),
        }
        if self.process:
            st["containerID"] = self.container_id()
        if self.running:
            st["state"] = {"running": {"startedAt": self.started_at}}
        elif self.terminated:
            st["state"] = {"terminated": self.terminated_state()}
        else:
            waiting = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            st["state"] = {"waiting": waiting}
        if self.last_terminated:
            st["lastState"] = {"terminated": self.last_terminated}
        return st


@dataclass
class PodRun:
    uid: str
    namespace: str
    name: str
    pod_dir: Path
    log_dir: Path
    start_time: str
    init: list[ContainerRun] = field(default_factory=list)
    containers: list[ContainerRun] = field(default_factory=list)
    stage: str = "config"  # config -> init -> main -> done
    started_mono: float = field(default_factory=time.monotonic)
    mounts: dict[str, dict[str, str]] = field(default_factory=dict)  # container -> {mountPath: host}
    phase: str = "Pending"
    phase_reason: str | None = None
    phase_message: str | None = None
    sigterm_at: float | None = None
    kill_deadline: float | None = None
    delete_sent: bool = False
    last_status: dict | None = None
    next_config_try: float = 0.0

    def all_runs(self) -> list[ContainerRun]:
        return [*self.init, *self.containers]

    def any_running(self) -> bool:
        return any(c.running for c in self.all_runs())


class ProcessKubelet:
    """Runs pods bound to one Node as local processes. start()/stop() or a context manager."""

    def __init__(
        self,
        kubeconfig: str | Path,
        node_name: str = NODE_NAME,
        root: str | Path | None = None,
        image_commands: dict[str, list[str]] | None = None,
        path_prepend: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
        poll_interval: float = 0.25,
        restart_backoff: float = 1.0,
    ):
        self.rest = KubeRest.from_kubeconfig(kubeconfig)
        self.node_name = node_name
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="dsj-kubelet-"))
        self.image_commands: dict[str, list[str]] = dict(DEFAULT_IMAGE_COMMANDS)
        env_images = os.environ.get("DSJ_KUBELET_IMAGES")
        if env_images:
            self.image_commands.update(json.loads(env_images))
        self.image_commands.update(image_commands or {})
        self.path_prepend = list(path_prepend) if path_prepend is not None else [str(Path(sys.executable).parent)]
        self.extra_env = dict(extra_env or {})
        self.poll_interval = poll_interval
        self.restart_backoff = restart_backoff
        self.pods: dict[str, PodRun] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_heartbeat = 0.0
        self.api_host, self.api_port = self.rest.host, self.rest.port
        self.log_path = self.root / "kubelet.log"
        self.errors = 0
        self._deletes_sent: set[str] = set()  # uids of pods we deleted without a PodRun
        self._log_server = None
        self.log_server_port = 0

    # -- public API ------------------------------------------------------------------------
    def __enter__(self) -> "ProcessKubelet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "ProcessKubelet":
        (self.root / "pods").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self._log(f"starting process kubelet for node {self.node_name}")
        self._start_log_server()
        self._register_node()
        atexit.register(self._kill_all)
        self._thread = threading.Thread(target=self._run, name=f"process-kubelet-{self.node_name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, delete_node: bool = False) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._kill_all()
        try:
            atexit.unregister(self._kill_all)
        except Exception:
            pass
        if delete_node:
            try:
                self.rest.delete(f"/api/v1/nodes/{self.node_name}", ok_statuses=(404,))
            except Exception:
                pass
        self.rest.close()
        if self._log_server is not None:
            self._log_server.shutdown()
            self._log_server.server_close()
            self._log_server = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_all(self) -> None:
        """SIGTERM every container process group, SIGKILL what is left after 3 s."""
        with self._lock:
            runs = [c for p in self.pods.values() for c in p.all_runs() if c.running]
            for c in runs:
                _signal_group(c.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 3
            for c in runs:
                try:
                    c.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                _signal_group(c.process.pid, signal.SIGKILL)
                try:
                    c.process.wait(5)
                except subprocess.TimeoutExpired:
                    pass

    def map_image(self, image_prefix: str, entrypoint: list[str]) -> None:
        """Containers without `command` whose image starts with the prefix run `entrypoint`."""
        with self._lock:
            self.image_commands[image_prefix] = list(entrypoint)

    def pod_log(self, namespace: str, name: str, container: str | None = None) -> str:
        """Combined stdout+stderr of a pod's container(s) (latest pod of that name)."""
        base = self.root / "logs" / namespace
        dirs = sorted(base.glob(f"{name}_*"), key=lambda p: p.stat().st_mtime) if base.exists() else []
        if not dirs:
            raise KeyError(f"no logs for pod {namespace}/{name}")
        d = dirs[-1]
        files = sorted(d.glob("*.log"))
        if container is not None:
            return (d / f"{container}.log").read_text(errors="replace")
        if len(files) == 1:
            return files[0].read_text(errors="replace")
        return "\n".join(f"==> {f.stem} <==\n{f.read_text(errors='replace')}" for f in files)

    def pod_logs_in(self, namespace: str, tail: int = 40) -> dict[str, str]:
        """{pod/container: last lines} of every pod log of a namespace (for failure reports)."""
        out = {}
        base = self.root / "logs" / namespace
        if base.exists():
            for d in sorted(base.iterdir()):
                for f in sorted(d.glob("*.log")):
                    lines = f.read_text(errors="replace").splitlines()[-tail:]
                    out[f"{d.name.rsplit('_', 1)[0]}/{f.stem}"] = "\n".join(lines)
        return out

    def _log_file(self, namespace: str, name: str, container: str) -> tuple[Path, "PodRun | None"]:
        base = self.root / "logs" / namespace
        dirs = sorted(base.glob(f"{name}_*"), key=lambda p: p.stat().st_mtime) if base.exists() else []
        if not dirs:
            raise KeyError(f"no logs for pod {namespace}/{name}")
        uid = dirs[-1].name.rsplit("_", 1)[1]
        return dirs[-1] / f"{container}.log", self.pods.get(uid)

    def _start_log_server(self) -> None:
        """Serves /containerLogs/<ns>/<pod>/<container> over HTTPS so `kubectl logs` works.

        The API server proxies log requests to the Node's InternalIP and
        daemonEndpoints.kubeletEndpoint.Port; it does not verify a kubelet's serving
        certificate unless --kubelet-certificate-authority is set, so a self-signed one does.
        """
        import http.server
        import ssl
        import urllib.parse

        if shutil.which("openssl") is None:
            self._log("openssl not found: no log server, `kubectl logs` will not work")
            return
        cert, key = self.root / "kubelet.crt", self.root / "kubelet.key"
        res = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "365", "-subj", f"/CN={self.node_name}",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            capture_output=True, text=True)
        if res.returncode != 0:
            self._log(f"cannot make the log server certificate: {res.stderr}")
            return
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(url.query)
                parts = url.path.strip("/").split("/")
                if url.path in ("/healthz", "/readyz"):
                    return self._send(200, b"ok")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    return self._send(404, b"not found")
                _, ns, name, container = parts
                try:
                    path, run = kubelet._log_file(ns, name, container)
                    data = path.read_bytes()
                except (KeyError, OSError) as exc:
                    return self._send(404, str(exc).encode())
                if "tailLines" in q:
                    n = int(q["tailLines"][0])
                    lines = data.splitlines(keepends=True)
                    data = b"".join(lines[-n:]) if n > 0 else b""
                if "limitBytes" in q:
                    data = data[: int(q["limitBytes"][0])]
                follow = q.get("follow", ["false"])[0] in ("true", "1")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    self._chunk(data)
                    offset = path.stat().st_size
                    while follow and not kubelet._stop.is_set():
                        size = path.stat().st_size
                        if size > offset:
                            with open(path, "rb") as f:
                                f.seek(offset)
                                self._chunk(f.read(size - offset))
                            offset = size
                        elif run is None or not any(c.running for c in run.all_runs() if c.name == container):
                            break
                        time.sleep(0.2)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _chunk(self, data: bytes) -> None:
                if data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._log_server = server
        self.log_server_port = server.server_address[1]
        threading.Thread(target=server.serve_forever, name="process-kubelet-logs", daemon=True).start()
        self._log(f"log server on https://127.0.0.1:{self.log_server_port}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    # -- node --------------------------------------------------------------------------------
    def _node_status(self) -> dict:
        ts = now_rfc3339()
        cpu = str(os.cpu_count() or 1)
        try:
            mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
        except Exception:
            mem_kb = 8 * 1024 * 1024
        resources = {"cpu": cpu, "memory": f"{mem_kb}Ki", "pods": "110", "ephemeral-storage": "100Gi"}
        cond = lambda t, s, r, m: {  # noqa: E731
            "type": t, "status": s, "reason": r, "message": m,
            "lastHeartbeatTime": ts, "lastTransitionTime": ts,
        }
        return {
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "process kubelet"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "process kubelet"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "process kubelet"),
                cond("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "capacity": resources,
            "allocatable": resources,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_server_port}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": os.uname().release,
                "osImage": "process kubelet",
                "containerRuntimeVersion": "process://1",
                "kubeletVersion": self._server_version(),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
            },
        }

    def _server_version(self) -> str:
        try:
            return self.rest.get("/version").get("gitVersion", "v0.0.0")
        except Exception:
            return "v0.0.0"

    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "datagen.dev/process-kubelet": "true",
                },
            },
            "spec": {},
        }
        self.rest.post("/api/v1/nodes", node, ok_statuses=(409,))
        self.rest.patch(f"/api/v1/nodes/{self.node_name}/status", {"status": self._node_status()})
        self._last_heartbeat = time.monotonic()

    def _heartbeat(self) -> None:
        if time.monotonic() - self._last_heartbeat < 10:
            return
        self._last_heartbeat = time.monotonic()
        try:
            self.rest.patch(f"/api/v1/nodes/{self.node_name}/status", {"status": self._node_status()})
        except ApiError as exc:
            if exc.status == 404:  # somebody deleted the node: register again
                self._register_node()
            else:
                raise

    # -- main loop -------------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        line = f"{datetime.now().strftime('%H:%M:%S.%f')[:-3]} {msg}\n"
        try:
            with open(self.log_path, "a") as f:
                f.write(line)
        except OSError:
            pass

    def _run(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._sync_once()
                backoff = self.poll_interval
            except Exception:  # keep going whatever happens: log and retry
                self.errors += 1
                self._log("sync failed:\n" + traceback.format_exc())
                backoff = min(2.0, backoff * 2)
            self._stop.wait(backoff)

    def _sync_once(self) -> None:
        self._heartbeat()
        pods = self.rest.get("/api/v1/pods")["items"]
        seen = set()
        for pod in pods:
            meta, spec = pod["metadata"], pod.get("spec", {})
            uid = meta["uid"]
            node = spec.get("nodeName")
            if not node:
                if not meta.get("deletionTimestamp") and spec.get("schedulerName", "default-scheduler") == "default-scheduler":
                    self._bind(pod)
                continue
            if node != self.node_name:
                continue
            seen.add(uid)
            try:
                self._sync_pod(pod)
            except ApiError as exc:
                if exc.status not in (404, 409):
                    self._log(f"{meta['namespace']}/{meta['name']}: {exc}")
            except Exception:  # one broken pod must not stop the others
                self.errors += 1
                self._log(f"{meta['namespace']}/{meta['name']}: sync failed:\n{traceback.format_exc()}")
        for uid in list(self.pods):
            if uid not in seen:  # the pod is gone from the API
                run = self.pods.pop(uid)
                self._kill_now(run)
                shutil.rmtree(run.pod_dir, ignore_errors=True)
                self._log(f"{run.namespace}/{run.name}: gone, cleaned up")

    def _bind(self, pod: dict) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        status, _ = self.rest.post(
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", binding,
            ok_statuses=(404, 409),
        )
        if status < 300:
            self._log(f"{meta['namespace']}/{meta['name']}: bound to {self.node_name}")

    def _sync_pod(self, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        phase = (pod.get("status") or {}).get("phase", "Pending")
        run = self.pods.get(uid)
        if run is None:
            if meta.get("deletionTimestamp") or phase in ("Succeeded", "Failed"):
                if meta.get("deletionTimestamp"):
                    self._finish_deletion(pod, None)
                return
            if phase == "Running":  # running under a previous kubelet: its processes are gone
                self._patch_status(pod, {
                    "phase": "Failed", "reason": "NodeRestarted",
                    "message": "the process kubelet restarted; the pod's processes are gone",
                })
                return
            run = self._new_run(pod)
            self.pods[uid] = run
        if meta.get("deletionTimestamp"):
            self._terminate(pod, run)
        else:
            self._advance(pod, run)
        self._report(pod, run)
        if meta.get("deletionTimestamp") and not run.any_running():
            self._finish_deletion(pod, run)

    # -- pod lifecycle ----------------------------------------------------------------------
    def _new_run(self, pod: dict) -> PodRun:
        meta, spec = pod["metadata"], pod["spec"]
        pod_dir = self.root / "pods" / meta["uid"]
        log_dir = self.root / "logs" / meta["namespace"] / f"{meta['name']}_{meta['uid']}"
        for d in (pod_dir / "work", pod_dir / "volumes", pod_dir / "termination", log_dir):
            d.mkdir(parents=True, exist_ok=True)
        run = PodRun(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"],
                     pod_dir=pod_dir, log_dir=log_dir, start_time=now_rfc3339())
        for init, key in ((True, "initContainers"), (False, "containers")):
            for c in spec.get(key) or []:
                cr = ContainerRun(name=c["name"], spec=c, init=init,
                                  log_path=log_dir / f"{c['name']}.log",
                                  term_path=pod_dir / "termination" / c["name"])
                (run.init if init else run.containers).append(cr)
        self._log(f"{run.namespace}/{run.name}: accepted ({len(run.init)} init, {len(run.containers)} containers)")
        return run

    def _advance(self, pod: dict, run: PodRun) -> None:
        spec = pod["spec"]
        if run.stage == "config":
            if time.monotonic() < run.next_config_try:
                return
            try:
                self._prepare_volumes(pod, run)
            except ConfigError as exc:
                run.next_config_try = time.monotonic() + 1.0
                for c in run.all_runs():
                    c.waiting_reason, c.waiting_message = "CreateContainerConfigError", str(exc)
                return
            run.stage = "init" if run.init else "main"
            if run.stage == "main":
                self._start_main(pod, run)
        if run.stage == "done":
            return

        self._reap(run)
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and time.monotonic() - run.started_mono > float(deadline):
            self._kill_now(run)
            self._reap(run)
            run.stage = "done"
            run.phase, run.phase_reason = "Failed", "DeadlineExceeded"
            run.phase_message = f"Pod was active on the node longer than the specified deadline ({deadline}s)"
            return

        policy = spec.get("restartPolicy", "Always")
        if run.stage == "init":
            current = next((c for c in run.init if not (c.terminated and c.exit_code == 0)), None)
            if current is None:
                run.stage = "main"
                self._start_main(pod, run)
            elif current.terminated:  # an init container failed
                if policy == "Never":
                    run.stage, run.phase = "done", "Failed"
                    self._mark_unstarted(run, "PodInitializing")
                elif time.monotonic() >= current.restart_after:
                    self._prepare_restart(current)
                    self._start_container(pod, run, current)
            elif current.process is None and time.monotonic() >= current.restart_after:
                self._start_container(pod, run, current)
            return

        if run.stage == "main":
            for c in run.containers:
                if c.process is None and not c.terminated:
                    if time.monotonic() >= c.restart_after:
                        self._start_container(pod, run, c)
                elif c.terminated and self._should_restart(policy, c):
                    if time.monotonic() >= c.restart_after:
                        self._prepare_restart(c)
                        self._start_container(pod, run, c)
            if all(c.terminated and not self._should_restart(policy, c) for c in run.containers):
                run.stage = "done"
                run.phase = "Succeeded" if all(c.exit_code == 0 for c in run.containers) else "Failed"
            else:
                run.phase = "Running" if any(c.running for c in run.containers) else run.phase

    @staticmethod
    def _should_restart(policy: str, c: ContainerRun) -> bool:
        return policy == "Always" or (policy == "OnFailure" and c.exit_code != 0)

    def _prepare_restart(self, c: ContainerRun) -> None:
        c.last_terminated = c.terminated_state()
        c.restart_count += 1
        c.process = None
        c.exit_code = c.reason = c.started_at = c.finished_at = None
        c.message = ""

    def _mark_unstarted(self, run: PodRun, reason: str) -> None:
        for c in run.all_runs():
            if c.process is None and not c.terminated:
                c.waiting_reason = reason

    def _start_main(self, pod: dict, run: PodRun) -> None:
        for c in run.containers:
            self._start_container(pod, run, c)

    def _start_container(self, pod: dict, run: PodRun, c: ContainerRun) -> None:
        try:
            env = self._container_env(pod, run, c)
        except ConfigError as exc:
            c.waiting_reason, c.waiting_message = "CreateContainerConfigError", str(exc)
            c.restart_after = time.monotonic() + 1.0
            return
        mapping = self._path_mapping(run, c)
        lookup = env.get
        command = [expand(a, lookup) for a in c.spec.get("command") or []]
        args = [expand(a, lookup) for a in c.spec.get("args") or []]
        image = c.spec.get("image", "")
        if command:
            argv = command + args
        else:
            entry = self._entrypoint(image)
            if entry is None:
                return self._start_failed(c, (
                    f"the process kubelet cannot run image {image!r}: the container has no command "
                    f"and no entry of the image table matches (ProcessKubelet(image_commands=...), "
                    f"kubelet.map_image() or DSJ_KUBELET_IMAGES); known prefixes: "
                    f"{sorted(self.image_commands) or 'none'}"))
            argv = list(entry) + args
        if not argv:
            return self._start_failed(c, f"image {image!r} maps to an empty command and the container has no args")
        argv = [rewrite_paths(a, mapping) for a in argv]
        env = {k: rewrite_paths(v, mapping) if k in c.spec_env_keys else v for k, v in env.items()}
        argv[0] = self._resolve_executable(argv[0], env)

        cwd = run.pod_dir / "work"
        wd = c.spec.get("workingDir")
        if wd:
            mapped = rewrite_paths(wd, mapping)
            if mapped != wd:  # under a mount: the host directory backing it
                cwd = Path(mapped)
                cwd.mkdir(parents=True, exist_ok=True)
        c.term_path.write_bytes(b"")
        c.started_at = now_rfc3339()
        log = open(c.log_path, "ab")
        try:
            c.process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            log.close()
            return self._start_failed(c, f"failed to start container process: exec {argv[0]!r}: {exc.strerror or exc}")
        finally:
            if not log.closed:
                log.close()
        c.killed = False
        self._log(f"{run.namespace}/{run.name}/{c.name}: started pid {c.process.pid}: {argv}")

    def _start_failed(self, c: ContainerRun, message: str) -> None:
        ts = now_rfc3339()
        c.process = None
        c.started_at = c.started_at or ts
        c.finished_at = ts
        c.exit_code = 128
        c.reason = "StartError"
        c.message = message
        c.restart_after = time.monotonic() + self.restart_backoff
        with open(c.log_path, "a") as f:
            f.write(f"[process kubelet] {message}\n")
        self._log(f"{c.name}: {message}")

    def _entrypoint(self, image: str) -> list[str] | None:
        best = None
        for prefix, entry in self.image_commands.items():
            if image.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, entry)
        return None if best is None else list(best[1])

    @staticmethod
    def _resolve_executable(arg0: str, env: dict[str, str]) -> str:
        if os.path.isabs(arg0) and not os.path.exists(arg0):
            found = shutil.which(os.path.basename(arg0), path=env.get("PATH"))
            if found:
                return found
        if "/" not in arg0:
            found = shutil.which(arg0, path=env.get("PATH"))
            if found:
                return found
        return arg0

    def _reap(self, run: PodRun) -> None:
        for c in run.all_runs():
            if c.process is None or c.exit_code is not None:
                continue
            rc = c.process.poll()
            if rc is None:
                continue
            c.exit_code = rc if rc >= 0 else 128 - rc  # killed by signal N -> 128+N
            c.finished_at = now_rfc3339()
            c.reason = "Completed" if c.exit_code == 0 else "Error"
            c.message = self._termination_message(c)
            c.restart_after = time.monotonic() + self.restart_backoff
            # Like a container runtime: nothing of the container outlives its main process.
            _signal_group(c.process.pid, signal.SIGKILL)
            self._log(f"{run.namespace}/{run.name}/{c.name}: exited with {c.exit_code}")

    def _termination_message(self, c: ContainerRun) -> str:
        try:
            with open(c.term_path, "rb") as f:
                msg = f.read(MAX_TERMINATION_MESSAGE).decode("utf-8", "replace")
        except OSError:
            msg = ""
        if not msg and c.exit_code and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            try:
                data = c.log_path.read_bytes()[-64 * 1024:]
            except OSError:
                data = b""
            lines = data.decode("utf-8", "replace").splitlines()[-FALLBACK_LOG_LINES:]
            msg = "\n".join(lines)[-FALLBACK_LOG_BYTES:]
        return msg

    # -- deletion -----------------------------------------------------------------------------
    def _terminate(self, pod: dict, run: PodRun) -> None:
        meta = pod["metadata"]
        self._reap(run)
        if not run.any_running():
            if run.stage != "done":
                run.stage = "done"
                self._settle_phase(run)
            return
        now = time.monotonic()
        if run.sigterm_at is None:
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
            run.sigterm_at, run.kill_deadline = now, now + float(grace)
            for c in run.all_runs():
                if c.running:
                    c.killed = True
                    _signal_group(c.process.pid, signal.SIGTERM)
            self._log(f"{run.namespace}/{run.name}: deleting, SIGTERM sent, grace {grace}s")
        elif now >= run.kill_deadline:
            for c in run.all_runs():
                if c.running:
                    _signal_group(c.process.pid, signal.SIGKILL)
        # A new grace period (e.g. a later delete with --grace-period=0) shortens the wait.
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is not None:
            run.kill_deadline = min(run.kill_deadline, run.sigterm_at + float(grace))

    def _settle_phase(self, run: PodRun) -> None:
        """A terminal phase for a pod stopped by deletion (as kubelets do since 1.27)."""
        if run.phase in ("Succeeded", "Failed"):
            return
        mains = run.containers
        for c in run.all_runs():
            if c.process is None and not c.terminated:
                c.waiting_reason = "ContainerCreating"
        if mains and all(c.terminated and c.exit_code == 0 for c in mains):
            run.phase = "Succeeded"
        else:
            run.phase = "Failed"

    def _finish_deletion(self, pod: dict, run: PodRun | None) -> None:
        meta = pod["metadata"]
        phase = (pod.get("status") or {}).get("phase")
        if run is None:
            if phase not in ("Succeeded", "Failed"):
                self._patch_status(pod, {"phase": "Failed", "reason": "Terminated",
                                         "message": "deleted before the process kubelet ran it"})
        if (run is not None and run.delete_sent) or (run is None and meta["uid"] in self._deletes_sent):
            return
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        self.rest.delete(path, {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                "preconditions": {"uid": meta["uid"]}}, ok_statuses=(404, 409))
        if run is not None:
            run.delete_sent = True
        else:
            self._deletes_sent.add(meta["uid"])
        self._log(f"{meta['namespace']}/{meta['name']}: deleted with grace period 0")

    def _kill_now(self, run: PodRun) -> None:
        for c in run.all_runs():
            if c.running:
                _signal_group(c.process.pid, signal.SIGKILL)
                try:
                    c.process.wait(5)
                except subprocess.TimeoutExpired:
                    pass

    # -- status ------------------------------------------------------------------------------
    def _report(self, pod: dict, run: PodRun) -> None:
        status = self._build_status(pod, run)
        if status == run.last_status:
            return
        self._patch_status(pod, status)
        run.last_status = status

    def _build_status(self, pod: dict, run: PodRun) -> dict:
        existing = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        ts = now_rfc3339()

        def cond(t: str, ok: bool, reason: str | None = None) -> dict:
            old = existing.get(t)
            s = "True" if ok else "False"
            c = {"type": t, "status": s, "lastProbeTime": None,
                 "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == s and old.get("lastTransitionTime") else ts}
            if reason:
                c["reason"] = reason
            return c

        terminal = run.phase in ("Succeeded", "Failed")
        init_done = all(c.terminated and c.exit_code == 0 for c in run.init)
        ready = run.phase == "Running" and all(c.running for c in run.containers)
        not_ready_reason = "PodCompleted" if terminal else (None if ready else "ContainersNotReady")
        conditions = [
            cond("PodReadyToStartContainers", run.stage != "config" and not terminal),
            cond("Initialized", init_done or run.phase == "Succeeded", None if init_done else "ContainersNotInitialized"),
            cond("Ready", ready, not_ready_reason),
            cond("ContainersReady", ready, not_ready_reason),
            cond("PodScheduled", True),
        ]
        status = {
            "phase": run.phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": run.start_time,
            "containerStatuses": [c.status() for c in run.containers],
        }
        if run.init:
            status["initContainerStatuses"] = [c.status() for c in run.init]
        if run.phase_reason:
            status["reason"] = run.phase_reason
        if run.phase_message:
            status["message"] = run.phase_message
        return status

    def _patch_status(self, pod: dict, status: dict) -> None:
        meta = pod["metadata"]
        self.rest.patch(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                        {"metadata": {"uid": meta["uid"]}, "status": status}, ok_statuses=(404,))

    # -- volumes and env ----------------------------------------------------------------------
    def _get(self, path: str) -> dict | None:
        try:
            return self.rest.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _config_map(self, ns: str, name: str, optional: bool) -> dict | None:
        cm = self._get(f"/api/v1/namespaces/{ns}/configmaps/{name}")
        if cm is None and not optional:
            raise ConfigError(f'configmap "{name}" not found')
        if cm is None:
            return None
        data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
        return data

    def _secret(self, ns: str, name: str, optional: bool) -> dict | None:
        s = self._get(f"/api/v1/namespaces/{ns}/secrets/{name}")
        if s is None and not optional:
            raise ConfigError(f'secret "{name}" not found')
        if s is None:
            return None
        data = {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (s.get("stringData") or {}).items()})
        return data

    @staticmethod
    def _write_items(target: Path, data: dict[str, bytes], items: list | None, mode: int | None,
                     kind: str, name: str, optional: bool) -> None:
        target.mkdir(parents=True, exist_ok=True)
        pairs = []
        if items:
            for it in items:
                if it["key"] not in data:
                    if optional:
                        continue
                    raise ConfigError(f'{kind} "{name}" has no key "{it["key"]}"')
                pairs.append((it.get("path", it["key"]), data[it["key"]], it.get("mode")))
        else:
            pairs = [(k, v, None) for k, v in data.items()]
        for rel, value, item_mode in pairs:
            p = target / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(value)
            m = item_mode if item_mode is not None else mode
            if m is not None:
                p.chmod(int(m))

    def _downward_files(self, pod: dict, target: Path, items: list, container_name: str | None) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for it in items or []:
            if "fieldRef" in it:
                value = _field_path_value(pod, it["fieldRef"]["fieldPath"]) or ""
            else:
                value = self._resource_value(pod, it["resourceFieldRef"], container_name)
            p = target / it["path"]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(value)

    def _prepare_volumes(self, pod: dict, run: PodRun) -> None:
        ns, spec = run.namespace, pod["spec"]
        host: dict[str, str] = {}
        for vol in spec.get("volumes") or []:
            name = vol["name"]
            target = run.pod_dir / "volumes" / name
            if "configMap" in vol:
                src = vol["configMap"]
                data = self._config_map(ns, src["name"], src.get("optional", False)) or {}
                self._write_items(target, data, src.get("items"), src.get("defaultMode"),
                                  "configmap", src["name"], src.get("optional", False))
            elif "secret" in vol:
                src = vol["secret"]
                data = self._secret(ns, src["secretName"], src.get("optional", False)) or {}
                self._write_items(target, data, src.get("items"), src.get("defaultMode"),
                                  "secret", src["secretName"], src.get("optional", False))
            elif "downwardAPI" in vol:
                self._downward_files(pod, target, vol["downwardAPI"].get("items"), None)
            elif "projected" in vol:
                target.mkdir(parents=True, exist_ok=True)
                for source in vol["projected"].get("sources") or []:
                    if "configMap" in source:
                        s = source["configMap"]
                        data = self._config_map(ns, s["name"], s.get("optional", False)) or {}
                        self._write_items(target, data, s.get("items"), None, "configmap", s["name"], s.get("optional", False))
                    elif "secret" in source:
                        s = source["secret"]
                        data = self._secret(ns, s["name"], s.get("optional", False)) or {}
                        self._write_items(target, data, s.get("items"), None, "secret", s["name"], s.get("optional", False))
                    elif "downwardAPI" in source:
                        self._downward_files(pod, target, source["downwardAPI"].get("items"), None)
                    elif "serviceAccountToken" in source:
                        s = source["serviceAccountToken"]
                        token = self._service_account_token(pod, s)
                        (target / s["path"]).write_text(token)
            elif "hostPath" in vol:
                hp = vol["hostPath"]
                path = Path(hp["path"])
                if hp.get("type") in ("DirectoryOrCreate", None, "") and not path.exists():
                    path.mkdir(parents=True, exist_ok=True)
                host[name] = str(path)
                continue
            elif "persistentVolumeClaim" in vol:
                shared = self.root / "pvc" / ns / vol["persistentVolumeClaim"]["claimName"]
                shared.mkdir(parents=True, exist_ok=True)
                host[name] = str(shared)
                continue
            else:  # emptyDir and anything this kubelet has no special support for
                if "emptyDir" not in vol:
                    self._log(f"{ns}/{run.name}: volume {name!r} of an unsupported type is an empty directory")
                target.mkdir(parents=True, exist_ok=True)
            host[name] = str(target)

        for c in run.all_runs():
            mounts = {}
            for vm in c.spec.get("volumeMounts") or []:
                base = host.get(vm["name"])
                if base is None:
                    raise ConfigError(f'container "{c.name}": volumeMount refers to unknown volume "{vm["name"]}"')
                sub = vm.get("subPath")
                path = os.path.join(base, sub) if sub else base
                if sub and not os.path.exists(path):
                    Path(path).mkdir(parents=True, exist_ok=True)
                mounts[vm["mountPath"].rstrip("/") or "/"] = path
            run.mounts[c.name] = mounts

    def _service_account_token(self, pod: dict, src: dict) -> str:
        meta, spec = pod["metadata"], pod["spec"]
        sa = spec.get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [src["audience"]] if src.get("audience") else [],
                "expirationSeconds": int(src.get("expirationSeconds", 3600)),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        try:
            _, resp = self.rest.post(f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token", body)
        except ApiError as exc:
            raise ConfigError(f"cannot get a token for serviceaccount {sa!r}: {exc}") from exc
        return resp["status"]["token"]

    def _path_mapping(self, run: PodRun, c: ContainerRun) -> list[tuple[str, str]]:
        mapping = dict(run.mounts.get(c.name, {}))
        mapping[c.spec.get("terminationMessagePath") or "/dev/termination-log"] = str(c.term_path)
        return sorted(((k, v) for k, v in mapping.items() if k != "/"), key=lambda kv: len(kv[0]), reverse=True)

    def _resource_value(self, pod: dict, ref: dict, default_container: str | None) -> str:
        name = ref.get("containerName") or default_container
        container = next((c for c in pod["spec"].get("containers", []) if c["name"] == name), {})
        resource = ref["resource"]
        kind, _, res = resource.partition(".")
        value = ((container.get("resources") or {}).get(kind) or {}).get(res)
        if value is None and kind == "requests":
            value = ((container.get("resources") or {}).get("limits") or {}).get(res)
        if value is None:  # unset limits default to the node's allocatable
            value = {"cpu": str(os.cpu_count() or 1), "memory": str(8 * 2**30),
                     "ephemeral-storage": str(100 * 2**30)}.get(res, "0")
            if kind == "requests" and res == "cpu":
                value = "0"
        divisor = parse_quantity(ref.get("divisor") or "1") or 1.0  # the API defaults it to 0
        return str(int(math.ceil(parse_quantity(value) / divisor)))

    def _container_env(self, pod: dict, run: PodRun, c: ContainerRun) -> dict[str, str]:
        meta, spec = pod["metadata"], pod["spec"]
        ns = run.namespace
        env: dict[str, str] = {}
        for key in ("LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"):
            if key in os.environ:
                env[key] = os.environ[key]
        env["HOME"] = str(run.pod_dir / "work")
        env["HOSTNAME"] = spec.get("hostname") or meta["name"]
        env["KUBERNETES_SERVICE_HOST"] = str(self.api_host)
        env["KUBERNETES_SERVICE_PORT"] = str(self.api_port)
        env["KUBERNETES_SERVICE_PORT_HTTPS"] = str(self.api_port)
        env["PYTHONUNBUFFERED"] = "1"
        env["DSJ_POD_DIR"] = str(run.pod_dir)
        env["DSJ_MOUNT_MAP"] = json.dumps(run.mounts.get(c.name, {}), sort_keys=True)
        env["DSJ_TERMINATION_LOG"] = str(c.term_path)
        env["KUBELET_TERMINATION_MESSAGE_PATH"] = str(c.term_path)
        env.update(self.extra_env)
        # Only what the pod spec sets is in the container's view of paths; the kubelet's own
        # values (PATH, HOME, DSJ_TERMINATION_LOG, ...) are host paths already.
        c.spec_env_keys = set()

        for src in c.spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                ref = src["configMapRef"]
                data = self._config_map(ns, ref["name"], ref.get("optional", False)) or {}
            else:
                ref = src["secretRef"]
                data = self._secret(ns, ref["name"], ref.get("optional", False)) or {}
            for k, v in data.items():
                env[prefix + k] = v.decode("utf-8", "replace")
                c.spec_env_keys.add(prefix + k)

        for var in c.spec.get("env") or []:
            name = var["name"]
            c.spec_env_keys.add(name)
            if "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), env.get)
                continue
            vf = var["valueFrom"]
            if "fieldRef" in vf:
                value = _field_path_value(pod, vf["fieldRef"]["fieldPath"])
                if value is None:
                    raise ConfigError(f"unsupported fieldPath {vf['fieldRef']['fieldPath']!r} in env {name}")
                env[name] = value
            elif "resourceFieldRef" in vf:
                env[name] = self._resource_value(pod, vf["resourceFieldRef"], c.name)
            else:
                for field_name, read, kind in (("configMapKeyRef", self._config_map, "ConfigMap"),
                                               ("secretKeyRef", self._secret, "Secret")):
                    if field_name not in vf:
                        continue
                    ref = vf[field_name]
                    data = read(ns, ref["name"], ref.get("optional", False))
                    if data is not None and ref["key"] in data:
                        env[name] = data[ref["key"]].decode("utf-8", "replace")
                    elif not ref.get("optional", False):
                        raise ConfigError(f'couldn\'t find key {ref["key"]} in {kind} {ns}/{ref["name"]}')

        base_path = env.get("PATH") or os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["PATH"] = os.pathsep.join([*self.path_prepend, base_path])
        return env


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
