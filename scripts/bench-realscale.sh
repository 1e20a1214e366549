#!/usr/bin/env bash
# Real-scale benchmark (issue 15): avaction (tract, onnxruntime) against the best-tuned Python
# pipeline (benches/reference/realscale_pipeline.py) on a 720p H.264 clip, interleaved in one
# run; prints one table (benches/realscale.rs).
#
#   scripts/bench-realscale.sh [SECONDS] [ROUNDS] [BUNDLE...]
#       SECONDS  length of the clip (default 20)     ROUNDS  interleaved rounds (default 2)
#       BUNDLE   bundle folders (default: the six real-scale bundles, then models/mov-small and
#                models/cavnet-small, the shipped 64x64 bundles)
#
# Sets up what it needs and is safe to run twice: the Debian packages (scripts/setup-debian.sh),
# the venv .venv-train (scripts/byo-example.sh's pinned torch/onnxruntime set, made by `make byo`)
# plus OpenCV for the Python side, the real-scale bundles (random weights, timing only;
# models/train/avaction_train/realscale.py into target/realscale/), and the clip
# target/realscale/clip-720p-<SECONDS>s.mp4 (ffmpeg: testsrc2 with noise at 1280x720, 25 fps,
# libx264 CRF 23, ~4 Mbit/s, and a tone in noise as 48 kHz stereo AAC). Builds in release (the bench
# profile); the same clip, paced, gives the latency. Environment: TRACT_THREADS
# (default 2) and ORT_THREADS (default 1): the faster settings here on 2 cores, see README.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_CLIP="${1:-20}"
ROUNDS="${2:-2}"
shift $(( $# > 2 ? 2 : $# ))
OUT=target/realscale
PY=.venv-train/bin/python
OPENCV="opencv-python-headless==5.1.0.95"

./scripts/setup-debian.sh
if [ ! -x "$PY" ]; then
  echo "bench-realscale: creating .venv-train (scripts/byo-example.sh)"
  BYO_OUT=target/byo AVACTION=/nonexistent ./scripts/byo-example.sh >/dev/null
fi
if ! "$PY" -c "import cv2" 2>/dev/null; then
  echo "bench-realscale: installing $OPENCV into .venv-train (once)"
  "$PY" -m pip install -q "$OPENCV"
fi
for arch in cnn mobilenet vit; do
  if [ ! -f "$OUT/$arch-staged/model.toml" ] || [ models/train/avaction_train/realscale.py -nt "$OUT/$arch-staged/model.toml" ]; then
    (cd models/train && "../../$PY" -m avaction_train.realscale --out "../../$OUT" --only "$arch")
  fi
done
CLIP="$OUT/clip-720p-${SECONDS_CLIP}s.mp4"
if [ ! -s "$CLIP" ]; then
  ffmpeg -loglevel error -y \
    -f lavfi -i "testsrc2=size=1280x720:rate=25,noise=alls=7:allf=t" \
    -f lavfi -i "sine=frequency=330:sample_rate=48000" \
    -f lavfi -i "anoisesrc=color=pink:amplitude=0.05:sample_rate=48000" \
    -filter_complex "[1:a][2:a]amix=inputs=2,aformat=channel_layouts=stereo[a]" \
    -map 0:v -map "[a]" -t "$SECONDS_CLIP" -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p \
    -c:a aac -b:a 128k "$CLIP"
fi
LIB="$(ls "$PWD"/.venv-train/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -1 || true)"
export AVACTION_ONNXRUNTIME="${AVACTION_ONNXRUNTIME:-$LIB}"

args=(--clip "$CLIP" --paced-clip "$CLIP" --python "$PY" --rounds "$ROUNDS"
  --threads "${TRACT_THREADS:-2}" --ort-threads "${ORT_THREADS:-1}")
if [ $# -gt 0 ]; then
  for b in "$@"; do args+=(--bundle "$b"); done
else
  for b in cnn mobilenet vit; do args+=(--bundle "$OUT/$b-staged" --bundle "$OUT/$b-single"); done
  args+=(--bundle models/mov-small --bundle models/cavnet-small)
fi
cargo bench --bench realscale -- "${args[@]}"
