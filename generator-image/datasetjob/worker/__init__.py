"""One shard, start to commit: the `dsj worker` / `dsj combine` entry points, loading the
generator (a function or a command), its lifetime under signals, and what it reports at the end."""
