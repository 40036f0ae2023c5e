"""Sends GET /health over the uwsgi protocol until told to stop, recording
every status (an exception counts as 0), then writes them as JSON.

argv: socket out-file stop-file [interval-seconds]; it stops when stop-file
exists, after 5 minutes at most. With an interval, a request starts at most
once per interval (a bounded load).
"""
import sys

from load_loop import record_statuses
from uwsgi_protocol import uwsgi_request

where, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
record_statuses(lambda: uwsgi_request(where, "GET", "/health", {}, b"", timeout=30)[0], out, stop, 300,
                float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
