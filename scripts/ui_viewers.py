"""Viewers of avaction's live view for scripts/bench-ui.sh: N streams and N picture
pollers (each asks for the next picture 100 ms after the last arrived, as the page
does), one thread each, in one process, until killed.

    python3 scripts/ui_viewers.py PORT N
"""
import http.client
import sys
import threading
import time

PORT, VIEWERS = int(sys.argv[1]), int(sys.argv[2])


def connect():
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
            c.connect()
            return c
        except OSError:
            time.sleep(0.05)


def stream():
    while True:
        try:
            c = connect()
            c.request("GET", "/stream")
            r = c.getresponse()
            while r.read(4096):
                pass
        except Exception:
            time.sleep(0.05)


def pictures():
    c = connect()
    while True:
        try:
            c.request("GET", "/frame.jpg")
            c.getresponse().read()
        except Exception:
            c = connect()
        time.sleep(0.1)


for _ in range(VIEWERS):
    threading.Thread(target=stream, daemon=True).start()
    threading.Thread(target=pictures, daemon=True).start()
while True:
    time.sleep(1)
