"""A real Prometheus (built by `make prometheus`) for the tests: started on loopback with a
scrape config, read through its HTTP API, stopped when done."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.build_cache import prometheus_paths

SCRAPE_SECONDS = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusApi:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, **params: object) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as res:  # noqa: S310 - loopback only
            body = json.load(res)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        result: list[dict] = self.get("/api/v1/query", query=expr)["result"]
        return result

    def query_range(self, expr: str, start: float, end: float) -> list[dict]:
        result: list[dict] = self.get("/api/v1/query_range", query=expr, start=start, end=end, step=SCRAPE_SECONDS)[
            "result"
        ]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


@contextlib.contextmanager
def running_prometheus(
    work: Path, targets: list[str], rule_files: list[Path] = (), job: str = "datasetjob"
) -> Iterator[PrometheusApi]:
    """Prometheus scraping `targets` (host:port) every second under job=`job`."""
    binary = prometheus_paths()["prometheus"]
    config = work / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
                "rule_files": [str(p) for p in rule_files],
                "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
            }
        )
    )
    port = free_port()
    log_path = work / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                str(binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            api = PrometheusApi(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"prometheus exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{api.base}/-/ready", timeout=2):  # noqa: S310 - loopback only
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"prometheus not ready after 30 s: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield api
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, AssertionError, KeyError) as exc:  # not there yet
            last = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last!r})" if last else "")
    )
