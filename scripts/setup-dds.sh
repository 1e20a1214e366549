#!/usr/bin/env bash
# An independent DDS participant for tests/ros2.rs: a small venv .venv-dds with Eclipse
# Cyclone DDS's Python binding (PyPI `cyclonedds`, whose wheel carries the C library; no
# ROS install). Offline tooling for the tests only. Safe to rerun: the venv is reused when
# its requirement is unchanged. Environment: PYTHON (default python3), DDS_VENV (default
# .venv-dds); pip's own variables (PIP_FIND_LINKS, PIP_INDEX_URL) apply.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${DDS_VENV:-.venv-dds}
REQUIREMENT="cyclonedds==11.0.1"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.requirements" 2>/dev/null)" = "$REQUIREMENT" ]; then
  exit 0
fi
echo "setup-dds: creating $VENV ($REQUIREMENT)"
rm -rf "$VENV"
if ! "$PYTHON" -m venv "$VENV"; then
  echo "setup-dds: '$PYTHON -m venv' failed; on Debian install python3-venv (scripts/setup-debian.sh)" >&2
  exit 1
fi
"$VENV/bin/pip" install -q --disable-pip-version-check "$REQUIREMENT"
"$VENV/bin/python" -c "import cyclonedds.domain" # the bundled C library loads
echo "$REQUIREMENT" > "$VENV/.requirements"
echo "setup-dds: $VENV ready"
