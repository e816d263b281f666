# Sourced by run_all.sh and run_tests.sh: make sure .venv exists and holds the
# project's current dependencies, then put it first on PATH.
# Usage: source scripts/ensure_venv.sh [EXTRAS]   (e.g. "test")
set -euo pipefail
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_extras="${1:-}"
_venv="$_repo_root/.venv"
_python="${PYTHON:-python3}"
if [ ! -x "$_venv/bin/python" ]; then
  echo "[setup] creating $_venv"
  "$_python" -m venv "$_venv"
fi
# Reinstall only when setup.py or the requested extras changed.
_stamp_want="$(sha256sum "$_repo_root/setup.py" | cut -c1-16)-${_extras}"
_stamp_file="$_venv/.thyroid-installed"
if ! grep -qx -- "$_stamp_want" "$_stamp_file" 2>/dev/null; then
  echo "[setup] installing thyroid${_extras:+[$_extras]} into $_venv"
  "$_venv/bin/pip" install --quiet --upgrade pip
  "$_venv/bin/pip" install --quiet -e "$_repo_root${_extras:+[$_extras]}"
  echo "$_stamp_want" > "$_stamp_file"
fi
export PATH="$_venv/bin:$PATH"
export VIRTUAL_ENV="$_venv"
