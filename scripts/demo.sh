#!/usr/bin/env bash
# The main command: set-up (idempotent, see scripts/setup_env.sh), then the end-to-end demo:
# a tiny stand-in model, a synthetic episode bag, policy_node fed by a live replay with /clock,
# the offline evaluation of the same bag, and the check that both give the same chunks.
# Outputs go to output/demo/. Extra arguments go to the demo (e.g. --duration 5).
set -euo pipefail
# shellcheck disable=SC1091
. "$(cd "$(dirname "$0")" && pwd)/setup_env.sh"
cd "$COSMOS_ROOT"
exec python -m cosmos_policy_ros.tools.demo "$@"
