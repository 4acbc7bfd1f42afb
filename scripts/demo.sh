#!/usr/bin/env bash
# The main command: set-up (idempotent, see scripts/setup_env.sh), then the two demos:
# 1. closed loop (cosmos-policy-sim demo): the tiny Cosmos Policy trained on the simulated planar
#    arm drives it through policy_node (lockstep sim time), one line per episode and a table
#    against the baselines (scripted expert, random actions, hold still); output/sim_demo/;
# 2. replay and parity (cli/demo.py): a stand-in model, a synthetic episode bag, policy_node
#    fed by a live replay with /clock, the offline evaluation of the same bag, and the check
#    that both give the same chunks; output/demo/. Extra arguments go to this one.
# COSMOS_SIM_DEMO_ARGS: extra arguments of the closed-loop demo (e.g. "--episodes 20").
set -euo pipefail
# shellcheck disable=SC1091
. "$(cd "$(dirname "$0")" && pwd)/setup_env.sh"
cd "$COSMOS_ROOT"
# The demo's node and player keep to a DDS domain of their own (as the tests do), so they
# neither feed nor hear a node of yours in your domain; COSMOS_DEMO_DOMAIN_ID picks it.
export ROS_DOMAIN_ID=${COSMOS_DEMO_DOMAIN_ID:-$((1 + $$ % 100))}
echo "[demo] ROS_DOMAIN_ID=$ROS_DOMAIN_ID for the demo's node and player (watch them with ROS_DOMAIN_ID=$ROS_DOMAIN_ID ros2 topic echo ...)"
# shellcheck disable=SC2086
python -m cosmos_policy_ros.cli.sim demo ${COSMOS_SIM_DEMO_ARGS:-}
echo
exec python -m cosmos_policy_ros.cli.demo "$@"
