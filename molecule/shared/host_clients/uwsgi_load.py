"""Sends GET /health over the uwsgi protocol until told to stop, recording
every status (an exception counts as 0), then writes them as JSON.

argv: socket out-file stop-file; it stops when stop-file exists, after
5 minutes at most.
"""
import json
import os
import sys
import time

from uwsgi_protocol import uwsgi_request

where, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
codes = []
deadline = time.monotonic() + 300
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        codes.append(uwsgi_request(where, "GET", "/health", {}, b"", timeout=30)[0])
    except Exception:  # pylint: disable=broad-exception-caught
        codes.append(0)
with open(out, "w", encoding="utf-8") as f:
    json.dump(codes, f)
