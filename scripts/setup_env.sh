# Set-up shared by scripts/test.sh and scripts/demo.sh; source it, do not run it.
#
# Idempotent. On a bare machine (Python 3.10+, cmake, a C/C++ compiler, pip reaching the package
# index) it creates the virtual environment, installs the pinned requirements (ROS 2 Kilted
# wheels, torch, diffusers, ...), builds the messages and the package with colcon, and sources
# the result. With a ROS distro sourced (ROS_DISTRO set, its rclpy importable) the venv sees the
# distro's packages, only the non-ROS requirements are installed, and colcon builds against the
# distro. A second run only rebuilds what changed: seconds.
#
# Environment knobs: COSMOS_VENV (venv path; default ~/.cache/cosmos_policy_ros/venv-<checkout
# path>, outside the source tree because CMake refuses exported include paths inside it),
# COSMOS_BUILD (build and install base, default <repo>/.build), PYTHON (interpreter for the venv).

cosmos_die() {
  echo "error: $*" >&2
  exit 1
}

COSMOS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COSMOS_VENV=${COSMOS_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/cosmos_policy_ros/venv$(echo "$COSMOS_ROOT" | tr '/' '-')}
COSMOS_BUILD=${COSMOS_BUILD:-$COSMOS_ROOT/.build}
mkdir -p "$COSMOS_BUILD"

# --- 1. What this machine has -----------------------------------------------------------------
cosmos_python_ok() {
  "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

COSMOS_MODE=bare
if [ -n "${ROS_DISTRO:-}" ] && python3 -c 'import rclpy' >/dev/null 2>&1; then
  COSMOS_MODE=distro  # use the sourced distro's rclpy, messages and build tools
fi

if [ -x "$COSMOS_VENV/bin/python" ]; then
  COSMOS_PY="$COSMOS_VENV/bin/python"
elif [ -n "${PYTHON:-}" ]; then
  COSMOS_PY=$PYTHON
elif [ "$COSMOS_MODE" = distro ]; then
  COSMOS_PY=python3  # must be the interpreter the distro's rclpy was built for
else
  COSMOS_PY=
  for candidate in python3.11 python3.12 python3.13 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && cosmos_python_ok "$candidate"; then
      COSMOS_PY=$candidate
      break
    fi
  done
fi
if [ -z "$COSMOS_PY" ] || ! cosmos_python_ok "$COSMOS_PY"; then
  found=$(python3 --version 2>&1 || echo 'no python3 on PATH')
  cosmos_die "Python 3.10 or newer with the venv module is required (found: $found)"
fi
command -v cmake >/dev/null 2>&1 || cosmos_die "cmake not found: install cmake 3.21 or newer"
cmake_version=$(cmake --version | head -n 1 | awk '{print $3}')
printf '%s\n3.21\n' "$cmake_version" | sort -V -C \
  && cosmos_die "cmake $cmake_version is too old: cmake 3.21 or newer is required"
command -v "${CC:-cc}" >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
  || cosmos_die "no C compiler found (cc/gcc): install gcc or build-essential"
command -v "${CXX:-c++}" >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
  || cosmos_die "no C++ compiler found (c++/g++): install g++ or build-essential"

# --- 2. Virtual environment and pinned requirements --------------------------------------------
if [ ! -x "$COSMOS_VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $COSMOS_VENV ($COSMOS_MODE mode)"
  venv_flags=()
  [ "$COSMOS_MODE" = distro ] && venv_flags=(--system-site-packages)
  "$COSMOS_PY" -m venv "${venv_flags[@]}" "$COSMOS_VENV" \
    || cosmos_die "could not create the virtual environment $COSMOS_VENV"
fi
# shellcheck disable=SC1091
. "$COSMOS_VENV/bin/activate"

cosmos_requirements="$COSMOS_BUILD/requirements-$COSMOS_MODE.txt"
if [ "$COSMOS_MODE" = distro ]; then
  grep -v '# skip-with-distro' "$COSMOS_ROOT/requirements.txt" >"$cosmos_requirements"
else
  cp "$COSMOS_ROOT/requirements.txt" "$cosmos_requirements"
fi
cosmos_stamp="$COSMOS_VENV/.cosmos-requirements.sha256"
cosmos_want=$(sha256sum "$cosmos_requirements" | cut -d' ' -f1)
if [ "$(cat "$cosmos_stamp" 2>/dev/null)" != "$cosmos_want" ]; then
  echo "[setup] installing pinned requirements into $COSMOS_VENV (first run: about a minute)"
  cosmos_pip_log="$COSMOS_BUILD/pip-install.log"
  if ! { python -m pip install --retries 2 --timeout 30 -U pip \
         && python -m pip install --retries 2 --timeout 30 -r "$cosmos_requirements"; } \
       >"$cosmos_pip_log" 2>&1; then
    if grep -qiE 'NewConnectionError|name resolution|Network is unreachable|ConnectTimeout|Max retries exceeded|connection refused' \
         "$cosmos_pip_log"; then
      cosmos_die "no network to the package index: pip could not download the pinned packages (log: $cosmos_pip_log)"
    fi
    cosmos_die "pip could not install requirements.txt: $(grep -E '^ERROR' "$cosmos_pip_log" | head -n 1) (log: $cosmos_pip_log)"
  fi
  echo "$cosmos_want" >"$cosmos_stamp"
fi

# --- 3. Build the messages and the package with colcon -----------------------------------------
if [ "$COSMOS_MODE" = bare ]; then
  # The venv is the ROS underlay: the wheels install ament/rosidl CMake configs into it.
  export CMAKE_PREFIX_PATH="$VIRTUAL_ENV" AMENT_PREFIX_PATH="$VIRTUAL_ENV"
fi
touch "$COSMOS_BUILD/COLCON_IGNORE"
# Files deleted from the source tree must not linger in the install: reinstall the Python
# package every time (the install step copies it; nothing is recompiled).
rm -rf "$COSMOS_BUILD"/install/cosmos_policy_ros/lib/python3*/site-packages/cosmos_policy_ros
cosmos_build_log="$COSMOS_BUILD/colcon-build.log"
if ! (cd "$COSMOS_ROOT" && colcon --log-base "$COSMOS_BUILD/log" build \
        --base-paths "$COSMOS_ROOT" \
        --build-base "$COSMOS_BUILD/build" --install-base "$COSMOS_BUILD/install" \
        --event-handlers console_direct- console_stderr- \
        --cmake-args -DBUILD_TESTING=OFF) >"$cosmos_build_log" 2>&1; then
  tail -n 40 "$cosmos_build_log" >&2
  cosmos_die "colcon build failed (log: $cosmos_build_log)"
fi
set +u
# shellcheck disable=SC1091
. "$COSMOS_BUILD/install/local_setup.bash"
set -u

# `python -c ...` run from the checkout must import the installed package (which has the
# generated `msg` module), not the source directory in the current working directory.
export PYTHONSAFEPATH=1
# Keep ROS traffic on this machine unless the caller chose otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((20 + $$ % 70))}
export COSMOS_ROOT COSMOS_VENV COSMOS_BUILD COSMOS_MODE
