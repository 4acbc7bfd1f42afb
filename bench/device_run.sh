#!/usr/bin/env bash
# The GPU machine's side of the device check (docs/performance.md, "Running the GPU suite").
#
#   bash bench/device_run.sh                          # on the GPU machine: --device cuda
#   PYTHON=/tmp/venv/bin/python OUT=/tmp/out bash bench/device_run.sh --device cpu --quick
#                                                     # the CPU rehearsal of the same steps
#
# Installs the wheels of bench/prepare_device_wheels.sh (.whl/, carried with the working tree)
# into a fresh --target folder with no index (the machine has no network), puts it first on
# PYTHONPATH, and runs the GPU suite into $OUT (what comes back), its log beside it.
# Arguments go to `bench/run.py --suite gpu` (default: --device cuda).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=${OUT:?OUT must name the folder for the results}
SITE=${SITE:-/tmp/cosmos-site}
WHEELS=${WHEELS:-$ROOT/.whl}
cd "$ROOT" || exit 1
mkdir -p "$OUT"
if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "no wheels in $WHEELS: run bench/prepare_device_wheels.sh and carry .whl" >&2
    exit 1
fi
rm -rf "$SITE"
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl || exit 1
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHONSAFEPATH=1 "$PYTHON" -c 'import sys, torch, diffusers, cosmos_policy_ros as c
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda",
      torch.cuda.is_available(), "diffusers", diffusers.__version__, "package", c.__file__)' \
    2>&1 | tee "$OUT/gpu-suite.log" || exit 1
if command -v nvidia-smi >/dev/null; then
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
fi
if [ $# -eq 0 ]; then
    set -- --device cuda
fi
"$PYTHON" bench/run.py --suite gpu --out "$OUT" "$@" 2>&1 | tee -a "$OUT/gpu-suite.log"
