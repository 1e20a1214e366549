#!/usr/bin/env bash
# Builds avaction with the TensorRT backend against an SDK and shows what was linked
# and what the backend reports on this machine. Where a GPU and a full TensorRT are
# present it also compares TensorRT with tract (tests/tensorrt_gpu.rs).
#
#   TENSORRT_ROOT=/path/with/include+lib [CUDA_ROOT=/usr/local/cuda] scripts/check-tensorrt.sh
#
# On a Jetson with JetPack, TENSORRT_ROOT is not needed (the probe finds
# /usr/include/aarch64-linux-gnu and /usr/local/cuda).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
echo "== building with --features tensorrt (TENSORRT_ROOT=${TENSORRT_ROOT:-unset}, CUDA_ROOT=${CUDA_ROOT:-unset})"
# Touch the build script so its probe (and its warnings) run again.
touch build.rs
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo build --features tensorrt --bin avaction 2>&1 | tee "$log"
grep -q "TensorRT .* found" "$log" || {
    echo "TensorRT was not found: the build above says why." >&2
    exit 1
}

binary="$target_dir/debug/avaction"
echo "== TensorRT and CUDA entry points the binary imports (the shim is linked in)"
nm -D --undefined-only "$binary" | grep -E "createInfer(Builder|Runtime)_INTERNAL|createNvOnnxParser_INTERNAL|getInferLibVersion|cudaStreamCreateWithFlags|cudaGetDeviceProperties" || {
    echo "the binary imports no TensorRT symbol: the shim is not linked" >&2
    exit 1
}
echo "== shared libraries it loads"
ldd "$binary" | grep -E "nvinfer|nvonnxparser|cudart" || true

echo "== what the backend reports here"
"$binary" devices | sed -n '/^backends:/,$p'

echo "== TensorRT vs tract (runs where a GPU and TensorRT exist, else says why it skips)"
cargo test --features tensorrt --test tensorrt_gpu -- --nocapture 2>&1 | grep -E "skipped|TensorRT|\||cached|test result|panicked"
