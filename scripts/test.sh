#!/usr/bin/env bash
# The test command: sets everything up (idempotent, see scripts/setup_env.sh), then runs the
# whole pytest suite against the installed package. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh test/test_messages.py -k smoke
set -euo pipefail
# shellcheck disable=SC1091
. "$(cd "$(dirname "$0")" && pwd)/setup_env.sh"
cd "$COSMOS_ROOT"
echo "[test] $(python --version), torch $(python -c 'import torch; print(torch.__version__)'), ROS: $COSMOS_MODE mode, every test process gets a private ROS_DOMAIN_ID"
exec pytest "$@"
