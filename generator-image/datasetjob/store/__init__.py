"""Where a run's files live and how they are written: file and S3 backends, the layout under an
output, row tables and row types, checkpoints, the item store and reuse, and reading item files."""
