#!/usr/bin/env bash
# The whole study: synthetic data (default) or --ddti_dir / --local_dir, shards,
# checkpoints, the study rows, evaluation and results/<run>/summary.md.
# Creates or reuses .venv. Flags go to python -m thyroid.study, e.g.
#   ./run_all.sh --quick
#   ./run_all.sh --ddti_dir=../shared/data/ddti --protocol=image
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh study  # explicit: sourcing would pass on "$@"
exec python -m thyroid.study "$@"
