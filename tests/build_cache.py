"""What the build scripts make, and where: the one place the tests, the harness and `make doctor`
look for built binaries and images under $DATASETJOB_BUILD_CACHE (default ~/.cache/datasetjob).

Standard library only (`make doctor` runs before the venv exists).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.envfile import read_env_file

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSIONS_FILE = REPO_ROOT / "scripts" / "versions.env"
SERVICES_ENV = REPO_ROOT / "scripts" / "services.env"
# The project's images and the test node's own images: each script names the archives it builds.
IMAGE_SCRIPTS = (
    REPO_ROOT / "scripts" / "build-images.sh",
    REPO_ROOT / "tests" / "e2e" / "harness" / "node-images.sh",
)


def cache_dir() -> Path:
    return Path(os.environ.get("DATASETJOB_BUILD_CACHE") or Path.home() / ".cache" / "datasetjob")


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The pinned versions of scripts/versions.env."""
    return read_env_file(path)


def read_services_env(path: Path = SERVICES_ENV) -> dict[str, str]:
    """The pinned versions of scripts/services.env."""
    return read_env_file(path)


def control_plane_binaries(versions: dict[str, str] | None = None) -> dict[str, Path]:
    """Where build-control-plane.sh puts each binary for the pinned versions."""
    v = versions or read_versions()
    bin_root = cache_dir() / "bin"
    k8s = bin_root / f"kubernetes-{v['KUBERNETES_VERSION']}"
    return {
        "etcd": bin_root / f"etcd-{v['ETCD_VERSION']}" / "etcd",
        "kube-apiserver": k8s / "kube-apiserver",
        "kube-controller-manager": k8s / "kube-controller-manager",
        "kube-scheduler": k8s / "kube-scheduler",
        "kubelet": k8s / "kubelet",
        "kube-proxy": k8s / "kube-proxy",
        "helm": bin_root / f"helm-{v['HELM_VERSION']}" / "helm",
    }


def kueue_paths(versions: dict[str, str] | None = None) -> tuple[Path, Path]:
    """(binary, module source) for the pinned version, where scripts/build-kueue.sh puts them."""
    version = (versions or read_versions())["KUEUE_VERSION"]
    return (
        cache_dir() / "bin" / f"kueue-{version}" / "kueue",
        cache_dir() / "go" / "mod" / "sigs.k8s.io" / f"kueue@{version}",
    )


def prometheus_paths(versions: dict[str, str] | None = None) -> dict[str, Path]:
    """Where scripts/build-prometheus.sh puts prometheus, promtool and the prometheus-operator
    CRDs (generated from that project's Go API types) for the pinned versions."""
    v = versions or read_versions()
    bin_dir = cache_dir() / "bin" / f"prometheus-{v['PROMETHEUS_VERSION']}"
    return {
        "prometheus": bin_dir / "prometheus",
        "promtool": bin_dir / "promtool",
        "crds": cache_dir() / "bin" / f"prometheus-operator-crds-{v['PROMETHEUS_OPERATOR_VERSION']}",
    }


def versitygw_binary() -> Path:
    """Where scripts/install-services.sh builds the pinned versitygw."""
    version = read_services_env().get("VERSITYGW_VERSION", "")
    return cache_dir() / f"versitygw-{version}" / "versitygw"


def image_archive_paths() -> list[tuple[str, Path]]:
    """(image reference, archive) of every node image of the current inputs, built or not."""
    pairs = []
    for script in IMAGE_SCRIPTS:
        res = subprocess.run([str(script), "--print-archives"], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{script.name} --print-archives failed: {res.stderr.strip()}")
        for line in res.stdout.splitlines():
            ref, sep, path = line.partition("=")
            if sep:
                pairs.append((ref.strip(), Path(path.strip())))
    return pairs
