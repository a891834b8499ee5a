#!/usr/bin/env bash
# Create/refresh the project venv from the pinned constraints. Called by `make env`, which
# only runs it when the constraints or setup.py changed, so a second `make env` is instant.
set -euo pipefail
VENV=${1:-.venv}
CONSTRAINTS=requirements/constraints.txt
PYTHON=${PYTHON:-python3}

packages() {
  # Every pinned name; with a sourced ROS 2 install, leave its rclpy and messages to it.
  grep -vE '^\s*(#|$)' "$CONSTRAINTS" | cut -d= -f1 | \
    if [ -n "${ROS_DISTRO:-}" ]; then grep -v '^ros-kilted-'; else cat; fi
}

if [ -n "${ROS_DISTRO:-}" ]; then
  echo "make env: ROS_DISTRO=$ROS_DISTRO is sourced; using its rclpy and message packages"
  [ -d "$VENV" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
else
  [ -d "$VENV" ] || "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$CONSTRAINTS" $(packages)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "make env: $VENV is ready"
