"""`python -m streampose`: the command line, for environments without the console script."""

from streampose.cli import entry

entry()
