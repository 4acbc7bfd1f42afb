# Set-up shared by scripts/test.sh and scripts/demo.sh, and for your own shell:
#
#   . scripts/setup_env.sh
#
# Idempotent. On a bare machine (Python 3.10+, cmake, a C/C++ compiler, pip reaching the package
# index) it creates the virtual environment, installs the pinned requirements (ROS 2 Kilted
# wheels, torch, diffusers, ...), builds the messages and the package with colcon, and sources
# the result. With a ROS distro sourced (ROS_DISTRO set, its rclpy importable) the venv sees the
# distro's packages, only the non-ROS requirements are installed, and colcon builds against the
# distro. A second run only rebuilds what changed: seconds. The installed package is updated in
# place, file by file (files removed from the source tree are removed afterwards), so a process
# running from the install meanwhile keeps working.
#
# Afterwards `policy_node`, the `cosmos-policy-*` tools (and, with COSMOS_ROS_EXTRAS, `ros2`) are
# on PATH. Sourcing leaves the shell's options as they were (no `set -e`/`-u` left behind) and
# returns, never exits, on an error. ROS_DOMAIN_ID and the discovery settings are yours: an
# unset ROS_DOMAIN_ID stays unset (domain 0); ROS_AUTOMATIC_DISCOVERY_RANGE defaults to LOCALHOST
# unless you set it or ROS_LOCALHOST_ONLY. It prints what it uses. (The test suite gives every
# test process a private domain of its own: test/conftest.py.)
#
# Environment knobs: COSMOS_VENV (venv path; default ~/.cache/cosmos_policy_ros/venv-<checkout
# path>, outside the source tree because CMake refuses exported include paths inside it),
# COSMOS_BUILD (build and install base, default <repo>/.build), PYTHON (interpreter for the venv),
# COSMOS_ROS_EXTRAS=DIR (bare mode: install the ROS 2 launch stack and the `ros2` CLI from DIR,
# a folder like ../shared/ros2-launch with an install.sh taking the venv; again only when DIR's
# contents change), COSMOS_SETUP_QUIET=1 (no summary line).

cosmos_die() {
  echo "error: $*" >&2
}

cosmos_python_ok() {
  "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

cosmos_setup_main() {
  COSMOS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  COSMOS_VENV=${COSMOS_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/cosmos_policy_ros/venv$(echo "$COSMOS_ROOT" | tr '/' '-')}
  COSMOS_BUILD=${COSMOS_BUILD:-$COSMOS_ROOT/.build}
  mkdir -p "$COSMOS_BUILD" || { cosmos_die "cannot create $COSMOS_BUILD"; return 1; }
  COSMOS_BUILD=$(cd "$COSMOS_BUILD" && pwd)

  # --- 1. What this machine has ---------------------------------------------------------------
  COSMOS_MODE=bare
  if [ -n "${ROS_DISTRO:-}" ] && python3 -c 'import rclpy' >/dev/null 2>&1; then
    COSMOS_MODE=distro  # use the sourced distro's rclpy, messages and build tools
  fi

  local py='' candidate found cmake_version
  if [ -x "$COSMOS_VENV/bin/python" ]; then
    py="$COSMOS_VENV/bin/python"
  elif [ -n "${PYTHON:-}" ]; then
    py=$PYTHON
  elif [ "$COSMOS_MODE" = distro ]; then
    py=python3  # must be the interpreter the distro's rclpy was built for
  else
    for candidate in python3.11 python3.12 python3.13 python3.10 python3; do
      if command -v "$candidate" >/dev/null 2>&1 && cosmos_python_ok "$candidate"; then
        py=$candidate
        break
      fi
    done
  fi
  if [ -z "$py" ] || ! cosmos_python_ok "$py"; then
    found=$(python3 --version 2>&1 || echo 'no python3 on PATH')
    cosmos_die "Python 3.10 or newer with the venv module is required (found: $found)"
    return 1
  fi
  command -v cmake >/dev/null 2>&1 \
    || { cosmos_die "cmake not found: install cmake 3.21 or newer"; return 1; }
  cmake_version=$(cmake --version | head -n 1 | awk '{print $3}')
  if printf '%s\n3.21\n' "$cmake_version" | sort -V -C; then
    cosmos_die "cmake $cmake_version is too old: cmake 3.21 or newer is required"
    return 1
  fi
  command -v "${CC:-cc}" >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
    || { cosmos_die "no C compiler found (cc/gcc): install gcc or build-essential"; return 1; }
  command -v "${CXX:-c++}" >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
    || { cosmos_die "no C++ compiler found (c++/g++): install g++ or build-essential"; return 1; }

  # --- 2. Virtual environment and pinned requirements ------------------------------------------
  if [ ! -x "$COSMOS_VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $COSMOS_VENV ($COSMOS_MODE mode)"
    local venv_flags=()
    [ "$COSMOS_MODE" = distro ] && venv_flags=(--system-site-packages)
    "$py" -m venv "${venv_flags[@]}" "$COSMOS_VENV" \
      || { cosmos_die "could not create the virtual environment $COSMOS_VENV"; return 1; }
  fi
  # shellcheck disable=SC1091
  . "$COSMOS_VENV/bin/activate" || { cosmos_die "cannot activate $COSMOS_VENV"; return 1; }

  local requirements="$COSMOS_BUILD/requirements-$COSMOS_MODE.txt"
  if [ "$COSMOS_MODE" = distro ]; then
    grep -v '# skip-with-distro' "$COSMOS_ROOT/requirements.txt" >"$requirements"
  else
    cp "$COSMOS_ROOT/requirements.txt" "$requirements"
  fi
  local stamp="$COSMOS_VENV/.cosmos-requirements.sha256" want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] installing pinned requirements into $COSMOS_VENV (first run: about a minute)"
    local pip_log="$COSMOS_BUILD/pip-install.log"
    if ! { python -m pip install --retries 2 --timeout 30 -U pip \
           && python -m pip install --retries 2 --timeout 30 -r "$requirements"; } \
         >"$pip_log" 2>&1; then
      if grep -qiE 'NewConnectionError|name resolution|Network is unreachable|ConnectTimeout|Max retries exceeded|connection refused' \
           "$pip_log"; then
        cosmos_die "no network to the package index: pip could not download the pinned packages (log: $pip_log)"
        return 1
      fi
      cosmos_die "pip could not install requirements.txt: $(grep -E '^ERROR' "$pip_log" | head -n 1) (log: $pip_log)"
      return 1
    fi
    echo "$want" >"$stamp"
  fi

  # --- 3. Optional: the ROS 2 launch stack and the ros2 CLI (COSMOS_ROS_EXTRAS=DIR) -----------
  if [ -n "${COSMOS_ROS_EXTRAS:-}" ]; then
    if [ "$COSMOS_MODE" = distro ]; then
      echo "[setup] COSMOS_ROS_EXTRAS ignored: the sourced ROS distro ($ROS_DISTRO) has launch and ros2"
    else
      cosmos_install_extras || return 1
    fi
  fi

  # --- 4. Build the messages and the package with colcon ---------------------------------------
  if [ "$COSMOS_MODE" = bare ]; then
    # The venv is the ROS underlay: the wheels install ament/rosidl CMake configs into it.
    export CMAKE_PREFIX_PATH="$VIRTUAL_ENV" AMENT_PREFIX_PATH="$VIRTUAL_ENV"
  fi
  touch "$COSMOS_BUILD/COLCON_IGNORE"
  local build_log="$COSMOS_BUILD/colcon-build.log"
  if ! (cd "$COSMOS_ROOT" && colcon --log-base "$COSMOS_BUILD/log" build \
          --base-paths "$COSMOS_ROOT" \
          --build-base "$COSMOS_BUILD/build" --install-base "$COSMOS_BUILD/install" \
          --event-handlers console_direct- console_stderr- \
          --cmake-args -DBUILD_TESTING=OFF) >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    cosmos_die "colcon build failed (log: $build_log)"
    return 1
  fi
  cosmos_remove_stale_files
  # shellcheck disable=SC1091
  . "$COSMOS_BUILD/install/local_setup.bash"

  # `python -c ...` run from the checkout must import the installed package (which has the
  # generated `msg` module), not the source directory in the current working directory.
  export PYTHONSAFEPATH=1
  # Keep ROS traffic on this machine unless the caller chose how to discover.
  local discovery_note='your setting'
  if [ -z "${ROS_AUTOMATIC_DISCOVERY_RANGE:-}" ] && [ -z "${ROS_LOCALHOST_ONLY:-}" ]; then
    export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
    discovery_note='set here: export your own before sourcing to reach other machines'
  fi
  export COSMOS_ROOT COSMOS_VENV COSMOS_BUILD COSMOS_MODE
  if [ -z "${COSMOS_SETUP_QUIET:-}" ]; then
    local domain="ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-0}"
    [ -z "${ROS_DOMAIN_ID:-}" ] && domain="$domain (unset: the default domain)"
    local discovery="ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-unset}"
    [ -n "${ROS_LOCALHOST_ONLY:-}" ] && discovery="ROS_LOCALHOST_ONLY=$ROS_LOCALHOST_ONLY"
    local ros2='ros2: not installed (COSMOS_ROS_EXTRAS=DIR adds it)'
    command -v ros2 >/dev/null 2>&1 && ros2="ros2: $(command -v ros2)"
    [ "$COSMOS_MODE" = distro ] && ros2="ros2: the $ROS_DISTRO distro's"
    echo "[setup] $COSMOS_MODE mode; $domain; $discovery ($discovery_note); $ros2" >&2
  fi
}

cosmos_install_extras() {
  local dir=$COSMOS_ROS_EXTRAS
  if [ ! -f "$dir/install.sh" ]; then
    cosmos_die "COSMOS_ROS_EXTRAS=$dir has no install.sh (expected a folder like ../shared/ros2-launch)"
    return 1
  fi
  dir=$(cd "$dir" && pwd)
  # Reinstalled only when the folder's install script, wheels or sources change.
  local stamp want
  stamp="$COSMOS_VENV/.cosmos-ros-extras-$(echo "$dir" | sha256sum | cut -c1-16).sha256"
  want=$( (cd "$dir" && find . -type f ! -name '*.pyc' -print0 | LC_ALL=C sort -z \
            | xargs -0 sha256sum; echo "$COSMOS_VENV") | sha256sum | cut -d' ' -f1)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  echo "[setup] installing the ROS 2 launch stack and ros2 CLI from $dir (first run: about a minute)"
  local log="$COSMOS_BUILD/ros-extras-install.log"
  if ! bash "$dir/install.sh" "$COSMOS_VENV" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    cosmos_die "$dir/install.sh failed (log: $log)"
    return 1
  fi
  echo "$want" >"$stamp"
}

cosmos_remove_stale_files() {
  # The install step copies changed files over the old ones and leaves the rest alone; a file
  # deleted from the source tree would linger in the install: remove what the last install did
  # not write (install_manifest.txt lists every file it installed).
  local manifest="$COSMOS_BUILD/build/cosmos_policy_ros/install_manifest.txt" package
  [ -f "$manifest" ] || return 0
  for package in "$COSMOS_BUILD"/install/cosmos_policy_ros/lib/python3*/site-packages/cosmos_policy_ros; do
    [ -d "$package" ] || continue
    # Only when the manifest names this very directory (else nothing is known to be stale).
    grep -qF "$package/" "$manifest" || continue
    find "$package" -type f ! -path '*/__pycache__/*' -print | LC_ALL=C sort \
      | LC_ALL=C comm -23 - <(LC_ALL=C sort "$manifest") | while IFS= read -r stale; do
          rm -f "$stale"
        done
    find "$package" -mindepth 1 -type d -empty -delete
  done
}

# Run with the caller's options saved and our own in force; restore them whatever happens.
cosmos_saved_options=$(set +o)
# A command substitution runs without errexit (unless inherit_errexit): take it from $-.
case $- in *e*) cosmos_saved_options="$cosmos_saved_options; set -e" ;; esac
set +e +u
set -o pipefail
cosmos_setup_main
cosmos_status=$?
eval "$cosmos_saved_options"
unset cosmos_saved_options
unset -f cosmos_setup_main cosmos_install_extras cosmos_remove_stale_files cosmos_python_ok \
  cosmos_die
# `return` when sourced (an interactive shell stays open); `exit` only when run as a script.
# shellcheck disable=SC2317
return "$cosmos_status" 2>/dev/null || exit "$cosmos_status"
