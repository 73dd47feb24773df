# Sourced by run-quick.sh and run-tests.sh: create (once) and reuse .venv, reinstalling only
# when pyproject.toml changes. Needs Python >= 3.11 and the package registry, nothing else.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "diffbench setup: error: Python >= 3.11 not found; install it or set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
STAMP="$VENV/.diffbench-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup-venv.sh" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "diffbench setup: creating $VENV with $PYTHON" >&2
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "diffbench setup: installing diffbench and its dependencies into $VENV (a few minutes the first time)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test,inception,samplers,vit]"
  # k-diffusion's samplers: the package without its training/evaluation dependencies (see pyproject)
  "$VENV/bin/python" -m pip install --quiet --no-deps "k-diffusion==0.1.1.post1"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
