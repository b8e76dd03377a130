"""The worker contract shared by the data plane and the operator: exit codes and the
environment a generator pod receives. Pure constants."""

EXIT_OK = 0
EXIT_RETRY = 1
EXIT_DO_NOT_RETRY = 78  # sysexits EX_CONFIG: the generator config is broken, a retry cannot help
EXIT_TERMINATED = 143  # stopped by SIGTERM after checkpointing
EXIT_RUN_BUSY = 75  # sysexits EX_TEMPFAIL: another `dsj run` holds this run's lease; nothing was done

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
