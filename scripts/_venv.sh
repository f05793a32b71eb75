# Sourced by scripts/demo and scripts/test: one virtual environment under .venv, created once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "parcours needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1))." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv; then
    echo "Could not create .venv: on Debian, install the venv module first (apt-get install python3-venv)." >&2
    exit 1
  fi
  .venv/bin/python -m pip install -q --upgrade pip
fi
