#!/usr/bin/env bash
# The main command: set-up (idempotent, see scripts/setup_env.sh), then the end-to-end demo:
# a tiny stand-in model, a synthetic episode bag, policy_node fed by a live replay with /clock,
# the offline evaluation of the same bag, and the check that both give the same chunks.
# Outputs go to output/demo/. Extra arguments go to the demo (e.g. --duration 5).
set -euo pipefail
# shellcheck disable=SC1091
. "$(cd "$(dirname "$0")" && pwd)/setup_env.sh"
cd "$COSMOS_ROOT"
# The demo's node and player keep to a DDS domain of their own (as the tests do), so they
# neither feed nor hear a node of yours in your domain; COSMOS_DEMO_DOMAIN_ID picks it.
export ROS_DOMAIN_ID=${COSMOS_DEMO_DOMAIN_ID:-$((1 + $$ % 100))}
echo "[demo] ROS_DOMAIN_ID=$ROS_DOMAIN_ID for the demo's node and player (watch them with ROS_DOMAIN_ID=$ROS_DOMAIN_ID ros2 topic echo ...)"
exec python -m cosmos_policy_ros.tools.demo "$@"
