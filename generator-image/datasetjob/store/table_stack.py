"""Whether this install has the table stack (pyarrow, DuckDB): the `tables` extra, which the
datasetjob/worker-tables image has and datasetjob/worker does not. CSV and JSON lines need
neither; Parquet output needs pyarrow, and the combine's sortBy / dedupeBy both.

Checked where they are first needed, so an image without them fails with one line naming the
fix (a GeneratorConfigError: exit DO_NOT_RETRY, no retry can install a library), not with an
ImportError's traceback."""

from __future__ import annotations

import importlib.util

from datasetjob.errors import GeneratorConfigError

TABLES_IMAGE = "datasetjob/worker-tables"


def require_table_stack(what: str, modules: tuple[str, ...] = ("pyarrow",)) -> None:
    """GeneratorConfigError when one of `modules` is not installed; `what` names the spec field
    that needs it (e.g. "spec.output.format parquet")."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise GeneratorConfigError(
            f"{what} needs {' and '.join(missing)}, which this image does not have: build the generator "
            f"image FROM {TABLES_IMAGE} (the same tag) instead of datasetjob/worker "
            "(or pip install 'datasetjob[tables]')"
        )
