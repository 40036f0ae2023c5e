"""Requests a path from the host's own nginx over HTTPS until told to stop,
recording every status (an exception counts as 0), then writes them as JSON.

argv: out-file stop-file path max-seconds [interval-seconds]; it stops when
stop-file exists, after max-seconds, or after 100000 requests. With an
interval, a request starts at most once per interval (a bounded load).
"""
import http.client
import json
import os
import ssl
import sys
import time

out, stop, path = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl._create_unverified_context()
codes, deadline = [], time.monotonic() + float(sys.argv[4])
interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
while not os.path.exists(stop) and time.monotonic() < deadline and len(codes) < 100000:
    started = time.monotonic()
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", 443, timeout=30, context=ctx)
        conn.request("GET", path)
        codes.append(conn.getresponse().status)
        conn.close()
    except Exception:  # pylint: disable=broad-exception-caught
        codes.append(0)
    time.sleep(max(0.0, started + interval - time.monotonic()))
with open(out, "w", encoding="utf-8") as f:
    json.dump(codes, f)
