# Sourced by run_all.sh and run_tests.sh: make sure .venv exists and holds the
# project's current dependencies, then put it first on PATH.
# Usage: source scripts/ensure_venv.sh EXTRAS   ("" for none, "test" for the test extras)
set -euo pipefail
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_extras="${1:-}"
_venv="$_repo_root/.venv"
_python="${PYTHON:-python3}"
if [ ! -x "$_venv/bin/python" ]; then
  echo "[setup] creating $_venv"
  "$_python" -m venv "$_venv"
fi
# One line per installed extras set for the current setup.py; any set covers the base install.
# Reinstall only when setup.py changed or the wanted extras are missing.
_hash="$(sha256sum "$_repo_root/setup.py" | cut -c1-16)"
_stamp_file="$_venv/.thyroid-installed"
if [ -n "$_extras" ]; then
  grep -qx -- "$_hash-$_extras" "$_stamp_file" 2>/dev/null && _current=1 || _current=0
else
  grep -q -- "^$_hash-" "$_stamp_file" 2>/dev/null && _current=1 || _current=0
fi
if [ "$_current" = 0 ]; then
  echo "[setup] installing thyroid${_extras:+[$_extras]} into $_venv"
  "$_venv/bin/pip" install --quiet --upgrade pip
  "$_venv/bin/pip" install --quiet -e "$_repo_root${_extras:+[$_extras]}"
  { grep -- "^$_hash-" "$_stamp_file" 2>/dev/null || true; echo "$_hash-$_extras"; } > "$_stamp_file.new"
  mv "$_stamp_file.new" "$_stamp_file"
fi
export PATH="$_venv/bin:$PATH"
export VIRTUAL_ENV="$_venv"
