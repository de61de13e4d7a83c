"""`python -m streampose`: the command line, for environments without the console script."""

import sys

from streampose.cli import main

sys.exit(main())
