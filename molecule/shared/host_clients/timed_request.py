"""One HTTPS GET to the host's nginx; writes {"status", "seconds"} as JSON.

argv: path out-file
"""
import http.client
import json
import ssl
import sys
import time

start = time.monotonic()
conn = http.client.HTTPSConnection("127.0.0.1", 443, timeout=60, context=ssl._create_unverified_context())
conn.request("GET", sys.argv[1])
status = conn.getresponse().status
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump({"status": status, "seconds": time.monotonic() - start}, f)
