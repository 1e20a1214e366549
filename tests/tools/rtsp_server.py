#!/usr/bin/python3
"""A loopback RTSP server for tests: rtsp://127.0.0.1:PORT/av serves a live test
pattern (JPEG over RTP) and a ticking tone (PCMA over RTP), like an IP camera with a
microphone. Prints "ready" once it listens; runs until killed.

Usage: tests/tools/rtsp_server.py PORT
Needs python3-gi and gir1.2-gst-rtsp-server-1.0 (scripts/setup-debian.sh installs them).
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=160,height=120,framerate=25/1 "
    "! jpegenc quality=70 ! rtpjpegpay name=pay0 pt=26 "
    "audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=8000,channels=1 "
    "! alawenc ! rtppcmapay name=pay1 pt=8 )"
)


def main() -> None:
    port = sys.argv[1] if len(sys.argv) > 1 else "8554"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/av", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
