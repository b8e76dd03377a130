"""What a generator sees: the item context (cache, rate limit, log) and retrying throttled calls.
`from datasetjob import ...` re-exports the public part."""
