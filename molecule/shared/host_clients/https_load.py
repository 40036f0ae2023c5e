"""Requests a path from the host's own nginx over HTTPS until told to stop,
recording every status (an exception counts as 0), then writes them as JSON.

argv: out-file stop-file path max-seconds [interval-seconds [port]]; it stops when
stop-file exists, after max-seconds, or after 100000 requests. With an
interval, a request starts at most once per interval (a bounded load).
"""
import http.client
import ssl
import sys

from load_loop import record_statuses

out, stop, path = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl._create_unverified_context()
port = int(sys.argv[6]) if len(sys.argv) > 6 else 443


def get() -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


record_statuses(get, out, stop, float(sys.argv[4]), float(sys.argv[5]) if len(sys.argv) > 5 else 0.0,
                max_requests=100000)
