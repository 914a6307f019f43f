"""`python -m baton.cli`: the same as the `baton` console script."""

import sys

from baton.cli.main import main

sys.exit(main())
