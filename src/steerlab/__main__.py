"""`python -m steerlab` runs the command line."""

import sys

from steerlab.cli import main

sys.exit(main())
