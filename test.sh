#!/usr/bin/env bash
# The test suite, as CI runs it: refresh ./.venv (setup.sh --no-run), then types, lint, tests.
# Extra arguments go to pytest, e.g. ./test.sh -k decode
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --no-run
.venv/bin/python -m mypy
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
