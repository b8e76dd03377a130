"""`python -m datasetjob_operator`: run the operator (same as `dsj operator`)."""

import sys

from .cli import operator_main

sys.exit(operator_main(sys.argv[1:]))
