#!/usr/bin/env bash
# Set up .venv (first time only) and run the default suite `quick`; prints where the report is.
source "$(dirname "${BASH_SOURCE[0]}")/setup-venv.sh"
exec diffbench run quick "$@"
