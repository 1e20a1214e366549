#!/usr/bin/env bash
# Starts the virtual microphone's user-mode PulseAudio in $XDG_RUNTIME_DIR: a null sink
# "vsink" whose monitor is the default source, so that what is played into the default
# sink is what cpal's default ALSA input captures. Waits until it answers (5 s at most).
# Used by tests/virtual_mic.sh, and by tests/mic_loss.rs to bring the microphone back.
set -euo pipefail
: "${XDG_RUNTIME_DIR:?XDG_RUNTIME_DIR must be set}"
# As root PulseAudio warns that it is "not intended to be run as root": harmless here.
pulseaudio --daemonize=yes --exit-idle-time=-1 --system=false -n \
    --load="module-native-protocol-unix" --load="module-null-sink sink_name=vsink" \
    --load="module-always-sink" 2>>"$XDG_RUNTIME_DIR/pulseaudio.log" || {
    cat "$XDG_RUNTIME_DIR/pulseaudio.log" >&2
    echo "$0: pulseaudio did not start" >&2
    exit 1
}
for _ in $(seq 1 50); do
    if pactl info >/dev/null 2>&1; then
        pactl set-default-sink vsink
        pactl set-default-source vsink.monitor
        exit 0
    fi
    sleep 0.1
done
echo "$0: pulseaudio is not answering" >&2
exit 1
