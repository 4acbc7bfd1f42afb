#!/usr/bin/env bash
# The main command: set-up (idempotent), then the end-to-end demo.
set -euo pipefail
# shellcheck disable=SC1091
. "$(cd "$(dirname "$0")" && pwd)/setup_env.sh"
cd "$COSMOS_ROOT"
echo "[demo] set-up done; the end-to-end demo is added by the node and replay work (issues 5, 6)."
