#!/bin/bash
# The ROS 2 PyPI wheels export CMake targets that hard-code the wheel builder's Python and numpy include
# directories (/opt/python/cp311-cp311/...). Rewrite them to this interpreter's directories so that
# `colcon build` of pcm_l2l_interfaces works. Idempotent; re-run after any (re)install of ros-* wheels.
set -euo pipefail
PY="${1:-${VIRTUAL_ENV:?activate the venv or pass its python}/bin/python}"
PREFIX=$("$PY" -c 'import sys; print(sys.prefix)')
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
n=0
while IFS= read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#${PYINC}#g" \
         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${NPINC}#g" "$f"
  n=$((n + 1))
done < <(grep -rl "/opt/python/cp311-cp311" "$PREFIX/share" --include='*.cmake' 2>/dev/null || true)
echo "fix_wheel_cmake: patched $n file(s) under $PREFIX/share"
