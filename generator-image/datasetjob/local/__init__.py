"""`dsj run` on one machine: the runner that schedules shard processes, its terminal view, the
lease that keeps one run per output, and the checks of its options."""
