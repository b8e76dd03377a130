import sys

from datasetjob.cli import main

sys.exit(main())
