"""DatasetJob data plane: spec, store, worker, combine, local runner, cache and rate limiter.

Importable without kopf or the Kubernetes client: this is what runs inside generator pods.
"""

# The API's names, and the generator SDK: rate-limited upstream calls (datasetjob.sdk.context)
# and 429/503 back-off (datasetjob.sdk.backoff).
from datasetjob.contract import API_GROUP, API_VERSION, KIND
from datasetjob.sdk.backoff import Throttled, retry_upstream
from datasetjob.sdk.context import limited

__version__ = "0.1.0"

__all__ = ["API_GROUP", "API_VERSION", "KIND", "Throttled", "limited", "retry_upstream"]
