#!/usr/bin/env bash
# Set up .venv (first time only) and run the test suite (slow and GPU tests excluded).
source "$(dirname "${BASH_SOURCE[0]}")/setup-venv.sh"
exec python -m pytest "$@"
