"""What runs on the local cluster besides Kubernetes itself: CoreDNS, an S3 server, the chart.

Each is installed the way a user would (kubectl apply, helm install) from the project's own
images. `install` (any cluster) waits with kubectl and helm; LocalCluster waits itself, by
polling the API more often than they do.
"""

from __future__ import annotations

import json
import secrets
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.build_cache import control_plane_binaries

from .cluster import kubectl_path
from .images import ImageArchive

ADDONS = Path(__file__).with_name("addons")
REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "helm" / "datasetjob"

RELEASE = "datasetjob"
SYSTEM_NAMESPACE = "datasetjob-system"
STORAGE_NAMESPACE = "datasetjob-storage"
BUCKET = "datasets"
S3_PORT = 7070
# The Secret every DatasetJob namespace needs for the default output (the chart's value).
CREDENTIALS_SECRET = "s3-credentials"


class AddonError(RuntimeError):
    """An add-on did not become ready."""


def image_ref(images: list[ImageArchive], repository: str) -> str:
    """The ref of the image whose repository ends with `repository` (e.g. "redis")."""
    for image in images:
        name = image.ref.rsplit(":", 1)[0]
        if name.rsplit("/", 1)[-1] == repository:
            return image.ref
    raise AddonError(f"no {repository} image among the archives: {[i.ref for i in images]} (`make images`)")


def _fill(text: str, values: dict[str, str]) -> str:
    return string.Template(text).substitute(values)


@dataclass
class S3Access:
    """How to reach the in-cluster S3 server: from pods (endpoint_url) and from this host."""

    endpoint_url: str  # the Service's DNS name, for pods
    host_endpoint_url: str  # its ClusterIP, routed to the node from this host
    access_key: str
    secret_key: str
    bucket: str = BUCKET
    region: str = "us-east-1"

    def client(self, attempts: int = 5):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.host_endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(retries={"mode": "standard", "max_attempts": attempts}),
        )

    def secret_data(self) -> dict[str, str]:
        """The Secret DatasetJobs reference as output.credentialsSecret."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }


class Addons:
    """Installs the add-ons with kubectl and helm, in the environment `kube_env` (KUBECONFIG)."""

    def __init__(self, kube_env: dict[str, str], images: list[ImageArchive], cluster_dns_ip: str | None = None):
        self.kube_env = kube_env
        self.images = images
        self.cluster_dns_ip = cluster_dns_ip
        self.s3: S3Access | None = None

    # -- tools ----------------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return self._run([kubectl_path() or "kubectl", *args], input, check)

    def helm(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        built = control_plane_binaries()["helm"]  # the pinned build when there is one, else the user's
        return self._run([str(built) if built.exists() else "helm", *args], input, check)

    def _run(self, argv: list[str], input: str | None, check: bool) -> subprocess.CompletedProcess:
        res = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.kube_env, timeout=600)
        if check and res.returncode != 0:
            raise AddonError(f"{' '.join(argv[:4])} ... exited with {res.returncode}:\n{res.stderr}{res.stdout}")
        return res

    def rollout(self, namespace: str, kind_name: str, timeout: str = "180s") -> None:
        res = self.kubectl("rollout", "status", "-n", namespace, kind_name, f"--timeout={timeout}", check=False)
        if res.returncode != 0:
            pods = self.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
            events = self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
            raise AddonError(f"{namespace}/{kind_name} not ready: {res.stderr.strip()}\n{pods}\n{events[-3000:]}")

    # -- the add-ons ------------------------------------------------------------------------------
    def install_coredns(self) -> None:
        manifest = _fill(
            (ADDONS / "coredns.yaml").read_text(),
            {"COREDNS_IMAGE": image_ref(self.images, "coredns"), "CLUSTER_DNS_IP": self.cluster_dns_ip},
        )
        self.kubectl("apply", "-f", "-", input=manifest)

    def s3_access(self) -> S3Access:
        """The S3 server's address and credentials, before it is installed: the chart's values
        and the output credentials need only these, so they need not wait for the server."""
        if self.s3 is None:
            self.s3 = S3Access(
                endpoint_url=f"http://s3.{STORAGE_NAMESPACE}.svc:{S3_PORT}",
                host_endpoint_url="",
                access_key="datasetjob",
                secret_key=secrets.token_hex(16),
            )
        return self.s3

    def install_s3(self) -> S3Access:
        access = self.s3_access()
        self.kubectl("create", "namespace", STORAGE_NAMESPACE, check=False)
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=_fill(
                (ADDONS / "s3.yaml").read_text(),
                {
                    "S3_NAMESPACE": STORAGE_NAMESPACE,
                    "S3_IMAGE": image_ref(self.images, "versitygw"),
                    "S3_ACCESS_KEY": access.access_key,
                    "S3_SECRET_KEY": access.secret_key,
                },
            ),
        )
        ip = self.kubectl("get", "service", "s3", "-n", STORAGE_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}").stdout
        access.host_endpoint_url = f"http://{ip}:{S3_PORT}"  # routed to the node on the local cluster
        return access

    def wait_for_s3(self) -> None:
        self.rollout(STORAGE_NAMESPACE, "deployment/s3")
        self._create_bucket()

    def _create_bucket(self) -> None:
        """From inside the cluster (a one-shot Job with the worker image), so this works on any
        cluster, including ones whose Services this host cannot reach."""
        script = (
            "import boto3, os, botocore.exceptions as e\n"
            "c = boto3.client('s3', endpoint_url=os.environ['ENDPOINT'], region_name='us-east-1',\n"
            "    aws_access_key_id=os.environ['ROOT_ACCESS_KEY'],\n"
            "    aws_secret_access_key=os.environ['ROOT_SECRET_KEY'])\n"
            "try:\n    c.create_bucket(Bucket=os.environ['BUCKET'])\n"
            "except c.exceptions.BucketAlreadyOwnedByYou:\n    pass\n"
        )
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "s3-bucket", "namespace": STORAGE_NAMESPACE},
            "spec": {
                "backoffLimit": 6,
                "ttlSecondsAfterFinished": 600,
                "template": {
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "automountServiceAccountToken": False,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                        "containers": [
                            {
                                "name": "create",
                                "image": image_ref(self.images, "worker"),
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["python", "-c", script],
                                "env": [
                                    {"name": "ENDPOINT", "value": self.s3.endpoint_url},
                                    {"name": "BUCKET", "value": self.s3.bucket},
                                ],
                                "envFrom": [{"secretRef": {"name": "s3-root"}}],
                                "securityContext": {
                                    "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    }
                },
            },
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(job))
        res = self.kubectl(
            "wait", "-n", STORAGE_NAMESPACE, "--for=condition=complete", "job/s3-bucket", "--timeout=180s", check=False
        )
        if res.returncode != 0:
            logs = self.kubectl("logs", "-n", STORAGE_NAMESPACE, "job/s3-bucket", check=False)
            raise AddonError(f"bucket {self.s3.bucket} not created: {res.stderr.strip()}\n{logs.stdout}{logs.stderr}")

    def chart_values(self) -> dict:
        """What a user sets at install time on this cluster: local images and the default output."""
        redis = image_ref(self.images, "redis")
        repository, tag = redis.rsplit(":", 1)
        return {
            "redis": {"image": {"repository": repository, "tag": tag}},
            "defaultOutput": {
                "prefix": f"s3://{self.s3.bucket}",
                "endpointUrl": self.s3.endpoint_url,
                "credentialsSecret": CREDENTIALS_SECRET,
            },
        }

    def install_chart(self, extra_values: dict | None = None, wait: bool = True) -> None:
        """helm upgrade --install; wait=False returns once the objects exist (the caller waits
        for the workloads, e.g. more often than helm's every 2 s)."""
        values = _merge(self.chart_values(), extra_values or {})
        self.helm(
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            "--namespace",
            SYSTEM_NAMESPACE,
            "--create-namespace",
            *(["--wait", "--timeout", "5m"] if wait else []),
            "-f",
            "-",
            input=yaml.safe_dump(values),
        )

    def add_credentials(self, namespace: str) -> None:
        """The output credentials Secret that DatasetJobs in `namespace` use by default."""
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CREDENTIALS_SECRET, "namespace": namespace},
            "stringData": self.s3.secret_data(),
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(secret))


def workload_ready(obj: dict) -> bool:
    """Whether a Deployment or StatefulSet runs its replicas, all ready, all of its current
    spec (what `helm --wait` and `kubectl rollout status` wait for)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return False
    ready = status.get("availableReplicas" if obj.get("kind") == "Deployment" else "readyReplicas", 0)
    return status.get("updatedReplicas", 0) >= want and ready >= want


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
