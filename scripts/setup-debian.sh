#!/usr/bin/env bash
# Installs the Debian packages avaction needs to build, test and run (GStreamer,
# ALSA, a user-mode PulseAudio for the virtual microphone, sox and espeak-ng for
# test audio, python3-venv for scripts/setup-minilm.sh, python3-gi and GStreamer's RTSP
# server for the loopback camera of tests/field.rs, dpkg-dev and systemd for the package
# and its unit in tests/package.rs, mosquitto and its clients for the MQTT sink in
# tests/deliver.rs, promtool (Debian prometheus) for tests/metrics.rs, ffprobe (Debian
# ffmpeg) to check the evidence clips in tests/deliver.rs), headless Chromium and
# ChromeDriver for the live view in tests/ui.rs). Safe to run twice: it only
# calls apt-get when something is missing.
set -euo pipefail
PACKAGES=(pkg-config build-essential libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav gstreamer1.0-alsa
  gstreamer1.0-tools gstreamer1.0-x libasound2-dev libasound2-plugins pulseaudio pulseaudio-utils sox espeak-ng
  python3 python3-venv python3-gi gir1.2-gst-rtsp-server-1.0 dpkg-dev systemd
  mosquitto mosquitto-clients prometheus openssl ffmpeg chromium chromium-driver)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi
for c in rustfmt clippy; do
  cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$c"
done
echo "setup: system packages ready"
