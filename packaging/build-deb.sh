#!/usr/bin/env bash
# Builds the Debian package of avaction with dpkg's own tools (dpkg-deb, and
# dpkg-shlibdeps for the library dependencies):
#   /usr/bin/avaction, the shipped bundles in /usr/share/avaction/models (and the text
#   model models/minilm when it has been made), /etc/avaction/avaction.toml (a
#   conffile), the systemd unit avaction.service, the example configs and the README.
#
# Usage: packaging/build-deb.sh [--binary PATH] [--features LIST] [--arch ARCH] [--out DIR]
#   --binary    package this binary instead of building one (`cargo build --release`)
#   --features  cargo features of the build (e.g. tensorrt on a Jetson)
#   --arch      Debian architecture (default: this machine's, `dpkg --print-architecture`)
#   --out       folder for the .deb (default: target/debian)
# Prints the path of the .deb on its last line. Safe to run again (overwrites it).
set -euo pipefail
cd "$(dirname "$0")/.."

binary="" features="" arch="" out="target/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --features) features=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build-deb: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool not found (apt-get install dpkg-dev)" >&2; exit 1; }
done
if [ -z "$binary" ]; then
  echo "build-deb: cargo build --release ${features:+--features $features}" >&2
  cargo build --release --locked ${features:+--features "$features"}
  binary=target/release/avaction
fi
[ -x "$binary" ] || { echo "build-deb: $binary is not an executable" >&2; exit 1; }
arch=${arch:-$(dpkg --print-architecture)}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/avaction_${version}_${arch}"
share="$root/usr/share/avaction"
doc="$root/usr/share/doc/avaction"

install -D -m 0755 "$binary" "$root/usr/bin/avaction"
# Debug line tables are not needed on a device; symbols stay for backtraces.
"${STRIP:-strip}" --strip-debug "$root/usr/bin/avaction" 2>/dev/null \
  || echo "build-deb: ${STRIP:-strip} failed; packaging the binary unstripped" >&2
for bundle in cavnet-small cavnet-ov-small mov-small avt-moderation; do
  mkdir -p "$share/models"
  cp -r "models/$bundle" "$share/models/"
done
if [ -f models/minilm/model.onnx ] && [ -f models/minilm/tokenizer.json ]; then
  cp -r models/minilm "$share/models/"
else
  echo "build-deb: models/minilm not made (scripts/setup-minilm.sh): new label sentences will need AVACTION_MINILM" >&2
fi
install -D -m 0644 packaging/debian/avaction.toml "$root/etc/avaction/avaction.toml"
install -D -m 0644 packaging/debian/avaction.service "$root/lib/systemd/system/avaction.service"
install -D -m 0644 README.md "$doc/README.md"
mkdir -p "$doc/examples"
cp -r examples/configs "$doc/examples/"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: avaction

Files: *
License: MIT or Apache-2.0
Comment: avaction and its model bundles (trained on synthetic scenes, see each
 /usr/share/avaction/models/*/README.md).

Files: usr/share/avaction/models/minilm/*
License: Apache-2.0
Comment: sentence-transformers/all-MiniLM-L6-v2 exported to ONNX, see its README.md.
COPYRIGHT
find "$root" -type d -exec chmod 0755 {} +
find "$root/usr/share" "$root/etc" -type f -exec chmod 0644 {} +

mkdir -p "$root/DEBIAN" "$stage/debian"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
echo /etc/avaction/avaction.toml > "$root/DEBIAN/conffiles"
# dpkg-shlibdeps reads the libraries the binary links and names their packages.
printf 'Source: avaction\n\nPackage: avaction\nArchitecture: any\n' > "$stage/debian/control"
shlibs=$(cd "$stage" && dpkg-shlibdeps -O -e"$root/usr/bin/avaction" 2>/dev/null | sed -n 's/^shlibs:Depends=//p') || true
if [ -z "$shlibs" ]; then
  echo "build-deb: dpkg-shlibdeps could not read the binary (cross build?); using a fixed list" >&2
  shlibs="libc6, libgcc-s1, libasound2, libgstreamer1.0-0, libgstreamer-plugins-base1.0-0"
fi
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: avaction
Version: $version
Architecture: $arch
Maintainer: avaction developers <maintainers@users.noreply.invalid>
Installed-Size: $size
Depends: $shlibs, gstreamer1.0-plugins-base, gstreamer1.0-plugins-good, passwd
Recommends: gstreamer1.0-libav
Suggests: gstreamer1.0-plugins-bad
Section: video
Priority: optional
Description: real-time audio-video action recognition
 Recognises actions from a camera and a microphone on edge devices, with
 audio-video fusion models run by TensorRT on NVIDIA GPUs or tract on any CPU.
 Ships the avaction command, its model bundles, and a systemd service
 (Type=notify, watchdog) configured by /etc/avaction/avaction.toml.
CONTROL

mkdir -p "$out"
deb="$out/avaction_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >&2
echo "$deb"
