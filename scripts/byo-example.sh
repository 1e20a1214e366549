#!/usr/bin/env bash
# Bring-your-own-model example: runs models/train/examples/byo_model.py (a small MOV-style PyTorch
# model with random weights, exported by avaction_train.export) at the tiny size into target/byo/tiny
# (single-graph, staged, raw-audio-head and video-only NTHWC bundles, each re-checked with
# onnxruntime by the example's self-check), then `avaction verify` on each bundle if the binary exists
# (target/debug/avaction: `cargo build` first). Writes nothing tracked by git. Safe to rerun: the
# venv is reused when its requirements are unchanged and the bundles are rewritten in place.
# Offline tooling: the venv .venv-train holds torch (used on the CPU), torchvision, onnx, onnxruntime,
# onnxscript, numpy, and torchaudio installed without its dependencies (only its pure-torch
# compliance/kaldi.py is used, as the log-mel reference). Needs python3 with the venv module.
# Environment: PYTHON (interpreter for a new venv, default python3), BYO_VENV (default .venv-train),
# BYO_OUT (default target/byo), BYO_SIZE (64 = tiny, default; 224 = real size), AVACTION (default
# target/debug/avaction); pip's own variables (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS) apply.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${BYO_VENV:-.venv-train}
OUT=${BYO_OUT:-target/byo}
SIZE=${BYO_SIZE:-64}
AVACTION=${AVACTION:-target/debug/avaction}
REQUIREMENTS="torch==2.15.0 torchvision==0.29.2 onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2 numpy==2.4.6"
NO_DEPS="torchaudio==2.11.1"

STAMP="$REQUIREMENTS; --no-deps $NO_DEPS"
if [ ! -x "$VENV/bin/python" ]; then
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "byo-example: $PYTHON not found; install python3 and python3-venv (scripts/setup-debian.sh)" >&2
    exit 1
  fi
  echo "byo-example: creating $VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    echo "byo-example: '$PYTHON -m venv' failed; on Debian install python3-venv (scripts/setup-debian.sh)" >&2
    exit 1
  fi
fi
# Keep the venv out of git without touching .gitignore (what Python >= 3.13's venv does itself).
[ -f "$VENV/.gitignore" ] || echo '*' >"$VENV/.gitignore"
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$STAMP" ]; then
  started=$(date +%s)
  echo "byo-example: installing into $VENV: $REQUIREMENTS, and $NO_DEPS without dependencies"
  # shellcheck disable=SC2086 # word splitting of the requirement lists is intended
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -q $REQUIREMENTS
  # torchaudio pins an exact torch: --no-deps keeps the torch above.
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -q --no-deps $NO_DEPS
  echo "$STAMP" >"$VENV/.requirements"
  echo "byo-example: $VENV ready in $(( $(date +%s) - started )) s"
else
  echo "byo-example: $VENV up to date"
fi

# AVACTION emptied: the verify runs below, once, with its output shown.
AVACTION= "$VENV/bin/python" models/train/examples/byo_model.py --size "$SIZE" --out "$OUT"

case "$SIZE" in 64) dir="$OUT/tiny" ;; *) dir="$OUT/$SIZE" ;; esac
if [ ! -x "$AVACTION" ]; then
  echo "byo-example: $AVACTION not found: \`avaction verify\` skipped (cargo build, then rerun; or AVACTION=path)"
  exit 0
fi
failed=()
for toml in "$dir"/*/model.toml; do
  bundle=$(dirname "$toml")
  echo "byo-example: $AVACTION verify $bundle"
  if ! "$AVACTION" verify "$bundle"; then
    failed+=("$bundle")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "byo-example: avaction verify FAILED for: ${failed[*]}" >&2
  exit 1
fi
echo "byo-example: every bundle in $dir passed avaction verify"
