#!/bin/bash
# Run a command inside the project environment: the venv, the colcon install space (custom interfaces),
# AMENT/CMAKE prefix paths, and ROS 2 discovery restricted to this machine (hard rule: DDS discovery must
# never leave loopback, so ROS_AUTOMATIC_DISCOVERY_RANGE is forced to LOCALHOST here).
#   usage: tools/env.sh <command> [args...]
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "tools/env.sh: $ROOT/.venv is missing; run 'make setup' first" >&2
  exit 2
fi
# shellcheck disable=SC1091
source "$ROOT/.venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV" CMAKE_PREFIX_PATH="$VIRTUAL_ENV"
if [ -f "$ROOT/install/setup.bash" ]; then
  # colcon's setup scripts read unset variables; keep them quiet about the venv prefix
  # shellcheck disable=SC1091
  source "$ROOT/install/setup.bash" 2>/dev/null
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# the package's executables (pcm-l2l, *_node) live where `ros2 run` looks for them
export PATH="$ROOT/install/pcm_l2l_ros/lib/pcm_l2l_ros:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND="${MPLBACKEND:-Agg}"
exec "$@"
