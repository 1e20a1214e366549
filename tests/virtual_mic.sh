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

# As root PulseAudio warns that it is "not intended to be run as root": harmless here.
pulseaudio --daemonize=yes --exit-idle-time=-1 --system=false -n \
    --load="module-native-protocol-unix" --load="module-null-sink sink_name=vsink" \
    --load="module-always-sink" 2>"$XDG_RUNTIME_DIR/pulseaudio.log" || {
    cat "$XDG_RUNTIME_DIR/pulseaudio.log" >&2
    echo "$0: pulseaudio did not start" >&2
    exit 1
}

ready=""
for _ in $(seq 1 50); do
    if pactl info >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "$0: pulseaudio is not answering" >&2
    exit 1
fi
PULSE_PID=$(cat "$XDG_RUNTIME_DIR/pulse/pid" 2>/dev/null || true)

pactl set-default-sink vsink
pactl set-default-source vsink.monitor

export AVACTION_TEST_PULSE=1
"$@"
