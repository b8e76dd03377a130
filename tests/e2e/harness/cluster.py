"""etcd + kube-apiserver + kube-controller-manager + kube-scheduler as local processes.

The binaries come from `scripts/build-control-plane.sh` (cached under
`$DATASETJOB_BUILD_CACHE`, default `~/.cache/datasetjob`, keyed by the versions pinned in
`scripts/versions.env`). Everything a run creates lives in one temporary directory that
`stop()` removes: etcd data, certificates, the service-account key, the static token file,
the admin kubeconfig and one log file per component.

The API server listens on the host's end of the node link (network.py), so pods reach it
through the `kubernetes` Service. It runs with Node and RBAC authorization, a static admin
token in `system:masters`, real service-account token signing (TokenRequest works) and the
default admission plugins. The controller manager runs only the controllers a one-node
cluster needs (no pod-gc, no cloud or IPAM controllers).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.build_cache import cache_dir, control_plane_binaries, read_versions
from tests.prerequisites import missing_lines

from .network import NodeAddresses

CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "ttl-after-finished-controller",
    "deployment-controller",
    "replicaset-controller",
    "serviceaccount-controller",
    # kube-root-ca.crt in every namespace, for projected service-account token volumes.
    "root-ca-certificate-publisher-controller",
    # The chart's Redis, and the Service endpoints that kube-proxy and CoreDNS follow.
    "statefulset-controller",
    "endpoints-controller",
    "endpointslice-controller",
    # Lifts the not-ready taint a kubelet registers with once the node reports Ready, and
    # taints a node unreachable when its kubelet goes silent.
    "node-lifecycle-controller",
    # Evicts the pods of an unreachable node once their tolerationSeconds are over.
    "taint-eviction-controller",
    # Fails and deletes the pods of a node that is gone or tainted out-of-service.
    "pod-garbage-collector-controller",
)
# How long a silent kubelet's node stays Ready (Kubernetes' default: 50 s); shorter here so a
# lost node costs the node-loss tests less time. Kubelets renew their lease every 10 s.
NODE_MONITOR_GRACE_PERIOD = "30s"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "dsj-admin"


class ControlPlaneError(RuntimeError):
    """A component failed to start or become ready."""


class BinariesMissing(ControlPlaneError):
    """The control-plane binaries for the pinned versions have not been built."""


def kubectl_path(versions: dict[str, str] | None = None) -> str | None:
    """DSJ_KUBECTL, else kubectl.<KUBECTL_MINOR> beside the installed kubectl, else kubectl."""
    if os.environ.get("DSJ_KUBECTL"):
        return os.environ["DSJ_KUBECTL"]
    found = shutil.which("kubectl")
    if not found:
        return None
    minor = (versions or read_versions()).get("KUBECTL_MINOR")
    if minor:
        pinned = Path(os.path.realpath(found)).parent / f"kubectl.{minor}"
        if os.access(pinned, os.X_OK):
            return str(pinned)
    return found


def require_binaries(
    names=("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"),
) -> dict[str, Path]:
    paths = control_plane_binaries()
    missing = [f"{n} ({paths[n]})" for n in names if not os.access(paths[n], os.X_OK)]
    if missing:
        raise BinariesMissing(
            "control-plane binaries are missing: "
            + ", ".join(missing)
            + ". Build them once with `make controlplane` (scripts/build-control-plane.sh); "
            "they are cached under " + str(cache_dir())
        )
    return paths


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: killed when the process that started us dies. SIGKILL, not
    SIGTERM: `unshare --fork` ignores SIGTERM, and a killed test run must leave no servers."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def tail_file(path: Path, lines: int = 40, max_bytes: int = 256 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


@dataclass
class Component:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    log_file: object = None

    def start(self, env: dict[str, str] | None = None) -> None:
        self.log_file = open(self.log_path, "ab", buffering=0)
        self.log_file.write(("$ " + " ".join(self.argv) + "\n").encode())
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=env,
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        p = self.process
        if p is None:
            return
        if p.poll() is None:
            _signal_group(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(p.pid, signal.SIGKILL)
                p.wait(5)
        # Anything the component forked in its process group goes too.
        _signal_group(p.pid, signal.SIGKILL)
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


def _component_env() -> dict[str, str]:
    """The environment of a control-plane process: this one's, without KUBECONFIG and kin."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed: {res.stderr.strip()}")


def make_pki(pki: Path, api_ips: tuple[str, ...]) -> None:
    """A CA, an API server serving certificate for api_ips, and a service-account key."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        *_EC,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=datasetjob-e2e-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=pki,
    )
    sans = ",".join(
        [
            *(f"IP:{a}" for a in api_ips),
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    _issue(pki, "apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key", cwd=pki)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _issue(pki: Path, name: str, subject: str, extensions: str) -> None:
    _openssl("req", "-new", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=pki)
    (pki / f"{name}.ext").write_text(extensions + "keyUsage=critical,digitalSignature,keyEncipherment\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "365",
        "-extfile",
        f"{name}.ext",
        cwd=pki,
    )


def issue_serving_cert(
    pki: Path, name: str, common_name: str, ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """A TLS serving certificate signed by the cluster CA (e.g. for a webhook the API server
    calls by URL): (cert, key), valid for the given IP addresses and DNS names."""
    sans = ",".join([*(f"IP:{a}" for a in ips), *(f"DNS:{d}" for d in dns)])
    _issue(pki, name, f"/CN={common_name}", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    return pki / f"{name}.crt", pki / f"{name}.key"


def issue_client_cert(pki: Path, name: str, user: str, group: str | None = None) -> tuple[Path, Path]:
    """A client certificate signed by the cluster CA: (cert, key) for `user` in `group`."""
    subject = f"/CN={user}" + (f"/O={group}" if group else "")
    _issue(pki, name, subject, "extendedKeyUsage=clientAuth\n")
    return pki / f"{name}.crt", pki / f"{name}.key"


def kubeconfig_yaml(
    server: str,
    ca_pem: bytes,
    user: str,
    token: str | None = None,
    context: str = "dsj-e2e",
    cert: Path | None = None,
    key: Path | None = None,
) -> str:
    """A self-contained kubeconfig: a bearer token, or a client certificate and key."""
    ca = base64.b64encode(ca_pem).decode()
    if token is not None:
        credentials = f"    token: {token}\n"
    else:
        credentials = (
            f"    client-certificate-data: {base64.b64encode(cert.read_bytes()).decode()}\n"
            f"    client-key-data: {base64.b64encode(key.read_bytes()).decode()}\n"
        )
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {context}\n"
        "  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority-data: {ca}\n"
        "users:\n"
        f"- name: {user}\n"
        "  user:\n" + credentials + "contexts:\n"
        f"- name: {context}\n"
        "  context:\n"
        f"    cluster: {context}\n"
        f"    user: {user}\n"
        "    namespace: default\n"
        f"current-context: {context}\n"
    )


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on free loopback ports.

    Use as a context manager, or call start()/stop(). After start():
    `kubeconfig` (admin, path), `server` (URL), `admin_token`, `ca_file`,
    `logs_tail()` / `format_logs_tail()` for failure reports.
    """

    root: Path | None = None
    keep: bool = False  # keep the state directory after stop() (debugging)
    start_timeout: float = 90.0
    extra_apiserver_flags: list[str] = field(default_factory=list)
    controllers: tuple[str, ...] = CONTROLLERS
    # Where the API server listens: the host's end of the node link, so pods reach it through
    # the `kubernetes` Service and host processes directly.
    addresses: NodeAddresses = field(default_factory=lambda: NodeAddresses(0))

    def __post_init__(self) -> None:
        self.versions = read_versions()
        self._own_root = self.root is None
        self.components: dict[str, Component] = {}
        self.server = ""
        self.admin_token = ""
        self.started = False
        self.timings: dict[str, float] = {}

    # -- paths -------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.root / "pki" / "ca.crt"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def kubernetes_version(self) -> str:
        return self.versions["KUBERNETES_VERSION"]

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        bins = require_binaries()
        missing = missing_lines({"cluster"})
        if missing:
            raise ControlPlaneError("this machine cannot run the control plane:\n  " + "\n  ".join(missing))
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="dsj-controlplane-"))
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        atexit.register(self.stop)
        try:
            self._start(bins)
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def _start(self, bins: dict[str, Path]) -> None:
        t0 = time.monotonic()
        root = self.root
        a = self.addresses
        make_pki(root / "pki", (a.host_ip, a.kubernetes_service_ip, "127.0.0.1"))
        # The API server's identity towards kubelets (logs, exec, port-forward).
        kubelet_client = issue_client_cert(
            root / "pki", "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
        )
        self.timings["pki"] = time.monotonic() - t0

        # etcd
        t = time.monotonic()
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._launch(
            "etcd",
            [
                str(bins["etcd"]),
                "--name=dsj-e2e",
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=dsj-e2e={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
        )
        self._wait("etcd", lambda: _http_get(f"{etcd_url}/health")[0] == 200)
        self.timings["etcd"] = time.monotonic() - t

        # kube-apiserver
        t = time.monotonic()
        self.admin_token = secrets.token_hex(24)
        tokens = root / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER}-uid,"system:masters"\n')
        tokens.chmod(0o600)
        port = free_port(a.host_ip)
        self.server = f"https://{a.host_ip}:{port}"
        pki = root / "pki"
        self._launch(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={a.host_ip}",
                f"--advertise-address={a.host_ip}",
                f"--secure-port={port}",
                f"--cert-dir={root / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-client-certificate={kubelet_client[0]}",
                f"--kubelet-client-key={kubelet_client[1]}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={a.service_cidr}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
                *self.extra_apiserver_flags,
            ],
        )
        ctx, headers = self._wait_apiserver_ready()
        self.kubeconfig.write_text(
            kubeconfig_yaml(self.server, self.ca_file.read_bytes(), ADMIN_USER, self.admin_token)
        )
        self.kubeconfig.chmod(0o600)
        # The bootstrap controller creates these shortly after /readyz.
        self._wait(
            "default namespace",
            lambda: _http_get(f"{self.server}/api/v1/namespaces/default", ctx=ctx, headers=headers)[0] == 200,
        )
        self.timings["kube-apiserver"] = time.monotonic() - t

        # Both at once: each only needs the API server.
        t = time.monotonic()
        health = {
            "kube-controller-manager": self._launch_controller(
                bins,
                "kube-controller-manager",
                [
                    f"--cert-dir={root / 'kcm-certs'}",
                    f"--controllers={','.join(self.controllers)}",
                    f"--service-cluster-ip-range={a.service_cidr}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}",
                ],
            ),
            "kube-scheduler": self._launch_controller(bins, "kube-scheduler", []),
        }
        insecure = ssl.create_default_context()  # their self-signed serving certificates
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        for name, url in health.items():
            self._wait(name, lambda url=url: _http_get(url, ctx=insecure)[0] == 200)
            self.timings[name] = time.monotonic() - t
        self.timings["total"] = time.monotonic() - t0

    def _launch_controller(self, bins: dict[str, Path], name: str, flags: list[str]) -> str:
        """kube-controller-manager or kube-scheduler: admin kubeconfig, loopback, no leader
        election. Returns its health URL."""
        port = free_port()
        self._launch(
            name,
            [
                str(bins[name]),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--v=1",
                *flags,
            ],
        )
        return f"https://127.0.0.1:{port}/healthz"

    def _launch(self, name: str, argv: list[str]) -> None:
        comp = Component(name, argv, self.log_dir / f"{name}.log")
        self.components[name] = comp
        comp.start(_component_env())

    def _wait(self, what: str, ready, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        last_error = ""
        while time.monotonic() < deadline:
            for comp in self.components.values():
                if not comp.running():
                    code = comp.process.returncode if comp.process else None
                    raise ControlPlaneError(
                        f"{comp.name} exited with code {code} while waiting for {what}; "
                        f"last lines of {comp.log_path}:\n{tail_file(comp.log_path, 30)}"
                    )
            try:
                if ready():
                    return
            except Exception as exc:  # connection refused while starting, etc.
                last_error = repr(exc)
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{what} not ready after {timeout or self.start_timeout:.0f}s ({last_error})\n" + self.format_logs_tail(30)
        )

    def restart_apiserver(self, down_seconds: float = 0.0) -> float:
        """Stops kube-apiserver (SIGTERM, as a rolling control-plane upgrade does), keeps it
        down for down_seconds and starts it again with the same flags and port. Returns how
        long it was unavailable (down until /readyz answers 200 again)."""
        comp = self.components["kube-apiserver"]
        t = time.monotonic()
        comp.stop()
        time.sleep(down_seconds)
        comp.start(_component_env())
        self._wait_apiserver_ready()
        return time.monotonic() - t

    def _wait_apiserver_ready(self) -> tuple[ssl.SSLContext, dict[str, str]]:
        """Until /readyz answers 200; returns the TLS context and headers of an admin request."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        self._wait("kube-apiserver", lambda: _http_get(f"{self.server}/readyz", ctx=ctx, headers=headers)[0] == 200)
        return ctx, headers

    def stop(self) -> None:
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            comp = self.components.get(name)
            if comp is not None:
                comp.stop()
        self.started = False
        if self.root is not None and self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass

    # -- diagnostics -------------------------------------------------------------------
    def logs_tail(self, lines: int = 40) -> dict[str, str]:
        """The last lines of each component's log, by component name."""
        return {name: tail_file(c.log_path, lines) for name, c in self.components.items()}

    def format_logs_tail(self, lines: int = 40) -> str:
        out = []
        for name, text in self.logs_tail(lines).items():
            out.append(f"----- {name} (last {lines} lines of {self.log_dir / (name + '.log')}) -----")
            out.append(text or "(empty)")
        return "\n".join(out)

    def api_get(self, path: str) -> tuple[int, str]:
        """GET an API path as the admin: (HTTP status, body)."""
        return _http_get(
            f"{self.server}{path}", ctx=self._ssl_context(), headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def api_delete(self, path: str) -> int:
        req = urllib.request.Request(
            f"{self.server}{path}", method="DELETE", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def env(self) -> dict[str, str]:
        """os.environ with KUBECONFIG pointing at the admin kubeconfig (for kubectl/helm)."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def write_kubeconfig(self, path: Path, user: str, token: str, namespace: str = "default") -> Path:
        """A kubeconfig for another identity (e.g. a ServiceAccount token)."""
        text = kubeconfig_yaml(self.server, self.ca_file.read_bytes(), user, token)
        text = text.replace("namespace: default", f"namespace: {namespace}")
        path = Path(path)
        path.write_text(text)
        path.chmod(0o600)
        return path


def _http_get(
    url: str, ctx: ssl.SSLContext | None = None, headers: dict | None = None, timeout: float = 2.0
) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def main() -> None:  # pragma: no cover - manual smoke test
    with ControlPlane() as cp:
        print(json.dumps({k: round(v, 2) for k, v in cp.timings.items()}))
        print(f"export KUBECONFIG={cp.kubeconfig}")
        sys.stdout.flush()
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
