"""Errors with a meaning for exit codes and messages."""


class SpecError(ValueError):
    """A spec that cannot run. Each problem names the field path it is about."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class GeneratorConfigError(RuntimeError):
    """The generator cannot be loaded or started; retrying the shard would not help."""


class StorageError(RuntimeError):
    """Reading or writing the output store failed."""
