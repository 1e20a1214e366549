#!/usr/bin/env bash
# Runs avaction on hostile inputs (issue 14) and prints one table row per case: the exit
# code, the peak RSS (GNU time), the wall time and the first line of the error. Every
# case must end with a clear message, no panic (exit 101), no hang, bounded memory.
# Usage: scripts/hostile-inputs.sh [path/to/avaction]   (default: target/debug/avaction)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/avaction}
[ -x "$BIN" ] || { echo "build first: cargo build (no $BIN)" >&2; exit 1; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
bundle() { # name: a copy of models/cavnet-small to edit
  rm -rf "$W/$1"; cp -r models/cavnet-small "$W/$1"; echo "$W/$1"
}
edit() { # bundle sed-expression
  sed -i "$2" "$1/model.toml"
}
echo "| input | exit | peak RSS | time | message |"
echo "|---|---|---|---|---|"
row() { # label, then the avaction arguments
  local label=$1; shift
  local err="$W/err" t="$W/time"
  timeout 60 /usr/bin/time -f "%M %e" -o "$t" "$BIN" "$@" >/dev/null 2>"$err" </dev/null
  local code=$?
  local rss secs msg
  # GNU time writes "Command exited with non-zero status N" first: the numbers are last
  read -r rss secs < <(tail -1 "$t" 2>/dev/null) || { rss=0; secs=60; }
  msg=$(grep -v '^\s*$' "$err" | grep -iv "^usage\|^for more information" | head -1 | cut -c1-200 | sed 's/|/\\|/g')
  printf '| %s | %s | %s MiB | %s s | %s |\n' "$label" "$code" "$(awk "BEGIN{printf \"%.0f\", $rss/1024}")" "$secs" "$msg"
}
RUN=(run --video test:ball --audio none --duration 2)
b=$(bundle zero); edit "$b" 's|^labels = .*|labels = "/dev/zero"|'
row 'bundle `labels = "/dev/zero"`' "${RUN[@]}" --model "$b"
b=$(bundle fifo); rm "$b/labels.txt"; mkfifo "$b/labels.txt"
row 'bundle labels file is a FIFO' "${RUN[@]}" --model "$b"
b=$(bundle link); rm "$b/labels.txt"; ln -s /dev/zero "$b/labels.txt"
row 'bundle labels.txt -> /dev/zero (symlink)' "${RUN[@]}" --model "$b"
b=$(bundle abs); edit "$b" 's|^graph = .*|graph = "/etc/hostname"|'
row 'bundle `graph = "/etc/hostname"`' "${RUN[@]}" --model "$b"
b=$(bundle up); edit "$b" 's|^graph = .*|graph = "../../../etc/passwd"|'
row 'bundle `graph = "../../../etc/passwd"`' "${RUN[@]}" --model "$b"
b=$(bundle nan); edit "$b" 's|^min_duration_s = .*|min_duration_s = nan|'
grep -q min_duration_s "$b/model.toml" || edit "$b" 's|^\[decoder\]|[decoder]\nmin_duration_s = nan|'
row 'bundle `min_duration_s = nan`' "${RUN[@]}" --model "$b"
b=$(bundle shape); edit "$b" '0,/^shape = .*/s//shape = [1, 16, 3, 9223372036854775807, 64]/'
row 'bundle shape with a 2^63 dimension' "${RUN[@]}" --model "$b"
b=$(bundle frames); edit "$b" 's|^frames = .*|frames = 100000|'
row 'bundle `frames = 100000`' "${RUN[@]}" --model "$b"
row '`--duration inf`' run --video test:ball --audio none --duration inf
row '`--duration 1e300`' run --video test:ball --audio none --duration 1e300
row '`--hop 0`' run --video test:ball --audio none --hop 0
row '`--threads 0`' run --video test:ball --audio none --threads 0
row '`--labels ""`' run --video test:ball --labels ""
row '`--label-file /dev/zero`' run --video test:ball --audio none --label-file /dev/zero
mkfifo "$W/labels.fifo"
row '`--label-file` a FIFO' run --video test:ball --audio none --label-file "$W/labels.fifo"
row '`--seeds 1-18446744073709551615`' features --seeds 1-18446744073709551615 --out "$W/f"
printf 'not a video' >"$W/text.mp4"
row 'a text file named .mp4' run --video "$W/text.mp4" --json
: >"$W/empty.mkv"
row 'an empty .mkv' run --video "$W/empty.mkv" --json
if gst-launch-1.0 -q videotestsrc num-buffers=1 pattern=black ! video/x-raw,width=16000,height=16000,framerate=25/1 ! jpegenc ! matroskamux ! filesink location="$W/huge.mkv" >/dev/null 2>&1; then
  row '16000 x 16000 Motion-JPEG file' run --video "$W/huge.mkv" --audio none --json
fi
