#!/usr/bin/env bash
# Prepare the wheels a bare CUDA machine needs to run `bench/run.py --suite gpu` (docs/performance.md).
#
#   bash bench/prepare_device_wheels.sh [DEST]      # default DEST: <repo>/.whl
#
# The GPU machine has Python 3.12 with torch, numpy, pillow, pyyaml, safetensors, huggingface-hub,
# pytest and the rest of the engine's needs, but no diffusers and no network. This downloads, for
# CPython 3.12, the pure-Python wheels it lacks (diffusers at the version of requirements.txt, and
# importlib_metadata with its zipp, which diffusers imports), builds this package's own wheel, and
# checks the folder stays far under the 64 MiB that travels with the working tree. DEST is added
# to the repository's git exclude file, so it travels only when named in `carry`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-$ROOT/.whl}
PYTHON=${PYTHON:-python3}
LIMIT_MIB=${LIMIT_MIB:-48}  # leave room under 64 MiB for the working tree itself
# Pins: diffusers from requirements.txt; importlib_metadata / zipp as tested here.
DIFFUSERS=$(sed -n 's/^diffusers==\([^ ]*\).*/\1/p' "$ROOT/requirements.txt")
EXTRA=(importlib_metadata==9.0.0 zipp==4.1.2)  # 10.x also needs lazy-importer
if [ -z "$DIFFUSERS" ]; then
    echo "no 'diffusers==' pin in $ROOT/requirements.txt" >&2
    exit 1
fi

# Keep DEST out of git first (it travels only when `carry` names it).
if [ -z "${1:-}" ] && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    EXCLUDE=$(git -C "$ROOT" rev-parse --path-format=absolute --git-path info/exclude)
    mkdir -p "$(dirname "$EXCLUDE")"
    grep -qxF '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >>"$EXCLUDE"
    git -C "$ROOT" check-ignore -q .whl/ && echo '[wheels] .whl/ is git-ignored (info/exclude)'
fi
rm -rf "$DEST"
mkdir -p "$DEST"
echo "[wheels] diffusers==$DIFFUSERS ${EXTRA[*]} for CPython 3.12 -> $DEST"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --abi abi3 --abi none --platform any \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$DEST" \
    "diffusers==$DIFFUSERS" "${EXTRA[@]}"
echo "[wheels] this package (pip wheel --no-deps)"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
# Build from a clean copy so the checkout gets no build/ or egg-info of this run.
git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && xargs -0 cp --parents -t "$BUILD" 2>/dev/null || true)
"$PYTHON" -m pip wheel -q --no-deps -w "$DEST" "$BUILD"

for wheel in "$DEST"/*.whl; do
    case "$(basename "$wheel")" in
        *-none-any.whl) ;;
        *) echo "[wheels] not pure Python (would not run on the GPU machine): $wheel" >&2; exit 1 ;;
    esac
done
# Every requirement of a carried wheel (for CPython 3.12 on Linux) must be carried too or be one
# of the GPU machine's own packages (its list: /work/.library/device/KINDS.md, 2026-11-17).
DEVICE_PACKAGES="filelock huggingface-hub numpy pillow pyyaml regex requests safetensors torch
    httpx packaging pytest pytest-timeout triton typing-extensions"
"$PYTHON" - "$DEST" $DEVICE_PACKAGES <<'PY'
import email.parser, re, sys, zipfile
from pathlib import Path
from pip._vendor.packaging.requirements import Requirement

dest, device = Path(sys.argv[1]), set(sys.argv[2:])
norm = lambda name: re.sub(r'[-_.]+', '-', name).lower()
wheels = {norm(path.name.split('-')[0]): path for path in dest.glob('*.whl')}
env = {'python_version': '3.12', 'python_full_version': '3.12.3', 'sys_platform': 'linux',
       'platform_system': 'Linux', 'implementation_name': 'cpython', 'extra': ''}
missing = []
for name, path in sorted(wheels.items()):
    with zipfile.ZipFile(path) as archive:
        meta = next(n for n in archive.namelist() if n.endswith('.dist-info/METADATA'))
        message = email.parser.Parser().parsestr(archive.read(meta).decode())
    for line in message.get_all('Requires-Dist') or []:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        needed = norm(requirement.name)
        if needed not in wheels and needed not in {norm(d) for d in device}:
            missing.append(f'{name} needs {requirement}')
if missing:
    sys.exit('[wheels] neither carried nor on the GPU machine: ' + '; '.join(missing))
print(f'[wheels] requirements of {len(wheels)} wheels: carried or on the GPU machine')
PY
SIZE_KIB=$(du -sk "$DEST" | cut -f1)
ls -l "$DEST"
echo "[wheels] $((SIZE_KIB / 1024)) MiB in $DEST"
if [ "$SIZE_KIB" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "[wheels] over $LIMIT_MIB MiB: the carried tree must stay under 64 MiB" >&2
    exit 1
fi
