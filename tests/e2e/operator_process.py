"""The operator as a real process, authenticated as the chart's ServiceAccount with exactly
the RBAC rendered in manifests/ (a missing permission fails the tests that need it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.e2e.harness.cluster import _die_with_parent, free_port, tail_file

REPO = Path(__file__).resolve().parents[2]
SYSTEM_NAMESPACE = "datasetjob-system"
SERVICE_ACCOUNT = "datasetjob"


def install_crd_and_rbac(cluster) -> None:
    cluster.kubectl("apply", "-f", str(REPO / "manifests" / "crd.yaml"))
    # Polled, not `kubectl wait`: that errors out while the new CRD has no conditions yet.
    cluster.wait_for(lambda: any(c.type == "Established" and c.status == "True" for c in
                                 (cluster.apiext.read_custom_resource_definition(
                                     "datasetjobs.datagen.dev").status.conditions or [])),
                     timeout=60, what="CRD established")
    wanted = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "datasetjob.yaml").read_text())
            if d and d.get("kind") in wanted]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


class OperatorProcess:
    def __init__(self, cluster, workdir: Path, env: dict[str, str]):
        self.cluster = cluster
        self.workdir = workdir
        self.extra_env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "operator.log"
        self.kubeconfig = workdir / "operator.kubeconfig"

    def _token(self) -> str:
        return self.cluster.kubectl("create", "token", SERVICE_ACCOUNT, "-n", SYSTEM_NAMESPACE,
                                    "--duration=4h").stdout.strip()

    def start(self) -> "OperatorProcess":
        self.cluster.control_plane.write_kubeconfig(self.kubeconfig, f"system:serviceaccount:{SYSTEM_NAMESPACE}:"
                                                    f"{SERVICE_ACCOUNT}", self._token())
        self.health_port = free_port()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "DSJ_RESYNC_SECONDS": "1",
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **self.extra_env}
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "datasetjob_operator", f"--liveness=http://127.0.0.1:{self.health_port}/healthz"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir,
            preexec_fn=_die_with_parent)  # never outlives the tests, even if they are killed
        log.close()
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"operator not healthy after {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like a node failure."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 60) -> str:
        return tail_file(self.log_path, lines)
