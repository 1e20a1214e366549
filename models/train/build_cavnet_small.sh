#!/usr/bin/env bash
# Rebuilds models/cavnet-small from scratch: renders synthetic scenes, dumps training
# windows through the runtime's own GStreamer path and frontends (`avaction features`),
# trains models/train/train.py, and copies the ONNX, goldens and normalisation into
# the bundle. Offline tooling: needs the Python venv (models/train/requirements.txt).
# Seeds 1-9 train, 17-18 validate; tests use seeds >= 9000.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-6}
cargo build --bin avaction
BIN=target/debug/avaction
DATA=models/train/data
rm -rf "$DATA/train" "$DATA/val"
"$BIN" features --seeds 1-9 --duration 60 --out "$DATA/train"
"$BIN" features --seeds 17-18 --duration 60 --out "$DATA/val"
RUN=models/train/runs/cavnet
"$PY" models/train/train.py --data "$DATA/train" --val "$DATA/val" --out "$RUN" --epochs "$EPOCHS" --seed 0 --threads 2
"$PY" models/train/install_bundle.py "$RUN" models/cavnet-small
