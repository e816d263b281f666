# Sourced by run_all.sh and run_tests.sh: make sure .venv exists and holds the
# project's current dependencies, then put it first on PATH.
# Usage: source scripts/ensure_venv.sh EXTRAS   (comma-separated extras of setup.py:
# "study" for the research stack run_all.sh needs, "study,test" for the tests; "" for the
# serving install alone)
set -euo pipefail
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_extras="${1:-}"
_venv="$_repo_root/.venv"
_python="${PYTHON:-python3}"
if [ ! -x "$_venv/bin/python" ]; then
  echo "[setup] creating $_venv"
  "$_python" -m venv "$_venv"
fi
# One line "<setup.py hash>-<extras>" per install made for the current setup.py. The venv is
# current when one line's extras include every wanted extra (an install with more extras
# covers one with fewer; the serving install is in every one). Reinstall only otherwise.
_hash="$(sha256sum "$_repo_root/setup.py" | cut -c1-16)"
_stamp_file="$_venv/.thyroid-installed"
_covers() {  # _covers "<installed extras>" "<wanted extras>"
  local wanted
  for wanted in ${2//,/ }; do
    case ",$1," in *",$wanted,"*) ;; *) return 1 ;; esac
  done
}
_current=0
if [ -f "$_stamp_file" ]; then
  while IFS= read -r _line; do
    case "$_line" in
      "$_hash-"*) _covers "${_line#"$_hash-"}" "$_extras" && { _current=1; break; } ;;
    esac
  done < "$_stamp_file"
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
