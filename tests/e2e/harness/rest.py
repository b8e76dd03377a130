"""A minimal JSON client for the Kubernetes API (stdlib only).

Tests and the harness use it for plain dicts in API (camelCase) form, independent of the
`kubernetes` package's major versions (whose low-level request APIs changed).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import tempfile
import threading
import urllib.parse
from pathlib import Path


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: object):
        self.method, self.path, self.status, self.body = method, path, status, body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


def load_kubeconfig(path: str | Path) -> tuple[str, bytes | None, str | None]:
    """(server, CA PEM, bearer token) of the current context of a simple kubeconfig."""
    import yaml  # pyyaml is a dependency of the project

    cfg = yaml.safe_load(Path(path).read_text())
    ctx_name = cfg.get("current-context")
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")), {})
    ca = None
    if cluster.get("certificate-authority-data"):
        ca = base64.b64decode(cluster["certificate-authority-data"])
    elif cluster.get("certificate-authority"):
        ca = Path(cluster["certificate-authority"]).read_bytes()
    return cluster["server"], ca, user.get("token")


class KubeRest:
    """Thread-safe (one keep-alive connection per thread) JSON requests to an API server."""

    def __init__(self, server: str, ca_pem: bytes | None, token: str | None, timeout: float = 30.0):
        u = urllib.parse.urlsplit(server)
        self.host, self.port = u.hostname, u.port or 443
        self.timeout = timeout
        self.token = token
        self.ctx = ssl.create_default_context()
        if ca_pem:
            with tempfile.NamedTemporaryFile("wb", suffix=".crt") as f:
                f.write(ca_pem)
                f.flush()
                self.ctx.load_verify_locations(f.name)
        self._local = threading.local()

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> KubeRest:
        return cls(*load_kubeconfig(path))

    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        content_type: str = "application/json",
        params: dict | None = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> tuple[int, object]:
        """Returns (status, decoded JSON body); raises ApiError for >= 400 unless listed."""
        if params:
            path = path + "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self._drop()  # stale keep-alive connection: retry once on a new one
                if attempt:
                    raise
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        if resp.status >= 400 and resp.status not in ok_statuses:
            raise ApiError(method, path, resp.status, payload)
        return resp.status, payload

    def get(self, path: str, **params) -> object:
        return self.request("GET", path, params=params or None)[1]

    def post(self, path: str, body: object, ok_statuses: tuple[int, ...] = ()) -> tuple[int, object]:
        return self.request("POST", path, body, ok_statuses=ok_statuses)

    def patch(
        self, path: str, body: object, kind: str = "strategic-merge-patch", ok_statuses: tuple[int, ...] = ()
    ) -> tuple[int, object]:
        return self.request("PATCH", path, body, content_type=f"application/{kind}+json", ok_statuses=ok_statuses)

    def delete(self, path: str, body: object = None, ok_statuses: tuple[int, ...] = ()) -> tuple[int, object]:
        return self.request("DELETE", path, body, ok_statuses=ok_statuses)

    def close(self) -> None:
        self._drop()
