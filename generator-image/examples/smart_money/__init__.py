"""A synthetic "smart money flow" dataset with the shape of the original parallel-generation
workload: 100 symbols × 36 month-ends, three upstream "API calls" per example."""
