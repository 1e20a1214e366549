#!/usr/bin/env bash
# What the live view (`--ui`) costs the runtime, in one run, on the same file:
#
#   1. as fast as possible (the model's own pace): windows/s without --ui, with --ui and
#      nobody watching, and with --ui and VIEWERS viewers (each: the stream, plus the
#      picture fetched 10 times a second, as the page does);
#   2. at real time: CPU cores used without --ui and with VIEWERS viewers.
#
# Prints one table; ratios are against the run without --ui measured in the same call.
#
#   scripts/bench-ui.sh [SECONDS] [VIEWERS]       (default 60 s of 1280x720 at 30 fps, 8)
#
# Uses the debug-profile binary (`cargo build`; our crate at opt-level 2, dependencies
# at 3), and scripts/ui_viewers.py for the viewers (one process: a thread per stream and
# per picture poller); the media is made with GStreamer's test sources in target/bench-ui/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_OF_MEDIA="${1:-60}"
VIEWERS="${2:-8}"
DATA=target/bench-ui
BIN=target/debug/avaction
MODEL=cavnet-small
mkdir -p "$DATA"
cargo build --quiet --bin avaction

MEDIA="$DATA/ball-720p-${SECONDS_OF_MEDIA}s.mkv"
if [ ! -s "$MEDIA" ]; then
  echo "bench-ui: making $MEDIA (${SECONDS_OF_MEDIA} s of 1280x720 30 fps MJPEG + a tone)"
  frames=$((SECONDS_OF_MEDIA * 30))
  buffers=$((SECONDS_OF_MEDIA * 16000 / 1024))
  gst-launch-1.0 -q matroskamux name=mux ! filesink location="$MEDIA" \
    videotestsrc num-buffers=$frames pattern=ball ! video/x-raw,width=1280,height=720,framerate=30/1 \
      ! jpegenc quality=85 ! mux. \
    audiotestsrc num-buffers=$buffers samplesperbuffer=1024 wave=pink-noise \
      ! audio/x-raw,rate=16000,channels=1 ! audioconvert ! vorbisenc ! mux. >/dev/null
fi

PORT=$((20000 + RANDOM % 20000))
viewers() { # VIEWERS viewers of http://127.0.0.1:$PORT, in the background
  python3 scripts/ui_viewers.py "$PORT" "$VIEWERS" &
}
stop_viewers() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop_viewers EXIT

# Runs avaction on the media with extra args; prints "windows/s cores frames_dropped windows_skipped".
run() {
  local stats="$DATA/stats.json" t="$DATA/time.txt"
  /usr/bin/time -f "%e %U %S" -o "$t" "$BIN" run --model "$MODEL" --video "$MEDIA" \
    --json --stats "$@" >/dev/null 2>"$stats" || { cat "$stats" >&2; exit 1; }
  python3 - "$stats" "$t" <<'EOF'
import json, sys
stats = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][-1]
wall, user, system = map(float, open(sys.argv[2]).read().split()[-3:])
print(f'{stats["windows_per_s"]:.2f} {(user + system) / wall:.2f} {stats["frames_dropped"]} {stats["windows_skipped"]}')
EOF
}

echo "bench-ui: $MEDIA, model $MODEL, $VIEWERS viewers; each case once, in this order"
read -r base_w base_c _ _ < <(run)
read -r idle_w idle_c _ _ < <(run --ui "127.0.0.1:$PORT")
viewers
read -r seen_w seen_c _ _ < <(run --ui "127.0.0.1:$PORT")
stop_viewers
read -r rt_w rt_c rt_fd rt_ws < <(run --realtime)
viewers
read -r rtv_w rtv_c rtv_fd rtv_ws < <(run --realtime --ui "127.0.0.1:$PORT")
stop_viewers

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
printf '\n| case | windows/s | ratio | CPU cores | frames dropped | windows skipped |\n|---|---|---|---|---|---|\n'
printf '| as fast as possible, no --ui | %s | 1.00 | %s | | |\n' "$base_w" "$base_c"
printf '| as fast as possible, --ui, nobody watching | %s | %s | %s | | |\n' "$idle_w" "$(ratio "$idle_w" "$base_w")" "$idle_c"
printf '| as fast as possible, --ui, %s viewers | %s | %s | %s | | |\n' "$VIEWERS" "$seen_w" "$(ratio "$seen_w" "$base_w")" "$seen_c"
printf '| real time, no --ui | %s | 1.00 | %s | %s | %s |\n' "$rt_w" "$rt_c" "$rt_fd" "$rt_ws"
printf '| real time, --ui, %s viewers | %s | %s | %s | %s | %s |\n' "$VIEWERS" "$rtv_w" "$(ratio "$rtv_w" "$rt_w")" "$rtv_c" "$rtv_fd" "$rtv_ws"
echo "(CPU cores: avaction's user + system time over its wall time; the viewers' process not counted)"
