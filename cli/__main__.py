"""`python -m cli ...`: the `mpt` command without its console script."""

import sys

from . import main

sys.exit(main())
