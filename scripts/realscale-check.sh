#!/usr/bin/env bash
# Issue 15's bundles against their PyTorch goldens on both CPU backends: writes the bundles of
# models/train/avaction_train/realscale.py (random weights) with the venv `make byo` made
# (.venv-train) -- all three architectures at 32x32 into target/realscale-test (tests/model_staged.rs
# runs onnxruntime's batched encoders on them) and the issue's stand-in at 224x224 into
# target/realscale (the bench's bundle) -- then `avaction verify` on each with tract and with
# onnxruntime. Rewrites a bundle only when realscale.py is newer; safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$PWD/.venv-train/bin/python"
AVACTION=${AVACTION:-target/debug/avaction}
if [ ! -x "$PY" ]; then
  echo "realscale-check: no .venv-train: run 'make byo' first" >&2
  exit 1
fi
build() { # OUT SIZE ARCH...
  local out=$1 size=$2; shift 2
  for arch in "$@"; do
    if [ ! -f "$out/$arch-staged/model.toml" ] || [ models/train/avaction_train/realscale.py -nt "$out/$arch-staged/model.toml" ]; then
      (cd models/train && "$PY" -m avaction_train.realscale --out "../../$out" --size "$size" --only "$arch")
    fi
  done
}
build target/realscale-test 32 cnn mobilenet vit
build target/realscale 224 cnn
LIB="$(ls "$PWD"/.venv-train/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -1)"
export AVACTION_ONNXRUNTIME="${AVACTION_ONNXRUNTIME:-$LIB}"
for bundle in target/realscale-test/*-s* target/realscale/cnn-single target/realscale/cnn-staged; do
  for backend in tract onnxruntime; do
    "$AVACTION" verify "$bundle" --backend "$backend"
  done
done
