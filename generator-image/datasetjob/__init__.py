"""DatasetJob data plane: spec model, sharding, worker, cache, storage, combine, local runner.

Importable without kopf or the Kubernetes client: this is what runs inside generator pods.
"""

API_GROUP = "datagen.dev"
API_VERSION = "v1alpha1"
KIND = "DatasetJob"

__version__ = "0.1.0"
