"""The worker contract shared by the data plane and the operator: the API's names and the
environment a generator pod receives (its exit codes are datasetjob.errors.ExitCode). Pure constants."""

# The custom resource this data plane serves.
API_GROUP = "datagen.dev"
API_VERSION = "v1alpha1"
KIND = "DatasetJob"

# Set by `dsj run` for its workers: they stop (as on SIGTERM) when this process is gone.
PARENT_PID_ENV = "DSJ_PARENT_PID"

# Where a fromConfigMap item source is mounted in the pod.
ITEMS_DIR_ENV = "DSJ_ITEMS_DIR"
# Set for a retry-failed attempt: a committed shard with failed items reruns just those.
RETRY_FAILED_ITEMS_ENV = "DSJ_RETRY_FAILED_ITEMS"
# A regenerate token (datagen.dev/regenerate): part of the run id and of the generator
# fingerprint, so a regenerated run produces every item afresh.
REGENERATE_TOKEN_ENV = "DSJ_REGENERATE_TOKEN"
# The generator image's digest, when whoever starts the worker knows it (fingerprint input).
IMAGE_DIGEST_ENV = "DSJ_IMAGE_DIGEST"

# Puts a worker in work-packet mode (and the combine in assembly mode): the store key of the
# run's plan (spec.work_packets).
WORK_PLAN_ENV = "DSJ_WORK_PLAN"
