#!/usr/bin/env bash
# Rebuilds the basic-task bundle models/cavnet-small from scratch: renders synthetic scenes,
# dumps training windows through the runtime's own GStreamer path and frontends
# (`avaction features`, basic task), trains `python -m avaction_train.train --arch
# cavnet-small`, and installs the ONNX, goldens and normalisation into the bundle
# (`python -m avaction_train.install_bundle`). Offline tooling: needs the Python venv with
# the package installed (`pip install -e models/train`).
# Seeds 1-9 train, 17-18 validate; tests use seeds >= 9000.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-6}
"$PY" -c "import avaction_train" 2>/dev/null || {
  echo "$0: $PY cannot import avaction_train; run: $PY -m pip install -e models/train" >&2
  exit 1
}
cargo build --bin avaction
BIN=target/debug/avaction
DATA=models/train/data
rm -rf "$DATA/train" "$DATA/val"
"$BIN" features --seeds 1-9 --duration 60 --out "$DATA/train"
"$BIN" features --seeds 17-18 --duration 60 --out "$DATA/val"
RUN=models/train/runs/cavnet
"$PY" -m avaction_train.train --arch cavnet-small --data "$DATA/train" --val "$DATA/val" --out "$RUN" \
  --epochs "$EPOCHS" --seed 0 --threads 2
"$PY" -m avaction_train.install_bundle "$RUN" models/cavnet-small
