#!/usr/bin/env bash
# Runs a command with a virtual microphone: a user-mode PulseAudio (own XDG_RUNTIME_DIR)
# whose default source is the monitor of a null sink, so that whatever is played into
# the default sink (pacat, sox) is what cpal's default ALSA input captures.
#
#   tests/virtual_mic.sh cargo test --test capture virtual_microphone -- --nocapture
#
# Needs pulseaudio, pulseaudio-utils and libasound2-plugins (ALSA's pulse plugin).
# Exports AVACTION_TEST_PULSE=1 for the command. Stops only the server it started, by PID.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi
for tool in pulseaudio pactl pacat; do
    command -v "$tool" >/dev/null || { echo "$0: $tool not found (apt-get install pulseaudio pulseaudio-utils)" >&2; exit 2; }
done

# Keep HOME as it is: changing it hides cargo/rustup.
XDG_RUNTIME_DIR=$(mktemp -d)
export XDG_RUNTIME_DIR
PULSE_PID=""

cleanup() {
    local status=$?
    if [ -n "$PULSE_PID" ] && kill -0 "$PULSE_PID" 2>/dev/null; then
        pactl exit 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "$PULSE_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill "$PULSE_PID" 2>/dev/null || true
    fi
    rm -rf "$XDG_RUNTIME_DIR"
    exit "$status"
}
trap cleanup EXIT INT TERM

"$(dirname "$0")/tools/pulse_start.sh"
PULSE_PID=$(cat "$XDG_RUNTIME_DIR/pulse/pid" 2>/dev/null || true)

export AVACTION_TEST_PULSE=1
"$@"
