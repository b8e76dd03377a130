"""DatasetJob data plane: spec model, sharding, worker, cache, storage, combine, local runner.

Importable without kopf or the Kubernetes client: this is what runs inside generator pods.
"""

API_GROUP = "datagen.dev"
API_VERSION = "v1alpha1"
KIND = "DatasetJob"

__version__ = "0.1.0"

# The generator SDK: rate-limited upstream calls (datasetjob.context) and 429/503 back-off
# (datasetjob.backoff).
from .backoff import Throttled, retry_upstream  # noqa: E402  (stdlib-only imports)
from .context import limited  # noqa: E402

__all__ = ["API_GROUP", "API_VERSION", "KIND", "Throttled", "limited", "retry_upstream"]
