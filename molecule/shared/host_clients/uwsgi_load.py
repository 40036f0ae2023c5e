"""Sends GET /health over the uwsgi protocol until told to stop, recording
every status (an exception counts as 0), then writes them as JSON.

argv: socket out-file stop-file [interval-seconds]; it stops when stop-file
exists, after 5 minutes at most. With an interval, a request starts at most
once per interval (a bounded load).
"""
import json
import os
import sys
import time

from uwsgi_protocol import uwsgi_request

where, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
codes = []
deadline = time.monotonic() + 300
while not os.path.exists(stop) and time.monotonic() < deadline:
    started = time.monotonic()
    try:
        codes.append(uwsgi_request(where, "GET", "/health", {}, b"", timeout=30)[0])
    except Exception:  # pylint: disable=broad-exception-caught
        codes.append(0)
    time.sleep(max(0.0, started + interval - time.monotonic()))
with open(out, "w", encoding="utf-8") as f:
    json.dump(codes, f)
