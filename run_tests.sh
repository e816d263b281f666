#!/usr/bin/env bash
# Run the test suite. Creates or reuses .venv, installs the research stack and the test
# extras (.[study,test]), runs pytest.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k metrics
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh study,test
exec python -m pytest "$@"
